"""Admission decisions: stamping patches (applied with jsonpatch) and validation verdicts."""

import copy
from datetime import UTC, datetime, timedelta
from importlib import resources

import jsonpatch
import pytest
import yaml

from kaptain_warden.policies.loader import load_policy, load_policy_text
from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.policies.requests import AdmissionRequest
from kaptain_warden.policies.stamping import plan_mutation
from kaptain_warden.policies.validation import check_admission

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
        # Legacy tf-operator v1: the run policy fields live directly under spec. Covered here
        # only: the upstream training-operator CRDs the tier-3 tests install prune them.
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
        ("UPDATE", {}),  # an update that changes nothing
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


# --- CREATE: system keys are computed, whatever the request carries ---------------------------


def mutated(obj, **kw):
    """`obj` as the mutator leaves it, and the mutation."""
    inherited = kw.pop("inherited_owner", None)
    now = kw.pop("now", NOW)
    mutation = plan_mutation(
        policy=POLICY, request=request(obj, **kw), now=now, inherited_owner=inherited
    )
    return jsonpatch.apply_patch(copy.deepcopy(obj), list(mutation.patch)), mutation


def test_a_forged_owner_is_replaced_by_the_requester_with_a_warning():
    obj = make_obj("Secret", annotations={f"{P}/owner": "bob"}, labels={f"{P}/owner": "bob"})
    result, mutation = mutated(obj)
    assert result["metadata"]["annotations"][f"{P}/owner"] == NOTEBOOK
    assert result["metadata"]["labels"][f"{P}/owner"] == owner_label_value(NOTEBOOK)
    assert (
        f'kaptain-warden replaced annotation {P}/owner "bob" with "{NOTEBOOK}"'
        in mutation.warnings[1]
    )
    assert f'label {P}/owner "bob"' in mutation.warnings[0]
    assert validate(result).allowed


def test_the_validator_denies_a_forged_owner_the_mutator_did_not_replace():
    verdict = validate(make_stamped_like("Secret", owner="bob"))
    assert not verdict.allowed
    assert f'annotation {P}/owner: "bob" must be "{NOTEBOOK}" (the requester)' in verdict.message
    assert f'label {P}/owner: "bob" must be' in verdict.message


def make_stamped_like(kind, owner, created="2026-05-01T12:00:00Z", **annotations):
    """An object carrying a complete stamp for `owner`, as a copied or forged manifest does."""
    return make_obj(
        kind,
        labels={
            f"{P}/managed": "true",
            f"{P}/owner": owner,
            f"{P}/rule": "credentials-secrets",
        },
        annotations={
            f"{P}/owner": owner,
            f"{P}/created-at": created,
            f"{P}/ttl": "1d",
            f"{P}/expires-at": "2026-05-02T12:00:00Z",
            **annotations,
        },
    )


def test_an_exported_manifest_gets_a_fresh_created_at_and_expiry():
    exported = make_stamped_like("Secret", NOTEBOOK, created="2026-04-20T08:00:00Z")
    exported["metadata"]["annotations"][f"{P}/expires-at"] = "2026-04-21T08:00:00Z"
    result, mutation = mutated(exported)
    annotations = result["metadata"]["annotations"]
    assert annotations[f"{P}/created-at"] == "2026-05-01T12:00:00Z"
    assert annotations[f"{P}/expires-at"] == "2026-05-02T12:00:00Z"
    assert annotations[f"{P}/ttl"] == "1d"  # a user key, kept as written
    assert any(f'{P}/created-at "2026-04-20T08:00:00Z"' in w for w in mutation.warnings)
    assert validate(result).allowed
    # Unmutated, the validator denies it.
    verdict = validate(exported)
    assert not verdict.allowed
    assert f"annotation {P}/created-at" in verdict.message


@pytest.mark.parametrize(("age", "kept"), [(0, True), (9, True), (11, False), (-11, False)])
def test_only_a_created_at_from_this_very_request_is_kept(age, kept):
    """A reinvocation (within seconds) changes nothing; an older copy gets now."""
    copied, _ = stamped(make_obj("Secret"), now=NOW - timedelta(seconds=age))
    result, mutation = mutated(copied)
    assert (mutation.patch == ()) is kept
    expected = (
        copied["metadata"]["annotations"][f"{P}/created-at"] if kept else "2026-05-01T12:00:00Z"
    )
    assert result["metadata"]["annotations"][f"{P}/created-at"] == expected


