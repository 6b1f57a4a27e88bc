"""Tier 2: stamping and validation decisions, as answered by the real server over HTTPS."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from warden_server import Server

from factories import (
    ADMIN,
    ADMIN_GROUPS,
    NOTEBOOK,
    STRANGER,
    P,
    annotations,
    config_map,
    experiment,
    inference_service,
    job,
    labels,
    patch_ops,
    patched,
    review,
    secret,
    tfjob,
)
from kaptain_warden.policies.owner import owner_label_value

SWEEPER = "system:serviceaccount:kaptain-warden:kaptain-warden-sweeper"


def answer(server: Server, session: requests.Session, path: str, doc: dict[str, Any]) -> Any:
    """POST a review; check the envelope every answer must carry; return the answer."""
    response = server.post(session, path, doc)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["apiVersion"] == "admission.k8s.io/v1"
    assert body["kind"] == "AdmissionReview"
    assert body["response"]["uid"] == doc["request"]["uid"]
    return body


def mutate(server: Server, session: requests.Session, doc: dict[str, Any]) -> Any:
    return answer(server, session, "/mutate", doc)


def validate(server: Server, session: requests.Session, doc: dict[str, Any]) -> Any:
    return answer(server, session, "/validate", doc)


def stamp(server: Server, session: requests.Session, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server would store it after our mutating webhook."""
    return patched(obj, mutate(server, session, review(obj)))


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


STAMPED_KINDS = [
    pytest.param(secret(), "credentials-secrets", "1d", None, id="secret"),
    pytest.param(job(), "build-jobs", None, "1h", id="job"),
    pytest.param(tfjob(), "training-jobs", None, "7d", id="tfjob-runpolicy"),
    pytest.param(tfjob(shape="legacy"), "training-jobs", None, "7d", id="tfjob-legacy"),
    pytest.param(tfjob(kind="PyTorchJob"), "training-jobs", None, "7d", id="pytorchjob"),
    pytest.param(experiment(), "katib-experiments", None, "7d", id="experiment"),
    pytest.param(inference_service(), "inference-services", None, None, id="kserve-isvc"),
    pytest.param(
        inference_service(group="serving.kubeflow.org"),
        "inference-services",
        None,
        None,
        id="kfserving-isvc",
    ),
]


@pytest.mark.parametrize(("obj", "rule", "ttl", "after"), STAMPED_KINDS)
def test_create_of_governed_object_is_stamped(server, session, obj, rule, ttl, after):
    doc = review(obj)
    result = patched(obj, mutate(server, session, doc))
    assert labels(result) == {
        **labels(obj),
        f"{P}/managed": "true",
        f"{P}/owner": owner_label_value(NOTEBOOK),
        f"{P}/rule": rule,
    }
    notes = annotations(result)
    assert notes[f"{P}/owner"] == NOTEBOOK
    created = when(notes[f"{P}/created-at"])
    assert abs(datetime.now(created.tzinfo) - created) < timedelta(minutes=1)
    assert notes.get(f"{P}/ttl") == ttl
    assert notes.get(f"{P}/ttl-after-finished") == after
    if ttl is not None:
        assert when(notes[f"{P}/expires-at"]) == created + timedelta(days=1)
    else:
        assert f"{P}/expires-at" not in notes
    # Nothing but metadata and native TTL fields changed.
    assert {k: v for k, v in result.items() if k not in ("metadata", "spec")} == {
        k: v for k, v in obj.items() if k not in ("metadata", "spec")
    }


def test_label_keys_are_escaped_when_the_labels_map_exists(server, session):
    obj = inference_service()  # carries an empty labels map
    paths = [op["path"] for op in patch_ops(mutate(server, session, review(obj)))]
    assert f"/metadata/labels/{P.replace('/', '~1')}~1managed" in paths
    assert "/metadata/labels" not in paths


@pytest.mark.parametrize(
    ("obj", "where", "seconds"),
    [
        pytest.param(job(), ("spec", "ttlSecondsAfterFinished"), 3600, id="job"),
        pytest.param(
            tfjob(), ("spec", "runPolicy", "ttlSecondsAfterFinished"), 604800, id="runpolicy"
        ),
        pytest.param(
            tfjob(shape="legacy"), ("spec", "ttlSecondsAfterFinished"), 604800, id="legacy"
        ),
        pytest.param(
            tfjob(shape="bare"), ("spec", "runPolicy", "ttlSecondsAfterFinished"), 604800, id="bare"
        ),
        pytest.param(
            job(ttl_seconds_after_finished=60), ("spec", "ttlSecondsAfterFinished"), 60, id="own"
        ),
    ],
)
def test_ttl_after_finished_is_mirrored_into_the_native_field(server, session, obj, where, seconds):
    result = stamp(server, session, obj)
    node: Any = result
    for key in where:
        node = node[key]
    assert node == seconds
    if obj["kind"] == "TFJob" and "runPolicy" not in where:
        assert "runPolicy" not in result["spec"]  # the legacy shape stays legacy


