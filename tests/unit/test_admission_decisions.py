"""Admission decisions: stamping patches (applied with jsonpatch) and validation verdicts."""

import copy
from datetime import UTC, datetime, timedelta

import jsonpatch
import pytest

from kaptain_warden.policies.admission import AdmissionRequest, check_admission, plan_mutation
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.policies.owner import owner_label_value

POLICY = load_policy()
NOW = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
NOTEBOOK = "system:serviceaccount:team-a:default-editor"
KNATIVE = "system:serviceaccount:knative-serving:controller"
P = "warden.kaptain.io"

KINDS = {
    "Secret": "v1",
    "Job": "batch/v1",
    "TFJob": "kubeflow.org/v1",
    "PyTorchJob": "kubeflow.org/v1",
    "Experiment": "kubeflow.org/v1beta1",
    "InferenceService": "serving.kserve.io/v1beta1",
    "Revision": "serving.knative.dev/v1",
}


def make_obj(kind="Secret", name="obj", labels=None, annotations=None, spec=None, **extra):
    metadata = {"name": name, "namespace": "team-a"}
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    obj = {"apiVersion": KINDS[kind], "kind": kind, "metadata": metadata, **extra}
    if spec is not None:
        obj["spec"] = spec
    if kind == "Secret":
        obj.setdefault("type", "Opaque")
    return obj


def request(
    obj, operation="CREATE", user=NOTEBOOK, old=None, groups=(), sub_resource="", namespace="team-a"
):
    return AdmissionRequest(
        uid="u-1",
        operation=operation,
        api_version=obj["apiVersion"] if obj else old["apiVersion"],
        kind=obj["kind"] if obj else old["kind"],
        namespace=namespace,
        name=(obj or old).get("metadata", {}).get("name", ""),
        username=user,
        groups=groups,
        obj=obj,
        old_obj=old,
        sub_resource=sub_resource,
    )


def stamped(obj, user=NOTEBOOK, inherited_owner=None, now=NOW):
    mutation = plan_mutation(
        policy=POLICY, request=request(obj, user=user), now=now, inherited_owner=inherited_owner
    )
    return jsonpatch.apply_patch(obj, list(mutation.patch)), mutation


def test_secret_without_labels_or_annotations_gets_the_whole_contract():
    obj = make_obj("Secret")
    result, mutation = stamped(obj)
    assert mutation.rule.id == "credentials-secrets"
    assert result["metadata"]["labels"] == {
        f"{P}/managed": "true",
        f"{P}/owner": owner_label_value(NOTEBOOK),
        f"{P}/rule": "credentials-secrets",
    }
    assert result["metadata"]["annotations"] == {
        f"{P}/owner": NOTEBOOK,
        f"{P}/created-at": "2026-05-01T12:00:00Z",
        f"{P}/ttl": "1d",
        f"{P}/expires-at": "2026-05-02T12:00:00Z",
    }
    assert obj["metadata"].get("labels") is None  # the original is untouched


def test_existing_labels_are_kept_and_keys_with_slashes_are_escaped():
    obj = make_obj("Secret", labels={"app": "sdk", "a/b": "c"}, annotations={"note": "x"})
    result, mutation = stamped(obj)
    paths = [op["path"] for op in mutation.patch]
    assert f"/metadata/labels/{P}~1managed" in paths
    assert "/metadata/labels" not in paths  # adding the map would replace the user's labels
    assert result["metadata"]["labels"]["app"] == "sdk"
    assert result["metadata"]["labels"]["a/b"] == "c"
    assert result["metadata"]["annotations"]["note"] == "x"
    assert result["metadata"]["labels"][f"{P}/managed"] == "true"


def test_generate_name_objects_are_stamped():
    obj = make_obj("Secret")
    del obj["metadata"]["name"]
    obj["metadata"]["generateName"] = "build-creds-"
    result, mutation = stamped(obj)
    assert mutation.rule is not None
    assert result["metadata"]["labels"][f"{P}/rule"] == "credentials-secrets"


