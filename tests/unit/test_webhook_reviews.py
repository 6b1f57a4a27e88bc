"""Decoding AdmissionReviews (every refusal names what is wrong) and encoding the answers."""

from __future__ import annotations

import base64

import jsonpatch
import orjson
import pytest

from factories import NOTEBOOK, NOTEBOOK_GROUPS, P, job, review, secret
from kaptain_warden.policies.requests import AdmissionRequest
from kaptain_warden.webhook import responses
from kaptain_warden.webhook.reviews import BadReview, admission_request, read_envelope

JSON = "application/json"


def body(doc: object) -> bytes:
    return orjson.dumps(doc)


def decode_review(data: bytes, content_type: str | None, **limits: int) -> AdmissionRequest:
    """What the app does with a body: the envelope first, then the request."""
    return admission_request(read_envelope(data, content_type, **limits))


def test_decodes_the_fields_the_decisions_need():
    obj = job()
    doc = review(obj, uid="u-1", dry_run=True)
    req = decode_review(body(doc), JSON)
    assert req.uid == "u-1"
    assert req.operation == "CREATE"
    assert (req.api_version, req.kind) == ("batch/v1", "Job")
    assert (req.namespace, req.name) == ("team-a", "build-model-image")
    assert (req.username, req.groups) == (NOTEBOOK, NOTEBOOK_GROUPS)
    assert req.obj == obj
    assert req.old_obj is None
    assert req.sub_resource == ""
    assert req.dry_run is True


def test_core_group_gives_a_bare_version():
    assert decode_review(body(review(secret())), JSON).api_version == "v1"


def test_optional_fields_may_be_absent():
    doc = review(secret(name=None, generate_name="x-"))
    for key in ("namespace", "userInfo", "object", "oldObject", "dryRun", "options"):
        del doc["request"][key]
    req = decode_review(body(doc), JSON)
    assert (req.namespace, req.name, req.username, req.groups) == ("", "", "", ())
    assert req.obj is None and req.dry_run is False


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_media_types_are_accepted(content_type):
    assert decode_review(body(review(secret())), content_type).kind == "Secret"


def _without(key: str) -> dict:
    doc = review(secret())
    del doc[key]
    return doc


def _request_without(key: str) -> dict:
    doc = review(secret())
    del doc["request"][key]
    return doc


def _request_with(key: str, value: object) -> dict:
    doc = review(secret())
    doc["request"][key] = value
    return doc


BAD = [
    pytest.param(b"{not json", JSON, 400, "not JSON", id="not-json"),
    pytest.param(b"\xff\xfe", JSON, 400, "not JSON", id="not-utf8"),
    pytest.param(b"", JSON, 400, "not JSON", id="empty"),
    pytest.param(b"[1, 2]", JSON, 400, "got array", id="array"),
    pytest.param(b'"review"', JSON, 400, "got string", id="string"),
    pytest.param(body(_without("kind")), JSON, 400, "kind is missing", id="no-kind"),
    pytest.param(
        body({**review(secret()), "kind": "Pod"}), JSON, 400, "expected AdmissionReview", id="kind"
    ),
    pytest.param(
        body({**review(secret()), "apiVersion": "admission.k8s.io/v1beta1"}),
        JSON,
        400,
        'apiVersion "admission.k8s.io/v1beta1" is not supported; kaptain-warden speaks '
        "admission.k8s.io/v1",
        id="v1beta1",
    ),
    pytest.param(
        body(_without("apiVersion")),
        JSON,
        400,
        "apiVersion is missing; kaptain-warden speaks admission.k8s.io/v1",
        id="no-version",
    ),
    pytest.param(body(_without("request")), JSON, 400, "request is missing", id="no-request"),
    pytest.param(
        body({**review(secret()), "request": []}), JSON, 400, "request is array", id="request-list"
    ),
    pytest.param(body(_request_without("uid")), JSON, 400, "request.uid is missing", id="no-uid"),
    pytest.param(body(_request_with("uid", "")), JSON, 400, 'request.uid is ""', id="empty-uid"),
    pytest.param(body(_request_with("uid", 7)), JSON, 400, "request.uid is number", id="int-uid"),
    pytest.param(
        body(_request_with("operation", "PATCH")), JSON, 400, "CONNECT, CREATE", id="operation"
    ),
    pytest.param(body(_request_without("kind")), JSON, 400, "request.kind is missing", id="gvk"),
    pytest.param(
        body(_request_with("kind", {"group": "", "version": "v1"})),
        JSON,
        400,
        "request.kind.kind is missing",
        id="gvk-kind",
    ),
    pytest.param(
        body(_request_with("userInfo", {"username": "a", "groups": "admins"})),
        JSON,
        400,
        "groups",
        id="groups",
    ),
    pytest.param(
        body(_request_with("object", [1])), JSON, 400, "request.object is array", id="object"
    ),
    pytest.param(
        body(_request_with("dryRun", "yes")), JSON, 400, "request.dryRun is", id="dry-run"
    ),
    pytest.param(body(_request_with("namespace", 5)), JSON, 400, "request.namespace", id="ns"),
    pytest.param(body(review(secret())), "text/plain", 415, "application/json", id="text-plain"),
    pytest.param(body(review(secret())), None, 415, "Content-Type is missing", id="no-type"),
]


@pytest.mark.parametrize(("data", "content_type", "status", "words"), BAD)
def test_unusable_reviews_are_refused_with_a_reason(data, content_type, status, words):
    with pytest.raises(BadReview) as caught:
        decode_review(data, content_type)
    assert caught.value.http_status == status
    assert words in caught.value.message


def test_body_over_the_limit_is_413():
    data = body(review(secret()))
    decode_review(data, JSON, max_body_bytes=len(data))
    with pytest.raises(BadReview) as caught:
        decode_review(data, JSON, max_body_bytes=len(data) - 1)
    assert caught.value.http_status == 413


def test_patched_answer_carries_a_base64_json_patch():
    ops = [{"op": "add", "path": f"/metadata/labels/{P}~1managed", "value": "true"}]
    answer = responses.patched("u-1", ops)
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "u-1" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    decoded = orjson.loads(base64.b64decode(response["patch"]))
    assert decoded == ops
    obj = {"metadata": {"labels": {}}}
    assert jsonpatch.apply_patch(obj, decoded) == {"metadata": {"labels": {f"{P}/managed": "true"}}}


def test_empty_patch_gives_no_patch_fields():
    assert responses.patched("u-1", []) == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "u-1", "allowed": True},
    }


def test_denial_carries_403_and_the_message():
    answer = responses.denied("u-1", "annotation x: no", warnings=("careful",))
    assert answer["response"] == {
        "uid": "u-1",
        "allowed": False,
        "status": {"code": 403, "reason": "Forbidden", "message": "annotation x: no"},
        "warnings": ["careful"],
    }


def test_errored_answer_is_a_refusal_with_500_inside_the_review():
    answer = responses.errored("u-1", "boom")
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 500
    assert answer["response"]["uid"] == "u-1"


def test_warnings_only_when_there_are_some():
    assert "warnings" not in responses.allowed("u")["response"]
    assert responses.allowed("u", warnings=["w"])["response"]["warnings"] == ["w"]