def test_reinvocation_on_a_stamped_object_returns_no_patch(server, session):
    stamped = stamp(server, session, tfjob())
    again = mutate(server, session, review(stamped))
    assert "patch" not in again["response"]
    assert "patchType" not in again["response"]
    assert again["response"]["allowed"] is True


def test_update_carries_the_stamp_over(server, session):
    stamped = stamp(server, session, secret())
    bare = secret()  # a replace with one's own manifest: no warden key at all
    result = mutate(server, session, review(bare, operation="UPDATE", old=stamped))
    restored = patched(bare, result)
    assert restored["metadata"]["labels"] == stamped["metadata"]["labels"]
    assert restored["metadata"]["annotations"] == stamped["metadata"]["annotations"]
    assert "warnings" not in result["response"]
    doc = review(restored, operation="UPDATE", old=stamped)
    assert validate(server, session, doc)["response"]["allowed"] is True


def test_a_ttl_extension_recomputes_the_expiry(server, session):
    stamped = stamp(server, session, secret())
    created = when(stamped["metadata"]["annotations"][f"{P}/created-at"])
    extended = copy.deepcopy(stamped)
    extended["metadata"]["annotations"][f"{P}/ttl"] = "7d"
    result = patched(
        extended, mutate(server, session, review(extended, operation="UPDATE", old=stamped))
    )
    assert when(result["metadata"]["annotations"][f"{P}/expires-at"]) == created + timedelta(days=7)
    doc = review(result, operation="UPDATE", old=stamped)
    assert validate(server, session, doc)["response"]["allowed"] is True
    over = copy.deepcopy(stamped)
    over["metadata"]["annotations"][f"{P}/ttl"] = "31d"
    over = patched(over, mutate(server, session, review(over, operation="UPDATE", old=stamped)))
    message = denial(validate(server, session, review(over, operation="UPDATE", old=stamped)))
    assert f'annotation {P}/ttl: "31d" is above the maximum of 30d' in message


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(review(secret(namespace="kube-system")), id="excluded-namespace"),
        pytest.param(review(None, operation="DELETE", old=secret()), id="delete"),
        pytest.param(review(secret(), operation="CONNECT"), id="connect"),
        pytest.param(review(job(), operation="UPDATE", sub_resource="status"), id="subresource"),
        pytest.param(review(config_map()), id="ungoverned-kind"),
        pytest.param(review(secret(), user=STRANGER, groups=()), id="not-a-notebook-identity"),
        pytest.param(review(secret(type_="kubernetes.io/tls")), id="ungoverned-secret-type"),
    ],
)
def test_ungoverned_requests_are_allowed_unchanged(server, session, doc):
    result = mutate(server, session, doc)
    assert result["response"]["allowed"] is True
    assert patch_ops(result) == []
    assert validate(server, session, doc)["response"]["allowed"] is True


