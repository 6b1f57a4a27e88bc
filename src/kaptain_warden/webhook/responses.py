"""AdmissionReview answers in the spirit of controller-runtime's Allowed/Denied/Patched/Errored."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from kaptain_warden.webhook.reviews import (
    API_VERSION,
    KIND,
    ResponsePayload,
    ResponseReview,
)


def _review(response: ResponsePayload, warnings: Sequence[str]) -> ResponseReview:
    if warnings:
        response["warnings"] = list(warnings)
    # Every answer echoes apiVersion and kind: the API server refuses a review without them.
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def allowed(uid: str, *, warnings: Sequence[str] = ()) -> ResponseReview:
    """Admit the object unchanged."""
    return _review({"uid": uid, "allowed": True}, warnings)


def patched(
    uid: str, patch: Sequence[Mapping[str, Any]], *, warnings: Sequence[str] = ()
) -> ResponseReview:
    """Admit the object with RFC 6902 operations applied; no patch fields when there are none."""
    if not patch:
        return allowed(uid, warnings=warnings)
    return _review(
        {
            "uid": uid,
            "allowed": True,
            "patchType": "JSONPatch",
            "patch": base64.b64encode(orjson.dumps(patch)).decode("ascii"),
        },
        warnings,
    )


def denied(uid: str, message: str, *, warnings: Sequence[str] = ()) -> ResponseReview:
    """Refuse the object; `message` is what the user reads after "denied the request:"."""
    return _review(
        {
            "uid": uid,
            "allowed": False,
            "status": {"code": 403, "reason": "Forbidden", "message": message},
        },
        warnings,
    )


def errored(uid: str, message: str, *, code: int = 500) -> ResponseReview:
    """Refuse the object because the webhook failed, not because of a policy violation."""
    return _review(
        {
            "uid": uid,
            "allowed": False,
            "status": {"code": code, "reason": "InternalError", "message": message},
        },
        (),
    )


def encode(review: ResponseReview) -> bytes:
    """The JSON body of an answer."""
    return orjson.dumps(review)


def error_body(message: str) -> bytes:
    """The JSON body of a 4xx answer to a request that is not a usable AdmissionReview."""
    return orjson.dumps({"error": message})