def test_a_forged_expiry_is_replaced():
    obj = make_obj("Secret", annotations={f"{P}/expires-at": "2099-01-01T00:00:00Z"})
    result, mutation = mutated(obj)
    assert result["metadata"]["annotations"][f"{P}/expires-at"] == "2026-05-02T12:00:00Z"
    assert mutation.warnings
    assert not validate(obj).allowed  # the backstop, had the mutator not run


def test_an_expiry_on_a_rule_without_ttl_is_removed():
    obj = make_obj(
        "InferenceService", spec={}, annotations={f"{P}/expires-at": "2026-05-01T13:00:00Z"}
    )
    result, mutation = mutated(obj)
    assert f"{P}/expires-at" not in result["metadata"]["annotations"]
    assert "with absent" in mutation.warnings[0]


def test_a_clean_object_gets_no_warning():
    assert mutated(make_obj("Secret", annotations={f"{P}/ttl": "2h"}))[1].warnings == ()


# KServe v0.20.0 copies the InferenceService's labels onto the predictor's Knative Service
# (pkg/controller/v1beta1/inferenceservice/components/predictor.go, buildObjectMeta) and its
# annotations onto the revision template (reconcilers/knative/ksvc_reconciler.go).
ISVC_LABELS = {
    f"{P}/managed": "true",
    f"{P}/owner": owner_label_value(NOTEBOOK),
    f"{P}/rule": "inference-services",
    "serving.kserve.io/inferenceservice": "mnist",
}
ISVC_ANNOTATIONS = {
    f"{P}/owner": NOTEBOOK,
    f"{P}/created-at": "2026-04-30T09:00:00Z",
    f"{P}/ttl": "2h",
    f"{P}/expires-at": "2026-04-30T11:00:00Z",
    f"{P}/keep": "true",
}
KSERVE = "system:serviceaccount:kserve:kserve-controller-manager"


@pytest.mark.parametrize(
    ("kind", "rule"), [("KnativeService", "knative-serving"), ("Revision", "knative-revisions")]
)
def test_a_controller_made_child_follows_its_own_rule_and_inherits_only_the_owner(kind, rule):
    KINDS.setdefault("KnativeService", "serving.knative.dev/v1")
    obj = make_obj(
        "Revision", spec={}, labels=dict(ISVC_LABELS), annotations=dict(ISVC_ANNOTATIONS)
    )
    if kind == "KnativeService":
        obj["kind"] = "Service"
    result, mutation = mutated(obj, user=KSERVE, inherited_owner=NOTEBOOK)
    assert mutation.rule.id == rule
    assert mutation.warnings == ()  # a controller copying its parent is not told off
    assert result["metadata"]["labels"][f"{P}/rule"] == rule
    assert result["metadata"]["labels"][f"{P}/owner"] == owner_label_value(NOTEBOOK)
    assert result["metadata"]["annotations"] == {
        f"{P}/owner": NOTEBOOK,
        f"{P}/created-at": "2026-05-01T12:00:00Z",
    }
    verdict = validate(result, user=KSERVE, inherited_owner=NOTEBOOK)
    assert verdict.allowed, verdict.message
    # Had the mutator not run, the copied keys are denied, naming the child's own rule.
    refused = validate(obj, user=KSERVE, inherited_owner=NOTEBOOK)
    assert not refused.allowed
    assert f'label {P}/rule: "inference-services" must be "{rule}"' in refused.message


def test_a_denial_says_why_per_rule_and_per_childs_kind():
    """Why a key must have its value is built once per rule and child kind (`contract`):
    each denial still names its own rule, and a child's its own kind."""
    KINDS.setdefault("KnativeService", "serving.knative.dev/v1")
    secret, _ = mutated(make_obj("Secret"))
    del secret["metadata"]["annotations"][f"{P}/ttl"]
    refused = validate(secret)
    assert not refused.allowed
    assert (
        f'annotation {P}/ttl: absent must be "1d" (the default of rule credentials-secrets '
        "when the manifest sets none)" in refused.message
    )
    for kind, rule in (("Revision", "knative-revisions"), ("Service", "knative-serving")):
        obj = make_obj("Revision", spec={})
        obj["kind"] = kind
        child, _ = mutated(obj, user=KSERVE, inherited_owner=NOTEBOOK)
        child["metadata"]["annotations"][f"{P}/ttl"] = "2h"
        refused = validate(child, user=KSERVE, inherited_owner=NOTEBOOK)
        assert not refused.allowed
        assert (
            f'annotation {P}/ttl: "2h" must be absent (a {kind} made for a managed parent '
            f"follows its own rule {rule})" in refused.message
        ), refused.message


