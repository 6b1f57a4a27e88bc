"""Property tests: random bytes, JSON and AdmissionReview-shaped documents at both endpoints."""

from __future__ import annotations

import copy
import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jsonpatch
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factories import (
    ADMIN,
    KNATIVE,
    NOTEBOOK,
    STRANGER,
    P,
    config_map,
    experiment,
    inference_service,
    job,
    patch_ops,
    revision,
    secret,
    tfjob,
)
from kaptain_warden.logs import JsonFormatter
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.webhook.app import create_app
from kaptain_warden.webhook.settings import WebhookSettings

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
POLICY = load_policy()
JSON = "application/json"
# Examples and deadline come from the Hypothesis profile (tests/conftest.py: local or CI).
PROPERTY = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

# --- strategies ------------------------------------------------------------------------------

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


WARDEN_KEYS = [
    f"{P}/{k}"
    for k in (
        "managed",
        "owner",
        "rule",
        "created-at",
        "ttl",
        "expires-at",
        "ttl-after-finished",
        "keep",
    )
]
keys = st.sampled_from(WARDEN_KEYS) | st.sampled_from(["app", "a/b", "x~y/z", ""]) | st.text()
values = (
    st.sampled_from(
        ["true", "false", "7d", "36h", "60d", "7x", "", "2026-05-01T12:00:00Z", NOTEBOOK, "bob"]
    )
    | st.text(max_size=20)
    | json_values
)
string_maps = st.dictionaries(keys, values, max_size=5) | json_values
metadata_overrides = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["x", ""]) | json_values,
        "generateName": st.just("gen-") | json_values,
        "labels": string_maps,
        "annotations": string_maps,
        "ownerReferences": st.just(revision()["metadata"]["ownerReferences"]) | json_values,
    },
)
BASES = [
    secret(),
    secret(type_="Opaque"),
    job(),
    job(ttl_seconds_after_finished=5),
    tfjob(),
    tfjob(shape="legacy"),
    tfjob(shape="bare"),
    tfjob(kind="PyTorchJob"),
    experiment(),
    inference_service(),
    inference_service(group="serving.kubeflow.org"),
    revision(),
    config_map(),
]


@st.composite
def objects(draw: st.DrawFn) -> Any:
    """A realistic object with random metadata (or, sometimes, no metadata or no spec)."""
    obj = copy.deepcopy(draw(st.sampled_from(BASES)))
    metadata = obj["metadata"]
    metadata.update(draw(metadata_overrides))
    for key in draw(st.sets(st.sampled_from(["name", "labels", "annotations", "namespace"]))):
        metadata.pop(key, None)
    if draw(st.booleans()) and "spec" in obj:
        obj["spec"] = draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        obj["metadata"] = draw(json_values)
    return obj


def gvk(obj: Any) -> Any:
    group, _, version = obj["apiVersion"].rpartition("/")
    return {"group": group, "version": version, "kind": obj["kind"]}


USERS = [NOTEBOOK, NOTEBOOK, NOTEBOOK, ADMIN, KNATIVE, STRANGER, ""]
GROUPS = [[], ["system:authenticated"], ["system:masters", "system:authenticated"]]


@st.composite
def requests_(draw: st.DrawFn, *, corrupt: bool) -> dict[str, Any]:
    """A plausible `request`; with `corrupt`, a few fields are absent or hold any JSON at all.

    Each field is plausible unless chosen for corruption: left to itself, Hypothesis seeks
    novelty and would rarely put a plausible value in every field at once.
    """
    obj = draw(objects())
    base = obj if isinstance(obj.get("apiVersion"), str) else draw(st.sampled_from(BASES))
    plausible = {
        "kind": st.just(gvk(base)),
        "operation": st.sampled_from(["CREATE", "CREATE", "UPDATE", "DELETE", "CONNECT"]),
        "namespace": st.sampled_from(["team-a", "team-a", "kube-system", "kaptain-warden", ""]),
        "name": st.text(max_size=10),
        "userInfo": st.fixed_dictionaries(
            {"username": st.sampled_from(USERS), "groups": st.sampled_from(GROUPS)}
        ),
        "object": st.just(obj),
        "oldObject": objects(),
        "dryRun": st.booleans(),
        "subResource": st.sampled_from(["", "", "status"]),
    }
    broken: set[str] = set()
    if corrupt:
        broken = draw(st.sets(st.sampled_from(sorted(plausible)), min_size=1, max_size=3))
    request: dict[str, Any] = {"uid": draw(st.text(min_size=1, max_size=12))}
    for key, strategy in plausible.items():
        if key not in broken:
            request[key] = draw(strategy)
        elif draw(st.booleans()):
            request[key] = draw(json_values)
    return request


def envelope(request: Any) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


reviews = (
    st.builds(envelope, requests_(corrupt=True))
    | st.fixed_dictionaries(
        {
            "apiVersion": st.just("admission.k8s.io/v1beta1") | json_values,
            "kind": st.just("AdmissionReview") | json_values,
            "request": requests_(corrupt=False) | json_values,
        }
    )
    | st.builds(envelope, json_values)
)
well_formed_reviews = st.builds(envelope, requests_(corrupt=False))


# --- the apps under test ---------------------------------------------------------------------


class Parents:
    """Inherits an owner for every object that names a parent."""

    def inherited_owner(self, *, namespace: str, obj: Any) -> str | None:
        return NOTEBOOK

    def inherited(
        self, *, namespace: str, obj: Any, deadline: float | None = None
    ) -> tuple[str, dict[str, str]]:
        return NOTEBOOK, {}