def _normalised(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Operations with timestamps blanked: two requests may straddle a second."""
    ops = copy.deepcopy(ops)
    for op in ops:
        value = op["value"]
        if isinstance(value, dict):
            for key in (f"{P}/created-at", f"{P}/expires-at"):
                if key in value:
                    value[key] = "T"
        elif op["path"].endswith(("created-at", "expires-at")):
            op["value"] = "T"
    return ops


def test_dry_run_gets_the_same_answer(server, session):
    obj = secret()
    real = mutate(server, session, review(obj, uid="same-uid"))
    dry = mutate(server, session, review(obj, uid="same-uid", dry_run=True))
    assert _normalised(patch_ops(dry)) == _normalised(patch_ops(real))
    assert dry["response"]["allowed"] is True


def test_generate_name_object_is_stamped(server, session):
    obj = secret(name=None, generate_name="registry-credentials-")
    doc = review(obj)
    assert "name" not in doc["request"]
    result = patched(obj, mutate(server, session, doc))
    assert labels(result)[f"{P}/rule"] == "credentials-secrets"
    assert validate(server, session, review(result))["response"]["allowed"] is True


def test_user_ttl_within_max_is_honoured(server, session):
    obj = secret(annotations={f"{P}/ttl": "36h"})
    result = stamp(server, session, obj)
    notes = annotations(result)
    assert notes[f"{P}/ttl"] == "36h"
    assert when(notes[f"{P}/expires-at"]) - when(notes[f"{P}/created-at"]) == timedelta(hours=36)
    assert validate(server, session, review(result))["response"]["allowed"] is True


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(secret(), id="secret"),
        pytest.param(tfjob(shape="legacy"), id="tfjob"),
        pytest.param(inference_service(), id="isvc"),
    ],
)
def test_stamped_object_passes_validation(server, session, obj):
    result = validate(server, session, review(stamp(server, session, obj)))
    assert result["response"] == {"uid": result["response"]["uid"], "allowed": True}


def denial(result: Any) -> str:
    response = result["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["reason"] == "Forbidden"
    message: str = response["status"]["message"]
    return message


def test_a_forged_owner_is_replaced_with_a_warning_and_denied_unmutated(server, session):
    forged = secret(annotations={f"{P}/owner": "alice"})
    result = mutate(server, session, review(forged))
    assert annotations(patched(forged, result))[f"{P}/owner"] == NOTEBOOK
    assert any('"alice"' in w for w in result["response"]["warnings"])
    unmutated = stamp(server, session, secret())
    unmutated["metadata"]["annotations"][f"{P}/owner"] = "alice"
    message = denial(validate(server, session, review(unmutated)))
    assert f'annotation {P}/owner: "alice" must be "{NOTEBOOK}"' in message


@pytest.mark.parametrize(
    ("change", "words"),
    [
        pytest.param(
            lambda o: o["metadata"]["labels"].update({f"{P}/owner": "bob"}),
            f'label {P}/owner: "bob" must be',
            id="change",
        ),
        pytest.param(
            lambda o: o["metadata"]["annotations"].pop(f"{P}/expires-at"),
            f"annotation {P}/expires-at: absent must be",
            id="remove",
        ),
    ],
)
def test_update_changing_or_removing_system_keys_is_undone_or_denied(
    server, session, change, words
):
    stamped = stamp(server, session, secret())
    updated = copy.deepcopy(stamped)
    change(updated)
    doc = review(updated, operation="UPDATE", old=stamped)
    restored = patched(updated, mutate(server, session, doc))
    assert restored["metadata"] == stamped["metadata"]
    # The validator is the backstop when the mutator did not run.
    message = denial(validate(server, session, doc))
    assert words in message and "system keys never change after creation" in message


@pytest.mark.parametrize(
    ("ttl", "words"),
    [
        pytest.param("7x", "is not a duration", id="unparsable"),
        pytest.param("60d", "is above the maximum of 30d", id="over-max"),
    ],
)
def test_bad_ttl_annotation_is_denied(server, session, ttl, words):
    result = stamp(server, session, secret(annotations={f"{P}/ttl": ttl}))
    message = denial(validate(server, session, review(result)))
    assert f"annotation {P}/ttl" in message and words in message
    assert "such as 90s, 90m, 36h, 7d, 2w" in message


def test_keep_is_denied_where_the_rule_does_not_allow_it(server, session):
    result = stamp(server, session, job(annotations={f"{P}/keep": "true"}))
    message = denial(validate(server, session, review(result)))
    assert f"annotation {P}/keep" in message and 'rule "build-jobs"' in message


def test_keep_is_allowed_where_the_rule_allows_it(server, session):
    result = stamp(server, session, secret(annotations={f"{P}/keep": "true"}))
    assert validate(server, session, review(result))["response"]["allowed"] is True


@pytest.mark.parametrize(
    ("user", "groups"),
    [
        pytest.param(ADMIN, ADMIN_GROUPS, id="cluster-admin"),
        pytest.param(SWEEPER, (), id="sweeper"),
    ],
)
def test_privileged_identities_are_exempt(server, session, user, groups):
    stamped = stamp(server, session, secret())
    updated = secret()  # every warden key removed
    doc = review(updated, operation="UPDATE", old=stamped, user=user, groups=groups)
    assert validate(server, session, doc)["response"]["allowed"] is True
    forged = review(secret(annotations={f"{P}/owner": "alice"}), user=user, groups=groups)
    assert validate(server, session, forged)["response"]["allowed"] is True


def test_unstamped_governed_object_is_allowed_with_a_warning(server, session):
    result = validate(server, session, review(secret()))
    assert result["response"]["allowed"] is True
    assert any("did not stamp" in w for w in result["response"]["warnings"])