def test_a_child_with_a_ttl_rule_gets_its_rules_ttl_not_its_parents():
    tfjob = make_obj("TFJob", spec={}, annotations={f"{P}/ttl-after-finished": "30d"})
    result, _ = mutated(
        tfjob, user="system:serviceaccount:kubeflow:katib-controller", inherited_owner=NOTEBOOK
    )
    assert result["metadata"]["annotations"][f"{P}/ttl-after-finished"] == "7d"
    assert result["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == 604800


def test_keys_on_what_no_rule_governs_are_stripped_for_a_non_privileged_request():
    obj = make_obj(
        "Secret",
        labels={f"{P}/managed": "true", "app": "x"},
        annotations={f"{P}/owner": "system:admin", f"{P}/expires-at": "2020-01-01T00:00:00Z"},
    )
    result, mutation = mutated(obj, user="alice")
    assert result["metadata"]["labels"] == {"app": "x"}
    assert result["metadata"]["annotations"] == {}
    assert "no kaptain-warden rule governs this Secret" in mutation.warnings[0]
    assert validate(result, user="alice").allowed


def test_a_privileged_restore_keeps_its_keys():
    restored = make_stamped_like("Secret", "alice", created="2026-01-01T00:00:00Z")
    result, mutation = mutated(restored, user="admin", groups=("system:masters",))
    assert result == restored
    assert mutation.warnings == ()
    assert validate(restored, user="admin", groups=("system:masters",)).allowed


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


def test_a_failed_parent_lookup_means_the_owner_is_the_requester():
    """The mutator inherited an owner; the validator's own lookup then failed: the object
    claims an owner the requester may not claim, and is denied."""
    result, _ = stamped(make_obj("Revision", spec={}), user=KNATIVE, inherited_owner="alice")
    verdict = check_admission(
        policy=POLICY, request=request(result, user=KNATIVE), now=NOW, parent_lookup_failed=True
    )
    assert not verdict.allowed
    assert "its parents could not be read" in verdict.message
    # A person's object naming an unreadable parent: the owner is the person.
    tfjob, _ = stamped(make_obj("TFJob", spec={}), inherited_owner="alice")
    verdict = check_admission(
        policy=POLICY, request=request(tfjob), now=NOW, parent_lookup_failed=True
    )
    assert not verdict.allowed
    assert f'annotation {P}/owner: "alice" must be "{NOTEBOOK}"' in verdict.message


# --- UPDATE: system keys carried over, user keys changed only explicitly ---------------------


def update(old, change, **kw):
    """(the mutated new object, its mutation, the validator's verdict on it, the verdict on
    the unmutated request)."""
    new = copy.deepcopy(old)
    change(new)
    mutation = plan_mutation(
        policy=POLICY, request=request(new, operation="UPDATE", old=old, **kw), now=NOW
    )
    result = jsonpatch.apply_patch(copy.deepcopy(new), list(mutation.patch))
    after = validate(result, operation="UPDATE", old=old, **kw)
    before = validate(new, operation="UPDATE", old=old, **kw)
    return result, mutation, after, before


def own_manifest(obj):
    """What a client that sends its own manifest (kubectl replace, KServeClient.replace) sends."""
    for section in ("labels", "annotations"):
        obj["metadata"][section] = {
            k: v for k, v in obj["metadata"].get(section, {}).items() if not k.startswith(P)
        }


def test_a_replace_with_ones_own_manifest_keeps_the_whole_stamp():
    old, _ = stamped(make_obj("Secret", labels={"app": "x"}, annotations={f"{P}/keep": "true"}))
    result, mutation, after, before = update(old, own_manifest)
    assert result["metadata"] == old["metadata"]
    assert mutation.warnings == ()
    assert after.allowed, after.message
    # The backstop: unmutated, the removal is denied, naming what must stay.
    assert not before.allowed
    assert f'label {P}/managed: absent must be "true" (system keys never change' in before.message
    assert f'annotation {P}/keep: absent must be "true"' in before.message


def test_a_patch_removing_a_system_key_is_undone():
    old, _ = stamped(make_obj("Secret"))
    result, _, after, _ = update(old, lambda o: o["metadata"]["labels"].pop(f"{P}/managed"))
    assert result["metadata"]["labels"][f"{P}/managed"] == "true"
    assert after.allowed


def test_a_changed_owner_is_carried_over_with_a_warning():
    old, _ = stamped(make_obj("Secret"))
    result, mutation, after, before = update(
        old, lambda o: o["metadata"]["annotations"].__setitem__(f"{P}/owner", "mallory")
    )
    assert result["metadata"]["annotations"][f"{P}/owner"] == NOTEBOOK
    assert f'kept annotation {P}/owner "{NOTEBOOK}" instead of "mallory"' in mutation.warnings[0]
    assert after.allowed
    assert not before.allowed


def test_an_edited_expiry_is_carried_over():
    old, _ = stamped(make_obj("Secret"))
    result, _, after, before = update(
        old,
        lambda o: o["metadata"]["annotations"].__setitem__(
            f"{P}/expires-at", "2099-01-01T00:00:00Z"
        ),
    )
    assert result["metadata"]["annotations"][f"{P}/expires-at"] == "2026-05-02T12:00:00Z"
    assert after.allowed and not before.allowed


@pytest.mark.parametrize(
    ("ttl", "expires"), [("3d", "2026-05-04T12:00:00Z"), ("2h", "2026-05-01T14:00:00Z")]
)
def test_a_ttl_change_recomputes_the_expiry_from_created_at(ttl, expires):
    old, _ = stamped(make_obj("Secret"))
    result, mutation, after, before = update(
        old, lambda o: o["metadata"]["annotations"].__setitem__(f"{P}/ttl", ttl)
    )
    annotations = result["metadata"]["annotations"]
    assert annotations[f"{P}/ttl"] == ttl
    assert annotations[f"{P}/expires-at"] == expires
    assert annotations[f"{P}/created-at"] == "2026-05-01T12:00:00Z"
    assert mutation.warnings == ()
    assert after.allowed, after.message
    assert not before.allowed  # the expiry the request carried is not created-at + ttl


def test_a_ttl_can_be_added_where_the_rule_sets_none():
    old, _ = stamped(make_obj("InferenceService", spec={}))
    result, _, after, _ = update(
        old, lambda o: o["metadata"]["annotations"].__setitem__(f"{P}/ttl", "12h")
    )
    assert result["metadata"]["annotations"][f"{P}/expires-at"] == "2026-05-02T00:00:00Z"
    assert after.allowed


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "ttl",
            "45d",
            'annotation warden.kaptain.io/ttl: "45d" is above the maximum of 30d that rule '
            '"credentials-secrets" allows; use a duration up to 30d',
        ),
        ("ttl", "soon", "annotation warden.kaptain.io/ttl: 'soon' is not a duration"),
        (
            "ttl-after-finished",
            "31d",
            'annotation warden.kaptain.io/ttl-after-finished: "31d" is above the maximum',
        ),
        (
            "keep",
            "yes",
            'annotation warden.kaptain.io/keep: "yes" is not allowed; use "true" or "false"',
        ),
    ],
)
def test_an_unusable_change_is_denied_naming_the_key_and_the_allowed_values(key, value, message):
    old, _ = stamped(make_obj("Secret"))
    result, _, after, _ = update(
        old, lambda o: o["metadata"]["annotations"].__setitem__(f"{P}/{key}", value)
    )
    assert not after.allowed
    assert message in after.message
    assert result["metadata"]["annotations"][f"{P}/expires-at"] == "2026-05-02T12:00:00Z"