def test_reinvocation_on_a_stamped_object_returns_no_patch():
    result, _ = stamped(make_obj("Job", spec={"template": {}}))
    again = plan_mutation(policy=POLICY, request=request(result), now=NOW + timedelta(seconds=3))
    assert again.patch == ()
    assert again.rule.id == "build-jobs"


def test_user_ttl_within_max_is_honoured():
    result, _ = stamped(make_obj("Secret", annotations={f"{P}/ttl": "3d"}))
    annotations = result["metadata"]["annotations"]
    assert annotations[f"{P}/ttl"] == "3d"
    assert annotations[f"{P}/expires-at"] == "2026-05-04T12:00:00Z"


@pytest.mark.parametrize("bad", ["45d", "soon", "0s", ""])
def test_unusable_user_ttl_is_not_trusted_and_the_validator_denies_it(bad):
    result, _ = stamped(make_obj("Secret", annotations={f"{P}/ttl": bad}))
    annotations = result["metadata"]["annotations"]
    assert annotations[f"{P}/ttl"] == bad  # left for the validator to name
    assert annotations[f"{P}/expires-at"] == "2026-05-02T12:00:00Z"  # the rule's 24h
    verdict = check_admission(policy=POLICY, request=request(result), now=NOW)
    assert not verdict.allowed
    assert f"annotation {P}/ttl" in verdict.message


def test_ttl_over_max_message_names_the_limit():
    result, _ = stamped(make_obj("Secret", annotations={f"{P}/ttl": "45d"}))
    verdict = check_admission(policy=POLICY, request=request(result), now=NOW)
    assert 'is above the maximum of 30d that rule "credentials-secrets" allows' in verdict.message


def test_job_gets_native_ttl_when_unset():
    result, _ = stamped(make_obj("Job", spec={"template": {}}))
    assert result["spec"]["ttlSecondsAfterFinished"] == 3600
    assert result["metadata"]["annotations"][f"{P}/ttl-after-finished"] == "1h"
    assert f"{P}/expires-at" not in result["metadata"]["annotations"]


def test_job_native_ttl_set_by_user_is_kept():
    result, _ = stamped(make_obj("Job", spec={"ttlSecondsAfterFinished": 60}))
    assert result["spec"]["ttlSecondsAfterFinished"] == 60


@pytest.mark.parametrize(
    ("spec", "expected_spec"),
    [
        (
            {"tfReplicaSpecs": {}},
            {"tfReplicaSpecs": {}, "runPolicy": {"ttlSecondsAfterFinished": 604800}},
        ),
        (
            {"runPolicy": {"cleanPodPolicy": "None"}},
            {"runPolicy": {"cleanPodPolicy": "None", "ttlSecondsAfterFinished": 604800}},
        ),
        (
            {"runPolicy": {"ttlSecondsAfterFinished": 5}},
            {"runPolicy": {"ttlSecondsAfterFinished": 5}},
        ),
        # Legacy tf-operator v1: the run policy fields live directly under spec.
        (
            {"cleanPodPolicy": "Running", "tfReplicaSpecs": {}},
            {"cleanPodPolicy": "Running", "tfReplicaSpecs": {}, "ttlSecondsAfterFinished": 604800},
        ),
        ({"ttlSecondsAfterFinished": 10}, {"ttlSecondsAfterFinished": 10}),
    ],
)
def test_training_jobs_get_native_ttl_in_the_shape_they_use(spec, expected_spec):
    result, _ = stamped(make_obj("TFJob", spec=spec))
    assert result["spec"] == expected_spec


