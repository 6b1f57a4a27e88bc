"""Provenance: the creator Pod from userInfo.extra, the keys on CREATE, carried over on UPDATE."""

import dataclasses
from datetime import UTC, datetime

import jsonpatch
import orjson
import pytest

from factories import review
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.policies.provenance import (
    CreatorPod,
    Provenance,
    creator_pod,
    inherited_provenance,
)
from kaptain_warden.policies.requests import AdmissionRequest
from kaptain_warden.policies.stamping import plan_mutation
from kaptain_warden.policies.validation import check_admission
from kaptain_warden.webhook.reviews import admission_request, read_envelope

POLICY = load_policy()
NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
NOTEBOOK = "system:serviceaccount:team-a:default-editor"
P = "warden.kaptain.io"
UID = "6f1c2f4e-3f7a-4b8e-9c1d-0a1b2c3d4e5f"
POD = CreatorPod("alice-nb-0", UID)
KEYS = POLICY.keys
FOUND = Provenance(pod=POD, notebook="alice-nb", profile_owner="alice@example.com")
PROVENANCE = {
    f"{P}/created-by-pod": "alice-nb-0",
    f"{P}/created-by-pod-uid": UID,
    f"{P}/notebook": "alice-nb",
    f"{P}/profile-owner": "alice@example.com",
}


def make_obj(kind="Secret", annotations=None, labels=None, spec=None):
    api_version = {"Secret": "v1", "TFJob": "kubeflow.org/v1"}[kind]
    metadata = {"name": "obj", "namespace": "team-a"}
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    obj = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    if kind == "Secret":
        obj["type"] = "Opaque"
    if spec is not None:
        obj["spec"] = spec
    return obj


def request(obj, operation="CREATE", user=NOTEBOOK, old=None):
    subject = obj or old
    return AdmissionRequest(
        uid="u-1",
        operation=operation,
        api_version=subject["apiVersion"],
        kind=subject["kind"],
        namespace="team-a",
        name="obj",
        username=user,
        obj=obj,
        old_obj=old,
    )


def pod_request(obj, pod=POD, **kwargs):
    return dataclasses.replace(request(obj, **kwargs), pod=pod)


def mutate(obj, provenance=FOUND, pod=POD, **kwargs):
    mutation = plan_mutation(
        policy=POLICY, request=pod_request(obj, pod=pod), now=NOW, provenance=provenance, **kwargs
    )
    return jsonpatch.apply_patch(obj, list(mutation.patch)), mutation


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {
                "authentication.kubernetes.io/pod-name": ["alice-nb-0"],
                "authentication.kubernetes.io/pod-uid": [UID],
            },
            POD,
        ),
        ({}, None),
        ({"authentication.kubernetes.io/pod-name": ["alice-nb-0"]}, None),
        (
            {
                "authentication.kubernetes.io/pod-name": ["a", "b"],
                "authentication.kubernetes.io/pod-uid": [UID],
            },
            None,
        ),
        (
            {
                "authentication.kubernetes.io/pod-name": ["../team-b/pods/x"],
                "authentication.kubernetes.io/pod-uid": [UID],
            },
            None,
        ),
        (
            {
                "authentication.kubernetes.io/pod-name": ["alice-nb-0"],
                "authentication.kubernetes.io/pod-uid": ["not-a-uid"],
            },
            None,
        ),
    ],
)
def test_creator_pod_is_exactly_one_valid_name_and_uid(extra, expected):
    assert creator_pod(extra) == expected


def test_review_decoding_reads_the_pod_from_user_extra():
    body = review(make_obj("Secret"))
    body["request"]["userInfo"]["extra"] = {
        "authentication.kubernetes.io/pod-name": ["alice-nb-0"],
        "authentication.kubernetes.io/pod-uid": [UID],
        "authentication.kubernetes.io/credential-id": ["JTI=1"],
    }
    req = admission_request(read_envelope(orjson.dumps(body), "application/json"))
    assert req.pod == POD


def test_create_by_a_pod_bound_token_carries_its_provenance():
    result, _ = mutate(make_obj("Secret"))
    annotations = result["metadata"]["annotations"]
    assert {k: annotations.get(k) for k in PROVENANCE} == PROVENANCE
    assert result["metadata"]["labels"][f"{P}/notebook"] == "alice-nb"
    verdict = check_admission(policy=POLICY, request=pod_request(result), now=NOW, provenance=FOUND)
    assert verdict.allowed, verdict.message


def test_notebook_label_is_label_safe():
    odd = dataclasses.replace(FOUND, notebook="a" * 70)
    result, _ = mutate(make_obj("Secret"), provenance=odd)
    assert result["metadata"]["labels"][f"{P}/notebook"] == owner_label_value("a" * 70)
    assert result["metadata"]["annotations"][f"{P}/notebook"] == "a" * 70