def test_keep_may_be_set_and_unset_only_where_the_rule_allows_it():
    secret, _ = stamped(make_obj("Secret"))
    set_keep = lambda value: lambda o: o["metadata"]["annotations"].__setitem__(f"{P}/keep", value)  # noqa: E731
    kept, _, after, _ = update(secret, set_keep("true"))
    assert after.allowed
    assert update(kept, set_keep("false"))[2].allowed
    job, _ = stamped(make_obj("Job", spec={}))
    refused = update(job, set_keep("true"))[2]
    assert not refused.allowed
    assert 'is not allowed by rule "build-jobs"' in refused.message
    assert update(job, set_keep("false"))[2].allowed


def test_a_ttl_after_finished_change_moves_the_mirrored_native_ttl():
    old, _ = stamped(make_obj("Job", spec={}))
    assert old["spec"]["ttlSecondsAfterFinished"] == 3600
    result, _, after, _ = update(
        old,
        lambda o: o["metadata"]["annotations"].__setitem__(f"{P}/ttl-after-finished", "2h"),
    )
    assert result["spec"]["ttlSecondsAfterFinished"] == 7200
    assert after.allowed


def test_a_replace_dropping_the_mirrored_native_ttl_gets_it_back():
    old, _ = stamped(make_obj("TFJob", spec={"tfReplicaSpecs": {}}))

    def replace(o):
        own_manifest(o)
        o["spec"] = {"tfReplicaSpecs": {}}

    result, _, after, _ = update(old, replace)
    assert result["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == 604800
    assert after.allowed


def test_a_native_ttl_the_user_set_is_left_alone():
    old, _ = stamped(make_obj("Job", spec={"ttlSecondsAfterFinished": 60}))
    result, _, _, _ = update(
        old,
        lambda o: o["metadata"]["annotations"].__setitem__(f"{P}/ttl-after-finished", "2h"),
    )
    assert result["spec"]["ttlSecondsAfterFinished"] == 60


def child_revision():
    obj = make_obj("Revision", spec={})
    obj["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Configuration",
            "name": "mnist-predictor",
            "uid": "c-1",
            "controller": True,
        }
    ]
    result, _ = stamped(obj, user=KNATIVE, inherited_owner=NOTEBOOK)
    return result


