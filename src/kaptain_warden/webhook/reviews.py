"""The admission.k8s.io/v1 AdmissionReview wire format: the answer typed field by field, the
request decoded and checked field by field (`read_envelope`, then `admission_request`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, NotRequired, TypedDict, get_args

import orjson

from kaptain_warden.policies.kinds import api_version_of
from kaptain_warden.policies.provenance import creator_pod
from kaptain_warden.policies.requests import AdmissionRequest, Operation
from kaptain_warden.webhook.settings import DEFAULT_MAX_BODY_BYTES

API_VERSION: Final = "admission.k8s.io/v1"
KIND: Final = "AdmissionReview"
_OPERATIONS: frozenset[str] = frozenset(get_args(Operation))


class ResponseStatus(TypedDict, total=False):
    """`response.status`, a metav1.Status; its message is what a refused user reads."""

    code: int
    reason: str
    message: str


class ResponsePayload(TypedDict):
    """`response` of an AdmissionReview: the webhook's answer."""

    uid: str
    allowed: bool
    status: NotRequired[ResponseStatus]
    patch: NotRequired[str]  # base64 of a JSON array of RFC 6902 operations
    patchType: NotRequired[Literal["JSONPatch"]]
    warnings: NotRequired[list[str]]
    auditAnnotations: NotRequired[dict[str, str]]


class ResponseReview(TypedDict):
    """An AdmissionReview as the webhook answers it."""

    apiVersion: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]
    response: ResponsePayload


class BadReview(Exception):  # noqa: N818 (the name the API is documented with)
    """A request that is not a usable AdmissionReview: answered with `http_status`, not a review."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message


@dataclass(frozen=True)
class Envelope:
    """An AdmissionReview whose envelope is valid: the uid is known, the request not yet read."""

    uid: str
    request: Mapping[str, Any]


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number"
    )


def read_envelope(
    body: bytes, content_type: str | None, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Envelope:
    """Check the media type, size, JSON and AdmissionReview envelope; BadReview when unusable."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        shown = f'"{content_type}"' if content_type else "missing"
        raise BadReview(415, f"Content-Type is {shown}; send application/json")
    if len(body) > max_body_bytes:
        raise BadReview(413, f"body of {len(body)} bytes is over the limit of {max_body_bytes}")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadReview(400, f"body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadReview(
            400, f"expected a JSON object (an AdmissionReview), got {_type_name(document)}"
        )
    kind = document.get("kind")
    if kind != KIND:
        raise BadReview(400, f"kind is {_shown(kind)}; expected {KIND}")
    api_version = document.get("apiVersion")
    if api_version != API_VERSION:
        problem = "is missing" if api_version is None else f"{_shown(api_version)} is not supported"
        raise BadReview(
            400,
            f"apiVersion {problem}; kaptain-warden speaks {API_VERSION} "
            "(admissionReviewVersions: [v1])",
        )
    request = document.get("request")
    if not isinstance(request, dict):
        raise BadReview(400, f"request is {_shown(request)}; expected an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview(400, f"request.uid is {_shown(uid)}; expected a non-empty string")
    return Envelope(uid, request)


def _shown(value: object) -> str:
    """A value quoted for an error message (strings quoted, absent values named)."""
    if value is None:
        return "missing"
    if isinstance(value, str):
        return f'"{value[:100]}"'
    return _type_name(value)


def _string(payload: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = payload.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        expected = "a non-empty string" if required else "a string"
        raise BadReview(400, f"{where}.{key} is {_shown(value)}; expected {expected}")
    return value


def _object(payload: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, dict):
        raise BadReview(400, f"request.{key} is {_shown(value)}; expected an object or null")
    return value


def admission_request(envelope: Envelope) -> AdmissionRequest:
    """The decisions' view of a request; BadReview when a field has the wrong type."""
    request = envelope.request
    operation = request.get("operation")
    if operation not in _OPERATIONS:
        raise BadReview(
            400,
            f"request.operation is {_shown(operation)}; expected one of "
            + ", ".join(sorted(_OPERATIONS)),
        )
    kind = request.get("kind")
    if not isinstance(kind, dict):
        raise BadReview(400, f"request.kind is {_shown(kind)}; expected an object")
    user = request.get("userInfo")
    if user is None:
        user = {}
    elif not isinstance(user, dict):
        raise BadReview(400, f"request.userInfo is {_shown(user)}; expected an object")
    groups = user.get("groups")
    if groups is None:
        groups = []
    elif not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise BadReview(400, "request.userInfo.groups: expected an array of strings")
    extra = user.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise BadReview(400, f"request.userInfo.extra is {_shown(extra)}; expected an object")
    dry_run = request.get("dryRun")
    if dry_run is not None and not isinstance(dry_run, bool):
        raise BadReview(400, f"request.dryRun is {_shown(dry_run)}; expected a boolean")
    return AdmissionRequest(
        uid=envelope.uid,
        operation=operation,
        api_version=api_version_of(
            _string(kind, "group", "request.kind"),
            _string(kind, "version", "request.kind", required=True),
        ),
        kind=_string(kind, "kind", "request.kind", required=True),
        namespace=_string(request, "namespace", "request"),
        name=_string(request, "name", "request"),
        username=_string(user, "username", "request.userInfo"),
        groups=tuple(groups),
        obj=_object(request, "object"),
        old_obj=_object(request, "oldObject"),
        sub_resource=_string(request, "subResource", "request"),
        dry_run=bool(dry_run),
        pod=creator_pod({k: v for k, v in (extra or {}).items() if isinstance(v, list)}),
    )