def test_no_pod_binding_means_no_provenance_and_forged_keys_are_removed():
    forged = make_obj("Secret", annotations=dict(PROVENANCE), labels={f"{P}/notebook": "x"})
    result, mutation = mutate(forged, provenance=Provenance(), pod=None)
    assert not set(PROVENANCE) & set(result["metadata"]["annotations"])
    assert f"{P}/notebook" not in result["metadata"]["labels"]
    assert any("created-by-pod" in w for w in mutation.warnings)
    verdict = check_admission(policy=POLICY, request=request(forged), now=NOW)
    assert not verdict.allowed
    assert f"annotation {P}/created-by-pod:" in verdict.message


def test_forged_provenance_is_overwritten_with_the_requests_own():
    forged = make_obj(
        "Secret",
        annotations={
            f"{P}/created-by-pod": "bob-nb-0",
            f"{P}/created-by-pod-uid": "00000000-0000-0000-0000-000000000000",
            f"{P}/notebook": "bob-nb",
            f"{P}/profile-owner": "bob@example.com",
        },
    )
    result, mutation = mutate(forged)
    annotations = result["metadata"]["annotations"]
    assert {k: annotations.get(k) for k in PROVENANCE} == PROVENANCE
    assert mutation.warnings
    # The validator denies the forged values if the mutator did not run.
    stamped_forged = dict(result)
    stamped_forged["metadata"] = dict(result["metadata"])
    stamped_forged["metadata"]["annotations"] = {**annotations, f"{P}/profile-owner": "bob"}
    verdict = check_admission(
        policy=POLICY, request=pod_request(stamped_forged), now=NOW, provenance=FOUND
    )
    assert not verdict.allowed
    assert f"annotation {P}/profile-owner" in verdict.message


def test_a_failed_lookup_leaves_the_key_out_and_never_blocks():
    unresolved = Provenance(pod=POD, unresolved=frozenset({KEYS.notebook, KEYS.profile_owner}))
    forged = make_obj("Secret", annotations={f"{P}/notebook": "bob-nb"})
    result, _ = mutate(forged, provenance=unresolved)
    annotations = result["metadata"]["annotations"]
    assert f"{P}/notebook" not in annotations and f"{P}/profile-owner" not in annotations
    assert annotations[f"{P}/created-by-pod-uid"] == UID
    # Mutator found them, validator's lookup failed: admitted.
    found, _ = mutate(make_obj("Secret"))
    assert check_admission(
        policy=POLICY, request=pod_request(found), now=NOW, provenance=unresolved
    ).allowed
    # Mutator's lookup failed, validator found them: admitted (absence is accepted).
    assert check_admission(
        policy=POLICY, request=pod_request(result), now=NOW, provenance=FOUND
    ).allowed


def test_update_carries_provenance_over():
    created, _ = mutate(make_obj("Secret"))
    update = make_obj("Secret", annotations={f"{P}/notebook": "bob-nb"})
    mutation = plan_mutation(
        policy=POLICY,
        request=request(update, operation="UPDATE", old=created),
        now=NOW,
    )
    result = jsonpatch.apply_patch(update, list(mutation.patch))
    annotations = result["metadata"]["annotations"]
    assert {k: annotations.get(k) for k in PROVENANCE} == PROVENANCE
    assert result["metadata"]["labels"][f"{P}/notebook"] == "alice-nb"
    sweeper_written = dict(created)
    sweeper_written["metadata"] = dict(created["metadata"])
    sweeper_written["metadata"]["annotations"] = {
        **created["metadata"]["annotations"],
        f"{P}/creator-gone-at": "2026-05-01T13:00:00Z",
    }
    # Only the privileged sweeper writes creator-gone-at.
    verdict = check_admission(
        policy=POLICY,
        request=request(sweeper_written, operation="UPDATE", old=created),
        now=NOW,
    )
    assert not verdict.allowed
    assert f"{P}/creator-gone-at" in verdict.message
    sweeper = "system:serviceaccount:kaptain-warden:kaptain-warden-sweeper"
    assert check_admission(
        policy=POLICY,
        request=request(sweeper_written, operation="UPDATE", old=created, user=sweeper),
        now=NOW,
    ).allowed


def test_a_controller_made_child_never_takes_the_controllers_pod():
    # A controller running in a Pod has a bound token too: its Pod made nothing.
    controller = "system:serviceaccount:kubeflow:katib-controller"
    child = make_obj("TFJob", spec={})
    child["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "kubeflow.org/v1beta1",
            "kind": "Trial",
            "name": "t",
            "uid": "u",
            "controller": True,
        }
    ]
    mutation = plan_mutation(
        policy=POLICY,
        request=dataclasses.replace(request(child, user=controller), pod=POD),
        now=NOW,
        inherited_owner="system:serviceaccount:team-a:default-editor",
        provenance=FOUND,
        inherited_provenance=Provenance(notebook="alice-nb"),
    )
    result = jsonpatch.apply_patch(child, list(mutation.patch))
    annotations = result["metadata"]["annotations"]
    assert f"{P}/created-by-pod" not in annotations
    assert annotations[f"{P}/notebook"] == "alice-nb"


def test_inherited_provenance_reads_only_valid_values():
    found = inherited_provenance(PROVENANCE, KEYS)
    assert found == FOUND
    assert inherited_provenance({f"{P}/created-by-pod": "x"}, KEYS) == Provenance()