def test_user_keys_a_controller_copies_onto_a_child_on_update_are_dropped():
    old = child_revision()

    def copy_parent(o):
        o["metadata"]["annotations"].update({f"{P}/ttl": "2h", f"{P}/keep": "true"})

    result, mutation, after, before = update(old, copy_parent, user=KNATIVE)
    assert result["metadata"]["annotations"] == old["metadata"]["annotations"]
    assert mutation.warnings == ()
    assert after.allowed and not before.allowed
    # The owner may change them.
    result, _, after, _ = update(
        old, lambda o: o["metadata"]["annotations"].__setitem__(f"{P}/ttl", "2h")
    )
    assert result["metadata"]["annotations"][f"{P}/ttl"] == "2h"
    assert after.allowed


def test_keys_added_to_an_ungoverned_object_on_update_are_stripped():
    old = make_obj("Secret", labels={"app": "x"})
    result, mutation, after, before = update(
        old, lambda o: o["metadata"]["labels"].__setitem__(f"{P}/managed", "true"), user="alice"
    )
    assert result["metadata"]["labels"] == {"app": "x"}
    assert mutation.warnings
    assert after.allowed and not before.allowed


def test_update_of_other_fields_is_allowed_and_changes_nothing():
    old, _ = stamped(make_obj("Secret"))
    _, mutation, after, _ = update(old, lambda o: o["metadata"]["labels"].__setitem__("app", "x"))
    assert mutation.patch == ()
    assert after.allowed


@pytest.mark.parametrize(
    ("user", "groups"),
    [
        ("system:serviceaccount:kaptain-warden:kaptain-warden-sweeper", ()),
        ("admin", ("system:masters",)),
    ],
)
def test_privileged_identities_are_exempt(user, groups):
    old, _ = stamped(make_obj("Secret"))
    result, mutation, after, _ = update(
        old, lambda o: o["metadata"]["labels"].pop(f"{P}/owner"), user=user, groups=groups
    )
    assert mutation.patch == ()
    assert f"{P}/owner" not in result["metadata"]["labels"]
    assert after.allowed


def test_delete_is_always_allowed():
    old, _ = stamped(make_obj("Secret"))
    assert validate(None, operation="DELETE", old=old).allowed


def test_native_ttl_is_mirrored_even_without_metadata():
    obj = make_obj("Job", spec={})
    del obj["metadata"]
    result, _ = stamped(obj)
    assert result["spec"]["ttlSecondsAfterFinished"] == 3600
    assert result["metadata"]["labels"][f"{P}/rule"] == "build-jobs"


def test_backfilled_at_is_written_only_by_the_sweeper():
    forged = make_obj("Secret", annotations={f"{P}/backfilled-at": "2026-01-01T00:00:00Z"})
    result, mutation = mutated(forged)
    assert f"{P}/backfilled-at" not in result["metadata"]["annotations"]
    assert any(f"annotation {P}/backfilled-at" in w for w in mutation.warnings)
    backfilled, _ = stamped(make_obj("Secret"))
    backfilled["metadata"]["annotations"][f"{P}/backfilled-at"] = "2026-05-01T12:00:00Z"
    kept, _, after, _ = update(backfilled, own_manifest)
    assert kept["metadata"]["annotations"][f"{P}/backfilled-at"] == "2026-05-01T12:00:00Z"
    assert after.allowed