def test_user_ttl_after_finished_is_mirrored_into_native_ttl():
    result, _ = stamped(
        make_obj("PyTorchJob", spec={}, annotations={f"{P}/ttl-after-finished": "2h"})
    )
    assert result["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == 7200


def test_inference_service_is_stamped_with_owner_only():
    result, _ = stamped(make_obj("InferenceService", spec={}))
    annotations = result["metadata"]["annotations"]
    assert set(annotations) == {f"{P}/owner", f"{P}/created-at"}


def test_revision_created_by_knative_inherits_the_owner():
    result, mutation = stamped(make_obj("Revision", spec={}), user=KNATIVE, inherited_owner="alice")
    assert mutation.rule.id == "knative-revisions"
    assert result["metadata"]["annotations"][f"{P}/owner"] == "alice"
    verdict = check_admission(
        policy=POLICY, request=request(result, user=KNATIVE), now=NOW, inherited_owner="alice"
    )
    assert verdict.allowed, verdict.message


@pytest.mark.parametrize(
    ("operation", "kwargs"),
    [
        ("DELETE", {}),
        ("CONNECT", {}),
        ("CREATE", {"sub_resource": "status"}),
        ("CREATE", {"namespace": "kube-system"}),
        ("CREATE", {"user": "alice"}),
        ("UPDATE", {}),
    ],
)
def test_requests_that_are_not_stamped(operation, kwargs):
    obj = make_obj("Secret")
    mutation = plan_mutation(
        policy=POLICY, request=request(obj, operation=operation, old=obj, **kwargs), now=NOW
    )
    assert mutation.patch == ()


def test_dry_run_gets_the_same_answer():
    obj = make_obj("Secret")
    normal = plan_mutation(policy=POLICY, request=request(obj), now=NOW)
    dry = plan_mutation(
        policy=POLICY,
        request=AdmissionRequest(**{**request(obj).__dict__, "dry_run": True}),
        now=NOW,
    )
    assert normal == dry


# --- validation ---------------------------------------------------------------------------


def validate(obj, **kw):
    now = kw.pop("now", NOW)
    inherited = kw.pop("inherited_owner", None)
    return check_admission(
        policy=POLICY, request=request(obj, **kw), now=now, inherited_owner=inherited
    )


def test_a_stamped_object_is_valid():
    result, _ = stamped(make_obj("Secret"))
    assert validate(result).allowed


def test_forged_owner_is_denied():
    obj = make_obj("Secret", annotations={f"{P}/owner": "bob"})
    result, _ = stamped(obj)
    verdict = validate(result)
    assert not verdict.allowed
    assert (
        f'annotation {P}/owner: "bob" is not the owner of this object; it must be "{NOTEBOOK}"'
        in verdict.message
    )


def test_forged_owner_label_is_denied():
    result, _ = stamped(make_obj("Secret", labels={f"{P}/owner": "bob"}))
    verdict = validate(result)
    assert not verdict.allowed
    assert f"label {P}/owner" in verdict.message


def test_forged_expiry_is_denied():
    result, _ = stamped(make_obj("Secret", annotations={f"{P}/expires-at": "2099-01-01T00:00:00Z"}))
    verdict = validate(result)
    assert not verdict.allowed
    assert f"annotation {P}/expires-at" in verdict.message


def test_backdated_created_at_is_denied():
    result, _ = stamped(make_obj("Secret", annotations={f"{P}/created-at": "2020-01-01T00:00:00Z"}))
    assert not validate(result).allowed


def test_keep_is_allowed_only_where_the_rule_allows_it():
    secret, _ = stamped(make_obj("Secret", annotations={f"{P}/keep": "true"}))
    assert validate(secret).allowed
    job, _ = stamped(make_obj("Job", spec={}, annotations={f"{P}/keep": "true"}))
    verdict = validate(job)
    assert not verdict.allowed
    assert f'annotation {P}/keep: "true" is not allowed by rule "build-jobs"' in verdict.message


def test_keep_must_be_true_or_false():
    secret, _ = stamped(make_obj("Secret", annotations={f"{P}/keep": "yes"}))
    verdict = validate(secret)
    assert 'use "true" or "false"' in verdict.message


def test_unstamped_governed_object_is_admitted_with_a_warning():
    verdict = validate(make_obj("Secret"))
    assert verdict.allowed
    assert verdict.warnings and "backfill" in verdict.warnings[0]


def test_ungoverned_object_carrying_warden_metadata_is_denied():
    obj = make_obj("Secret", labels={f"{P}/managed": "true"})
    verdict = validate(obj, user="alice")
    assert not verdict.allowed
    assert "not governed by any kaptain-warden rule" in verdict.message


def update(old, mutate, **kw):
    new = copy.deepcopy(old)
    mutate(new)
    return validate(new, operation="UPDATE", old=old, **kw)


def test_update_that_removes_warden_metadata_is_denied():
    old, _ = stamped(make_obj("Secret"))
    verdict = update(old, lambda o: o["metadata"]["labels"].pop(f"{P}/managed"))
    assert not verdict.allowed
    assert (
        f'label {P}/managed is immutable after creation; the update tries removing "true"'
        in verdict.message
    )


def test_update_that_changes_the_owner_is_denied():
    old, _ = stamped(make_obj("Secret"))
    verdict = update(
        old, lambda o: o["metadata"]["annotations"].__setitem__(f"{P}/owner", "mallory")
    )
    assert not verdict.allowed
    assert "changing" in verdict.message


def test_update_that_extends_the_ttl_is_denied():
    old, _ = stamped(make_obj("Secret"))
    verdict = update(
        old,
        lambda o: o["metadata"]["annotations"].__setitem__(
            f"{P}/expires-at", "2099-01-01T00:00:00Z"
        ),
    )
    assert not verdict.allowed


def test_update_of_other_fields_is_allowed():
    old, _ = stamped(make_obj("Secret"))
    assert update(old, lambda o: o["metadata"]["labels"].__setitem__("app", "x")).allowed


def test_update_adding_warden_metadata_to_an_unmanaged_object_is_denied():
    old = make_obj("Secret")
    verdict = update(old, lambda o: o["metadata"].__setitem__("labels", {f"{P}/managed": "true"}))
    assert not verdict.allowed


def test_update_may_set_keep_where_allowed():
    secret, _ = stamped(make_obj("Secret"))
    assert update(
        secret, lambda o: o["metadata"]["annotations"].__setitem__(f"{P}/keep", "true")
    ).allowed
    job, _ = stamped(make_obj("Job", spec={}))
    assert not update(
        job, lambda o: o["metadata"]["annotations"].__setitem__(f"{P}/keep", "true")
    ).allowed


@pytest.mark.parametrize(
    ("user", "groups"),
    [
        ("system:serviceaccount:kaptain-warden:kaptain-warden-sweeper", ()),
        ("admin", ("system:masters",)),
    ],
)
def test_privileged_identities_are_exempt(user, groups):
    old, _ = stamped(make_obj("Secret"))
    assert update(
        old, lambda o: o["metadata"]["labels"].pop(f"{P}/owner"), user=user, groups=groups
    ).allowed


def test_delete_is_always_allowed():
    old, _ = stamped(make_obj("Secret"))
    assert validate(None, operation="DELETE", old=old).allowed


def test_unreadable_parents_do_not_turn_into_a_denial():
    """The mutator inherited an owner; the validator's own lookup then failed."""
    result, _ = stamped(make_obj("Revision", spec={}), user=KNATIVE, inherited_owner="alice")
    strict = validate(result, user=KNATIVE)
    assert not strict.allowed  # without a parent owner, warden metadata looks forged
    lenient = check_admission(
        policy=POLICY, request=request(result, user=KNATIVE), now=NOW, parent_lookup_failed=True
    )
    assert lenient.allowed
    assert "not verified" in lenient.warnings[0]


def test_unreadable_parents_still_check_everything_but_the_owner():
    result, _ = stamped(
        make_obj("TFJob", spec={}, annotations={f"{P}/ttl-after-finished": "90d"}),
        inherited_owner="alice",
    )
    verdict = check_admission(
        policy=POLICY, request=request(result), now=NOW, parent_lookup_failed=True
    )
    assert not verdict.allowed
    assert "above the maximum" in verdict.message
    assert f"annotation {P}/owner" not in verdict.message


def test_native_ttl_is_mirrored_even_without_metadata():
    obj = make_obj("Job", spec={})
    del obj["metadata"]
    result, _ = stamped(obj)
    assert result["spec"]["ttlSecondsAfterFinished"] == 3600
    assert result["metadata"]["labels"][f"{P}/rule"] == "build-jobs"