@pytest.fixture(scope="module", params=["no-lookups", "parents"])
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A test client; INFO logs formatted as JSON, so logging problems show up as failures."""
    parents = Parents() if request.param == "parents" else None
    app = create_app(WebhookSettings(), policy=POLICY, parents=parents, clock=lambda: NOW)
    app.testing = True  # an exception escaping a view fails the test instead of a 500
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("kaptain_warden")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield app.test_client()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def post(client: Any, path: str, data: bytes) -> Any:
    response = client.post(path, data=data, content_type=JSON)
    assert response.status_code < 500, response.data
    assert response.is_json
    return response


def check_answer(response: Any, document: Any) -> dict[str, Any] | None:
    """Every 200 is an AdmissionReview echoing the uid; every 4xx has an error message."""
    body = response.get_json()
    if response.status_code != 200:
        assert 400 <= response.status_code < 500
        assert isinstance(body["error"], str) and body["error"]
        return None
    assert body["apiVersion"] == "admission.k8s.io/v1"
    assert body["kind"] == "AdmissionReview"
    assert body["response"]["uid"] == document["request"]["uid"]
    assert isinstance(body["response"]["allowed"], bool)
    answer: dict[str, Any] = body
    return answer


# --- properties ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/mutate", "/validate"])
@PROPERTY
@given(data=st.binary(max_size=300))
def test_random_bytes_get_a_4xx(client, path, data):
    response = post(client, path, data)
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize("path", ["/mutate", "/validate"])
@PROPERTY
@given(document=json_values)
def test_random_json_never_fails_the_server(client, path, document):
    check_answer(post(client, path, orjson.dumps(document)), document)


@pytest.mark.parametrize("path", ["/mutate", "/validate"])
@PROPERTY
@given(document=reviews)
def test_review_shaped_documents_never_fail_the_server(client, path, document):
    check_answer(post(client, path, orjson.dumps(document)), document)


def _warden(obj: Any) -> dict[str, Any]:
    """The warden labels and annotations an object carries (`label k` / `annotation k`)."""
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    found: dict[str, Any] = {}
    for section in ("labels", "annotations"):
        values = metadata.get(section)
        values = values if isinstance(values, dict) else {}
        found.update({f"{section} {k}": v for k, v in values.items() if k in WARDEN_KEYS})
    return found


SYSTEM_KEYS = [
    *(f"labels {P}/{k}" for k in ("managed", "owner", "rule")),
    *(f"annotations {P}/{k}" for k in ("owner", "created-at")),
]


@PROPERTY
@given(document=well_formed_reviews)
def test_every_patch_applies_to_the_object_and_stamping_is_idempotent(client, document):
    answer = check_answer(post(client, "/mutate", orjson.dumps(document)), document)
    if answer is None or not patch_ops(answer):
        return
    request = document["request"]
    stamped = jsonpatch.apply_patch(copy.deepcopy(request["object"]), patch_ops(answer))
    after = _warden(stamped)
    privileged = "system:masters" in request["userInfo"]["groups"]
    if request["operation"] == "UPDATE":
        # System keys are carried over from the old object, whatever the request sent.
        before = _warden(request["oldObject"])
        assert {k: after.get(k) for k in SYSTEM_KEYS} == {k: before.get(k) for k in SYSTEM_KEYS}
    elif privileged:
        # A privileged CREATE (a restore) keeps what it carries; missing keys are added.
        sent = _warden(request["object"])
        assert {k: after[k] for k in sent} == sent
        assert all(k in after for k in SYSTEM_KEYS[:3])
    else:
        # A governed object gets every system key, computed; an ungoverned one none at all.
        assert after.get(f"labels {P}/managed") in ("true", None)
        present = [k in after for k in SYSTEM_KEYS]
        assert all(present) or not any(present)
    again = copy.deepcopy(document)
    again["request"]["object"] = stamped
    assert patch_ops(check_answer(post(client, "/mutate", orjson.dumps(again)), again)) == []


@PROPERTY
@given(document=well_formed_reviews)
def test_what_the_mutator_stamps_on_a_clean_object_the_validator_accepts(client, document):
    request = document["request"]
    obj = request.get("object")
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    if isinstance(metadata, dict):
        for section in ("labels", "annotations"):
            if isinstance(metadata.get(section), dict):
                # Only objects the user did not pre-fill: pre-filled values may be forged.
                metadata[section] = {
                    k: v for k, v in metadata[section].items() if k not in WARDEN_KEYS
                }
    answer = check_answer(post(client, "/mutate", orjson.dumps(document)), document)
    if answer is None or not patch_ops(answer):
        return
    checked = copy.deepcopy(document)
    checked["request"]["object"] = jsonpatch.apply_patch(copy.deepcopy(obj), patch_ops(answer))
    verdict = check_answer(post(client, "/validate", orjson.dumps(checked)), checked)
    assert verdict is not None
    assert verdict["response"]["allowed"] is True, verdict["response"]["status"]["message"]


def test_native_ttl_is_mirrored_when_metadata_is_absent(client):
    obj = job()
    del obj["metadata"]
    document = envelope(
        {
            "uid": "u",
            "kind": gvk(obj),
            "operation": "CREATE",
            "namespace": "team-a",
            "userInfo": {"username": NOTEBOOK},
            "object": obj,
        }
    )
    answer = check_answer(post(client, "/mutate", orjson.dumps(document)), document)
    assert answer is not None
    stamped = jsonpatch.apply_patch(obj, patch_ops(answer))
    assert stamped["spec"]["ttlSecondsAfterFinished"] == 3600