SWEEPER = "system:serviceaccount:kaptain-warden:kaptain-warden-sweeper"


def test_warned_at_is_written_only_by_the_sweeper():
    # Forged on a new object (it would silence the warning): dropped, and the person is told.
    forged = make_obj("Secret", annotations={f"{P}/warned-at": "2099-01-01T00:00:00Z"})
    result, mutation = mutated(forged)
    assert f"{P}/warned-at" not in result["metadata"]["annotations"]
    assert any(f"annotation {P}/warned-at" in w for w in mutation.warnings)
    assert not validate(forged).allowed
    # The sweeper's merge patch is left alone and admitted.
    old, _ = stamped(make_obj("Secret"))

    def warn(obj):
        obj["metadata"]["annotations"][f"{P}/warned-at"] = "2026-05-01T12:00:00Z"

    written, mutation, after, _ = update(old, warn, user=SWEEPER)
    assert mutation.patch == () and after.allowed
    assert written["metadata"]["annotations"][f"{P}/warned-at"] == "2026-05-01T12:00:00Z"
    # A person can neither add it nor strip it: it is carried over.
    _, _, _, added = update(old, warn)
    assert not added.allowed
    kept, _, after, _ = update(written, own_manifest)
    assert kept["metadata"]["annotations"][f"{P}/warned-at"] == "2026-05-01T12:00:00Z"
    assert after.allowed


def test_a_create_whose_ttl_ends_within_the_warning_window_is_admitted_with_a_warning():
    # Default windows (a quarter of the TTL) never contain the creation; warnBefore: 2h does.
    text = resources.files("kaptain_warden.policies").joinpath("default-policy.yaml").read_text()
    document = yaml.safe_load(text)
    document["rules"][0]["warnBefore"] = "2h"
    policy = load_policy_text(yaml.safe_dump(document))

    def verdict_on(ttl):
        obj = make_obj("Secret", annotations={f"{P}/ttl": ttl})
        mutation = plan_mutation(policy=policy, request=request(obj), now=NOW)
        result = jsonpatch.apply_patch(obj, list(mutation.patch))
        return check_admission(policy=policy, request=request(result), now=NOW)

    short = verdict_on("1h")
    assert short.allowed
    assert [w for w in short.warnings if w.startswith("kaptain-warden deletes this Secret at ")]
    assert "2026-05-01T13:00:00Z" in short.warnings[-1]
    assert verdict_on("1d").warnings == ()
    assert validate(stamped(make_obj("Secret", annotations={f"{P}/ttl": "10m"}))[0]).warnings == ()


def test_a_person_making_a_child_of_their_own_object_keeps_their_user_keys():
    job = make_obj("Job", spec={}, annotations={f"{P}/ttl-after-finished": "2h"})
    result, _ = mutated(job, inherited_owner=NOTEBOOK)
    assert result["metadata"]["annotations"][f"{P}/ttl-after-finished"] == "2h"
    result, _ = mutated(job, user=KNATIVE, inherited_owner=NOTEBOOK)
    assert result["metadata"]["annotations"][f"{P}/ttl-after-finished"] == "1h"


def test_a_status_update_never_touches_spec():
    old, _ = stamped(make_obj("Job", spec={}))
    new = copy.deepcopy(old)
    new["spec"] = {}
    own_manifest(new)
    mutation = plan_mutation(
        policy=POLICY,
        request=request(new, operation="UPDATE", old=old, sub_resource="status"),
        now=NOW,
    )
    assert mutation.patch
    assert all(op["path"].startswith("/metadata/") for op in mutation.patch)


def test_a_dry_run_update_gets_the_same_answer():
    """KServe reconciles with Update(desired, DryRunAll): it must see what a real update does."""
    old, _ = stamped(make_obj("Secret"))
    new = copy.deepcopy(old)
    own_manifest(new)
    new["metadata"]["annotations"][f"{P}/ttl"] = "3d"
    real = request(new, operation="UPDATE", old=old)
    dry = AdmissionRequest(**{**real.__dict__, "dry_run": True})
    assert plan_mutation(policy=POLICY, request=real, now=NOW) == plan_mutation(
        policy=POLICY, request=dry, now=NOW
    )
    assert plan_mutation(policy=POLICY, request=dry, now=NOW).patch
