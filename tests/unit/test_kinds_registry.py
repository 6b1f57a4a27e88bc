"""Tier 1: the kind registry: paths into objects, the families, the native-TTL shapes."""

from __future__ import annotations

from typing import Any

import pytest

from kaptain_warden.policies.kinds import (
    ALL_KINDS,
    FAMILIES,
    HOLDER_KINDS,
    KNOWN_KINDS,
    PARENT_LABELS,
    PARENT_ONLY_KINDS,
    Family,
    KnownKind,
    NativeTtl,
    family_of,
    known_kind,
    registered_kind,
    registered_kind_of,
)
from kaptain_warden.policies.kinds.paths import parse_path, value_at, values, walk
from kaptain_warden.policies.kinds.registry import _checked
from kaptain_warden.policies.native_ttl import native_location, native_ttl


@pytest.mark.parametrize("path", ["spec..x", "spec.[*]", "spec.a b", "spec.x[0]", "", "spec.*x"])
def test_a_malformed_path_is_refused_with_the_segment(path):
    with pytest.raises(ValueError, match="is not a key"):
        parse_path(path)


def test_walk_goes_through_map_values_and_list_items_and_skips_the_wrong_types():
    obj = {
        "spec": {
            "replicas": {"a": {"t": {"n": 1}}, "b": {"t": {"n": 2}}, "c": "junk", "d": {"t": []}},
            "groups": [{"t": {"n": 3}}, 7, None, {"t": {"n": 4}}],
        }
    }
    assert [m["n"] for m in walk(obj, "spec.replicas.*.t")] == [1, 2]
    assert [m["n"] for m in walk(obj, "spec.groups[*].t")] == [3, 4]
    assert list(walk(obj, "spec.groups.*.t")) == []  # `*` is for maps
    assert list(walk(obj, "spec.replicas[*].t")) == []  # `[*]` is for lists
    assert list(walk("not an object", "spec")) == []
    assert value_at(obj, "spec.replicas.a.t.n") == 1
    assert value_at(obj, "spec.replicas.c.t") is None
    with pytest.raises(ValueError, match="more than one"):
        value_at(obj, "spec.replicas.*.t")


def test_values_reach_leaves_of_any_type_and_walk_keeps_the_maps():
    obj = {"spec": {"pull": ["a", {"name": "b"}, 7], "one": "s"}}
    assert list(values(obj, "spec.pull[*]")) == ["a", {"name": "b"}, 7]
    assert list(walk(obj, "spec.pull[*]")) == [{"name": "b"}]
    assert list(values(obj, "spec.one")) == ["s"]
    assert list(values(obj, "spec.one[*]")) == []


def test_every_kind_is_declared_once_and_the_tables_are_read_from_the_families():
    keys = [(k.api_version, k.kind) for k in ALL_KINDS]
    assert len(keys) == len(set(keys))
    assert {k.kind for k in KNOWN_KINDS} >= {
        "Secret", "Job", "TFJob", "PyTorchJob", "MPIJob", "XGBoostJob", "PaddleJob", "JAXJob",
        "Experiment", "InferenceService", "Service", "Configuration", "Route", "Revision",
    }  # fmt: skip
    assert [k.kind for k in PARENT_ONLY_KINDS] == ["Trial"]
    assert all(k.holds_secrets for k in HOLDER_KINDS)
    assert {label for label, _ in PARENT_LABELS} == {
        "serving.kserve.io/inferenceservice",
        "serving.kubeflow.org/inferenceservice",
        "serving.knative.dev/service",
        "serving.knative.dev/configuration",
    }
    for kind in ALL_KINDS:
        family = family_of(kind)
        assert family is not None and kind in family.kinds


def test_known_kind_is_only_what_a_policy_may_name():
    assert known_kind("v1", "Secret") is not None
    assert known_kind("v1", "Pod") is None  # a Secret holder, not governable
    assert registered_kind("v1", "Pod") is not None
    assert known_kind("kubeflow.org/v1beta1", "Trial") is None
    # Any served version of a group reads the same status.
    assert registered_kind_of({"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob"}) is not None
    assert registered_kind_of({"apiVersion": 3, "kind": "MPIJob"}) is None


def test_a_kind_declared_by_two_families_is_refused():
    one = Family("one", "x", (KnownKind("a.io/v1", "Thing", "things"),))
    two = Family("two", "y", (KnownKind("a.io/v1", "Thing", "things"),))
    with pytest.raises(ValueError, match="declared by both 'one' and 'two'"):
        _checked((one, two))
    labelled = Family(
        "three",
        "z",
        (KnownKind("b.io/v1", "Other", "others", parent_labels=("serving.knative.dev/service",)),),
    )
    with pytest.raises(ValueError, match="names two kinds"):
        _checked((*FAMILIES, labelled))


def test_a_native_ttl_path_names_one_field():
    with pytest.raises(ValueError):
        NativeTtl("spec.replicas.*.ttl")
    with pytest.raises(ValueError):
        NativeTtl("spec.ttl", legacy_path="spec.old")  # legacy without its markers


def _obj(api_version: str, kind: str, spec: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, "spec": spec}


@pytest.mark.parametrize(
    ("obj", "fill", "location"),
    [
        (
            _obj("batch/v1", "Job", {"template": {}}),
            (("/spec/ttlSecondsAfterFinished", 60),),
            ("/spec/ttlSecondsAfterFinished", None),
        ),
        (
            _obj("batch/v1", "Job", {"ttlSecondsAfterFinished": 5}),
            (),
            ("/spec/ttlSecondsAfterFinished", 5),
        ),
        (
            _obj("kubeflow.org/v1", "TFJob", {"tfReplicaSpecs": {}}),
            (("/spec/runPolicy", {"ttlSecondsAfterFinished": 60}),),
            ("/spec/runPolicy/ttlSecondsAfterFinished", None),
        ),
        (
            _obj("kubeflow.org/v1", "MPIJob", {"runPolicy": {"cleanPodPolicy": "None"}}),
            (("/spec/runPolicy/ttlSecondsAfterFinished", 60),),
            ("/spec/runPolicy/ttlSecondsAfterFinished", None),
        ),
        (
            _obj("kubeflow.org/v1", "JAXJob", {"runPolicy": {"ttlSecondsAfterFinished": 0}}),
            (),
            ("/spec/runPolicy/ttlSecondsAfterFinished", 0),
        ),
        # tf-operator v1: the run policy's fields directly under spec.
        (
            _obj("kubeflow.org/v1", "TFJob", {"cleanPodPolicy": "None"}),
            (("/spec/ttlSecondsAfterFinished", 60),),
            ("/spec/ttlSecondsAfterFinished", None),
        ),
        # MPIJob v1's own (deprecated) spec.cleanPodPolicy is no legacy shape: it has no
        # spec.ttlSecondsAfterFinished to fill.
        (
            _obj("kubeflow.org/v1", "MPIJob", {"cleanPodPolicy": "None"}),
            (("/spec/runPolicy", {"ttlSecondsAfterFinished": 60}),),
            ("/spec/runPolicy/ttlSecondsAfterFinished", None),
        ),
        (
            _obj("kubeflow.org/v1", "PyTorchJob", {"runPolicy": "junk"}),
            (("/spec/runPolicy", {"ttlSecondsAfterFinished": 60}),),
            ("/spec/runPolicy/ttlSecondsAfterFinished", None),
        ),
        (_obj("kubeflow.org/v1", "TFJob", "junk"), (), None),
        (_obj("kubeflow.org/v1beta1", "Experiment", {}), (), None),
        (_obj("kubeflow.org/v2", "TFJob", {}), (), None),  # another version: not ours to fill
    ],
)
def test_the_native_ttl_is_filled_where_the_kind_keeps_it(obj, fill, location):
    assert native_ttl(obj, 60) == fill
    assert native_location(obj) == location


def test_a_holder_list_keeps_the_fields_its_references_and_finish_are_read_from():
    fields = {k.kind: k.read_fields for k in HOLDER_KINDS}
    assert fields["ServiceAccount"] == ("imagePullSecrets", "secrets")
    assert fields["Pod"] == ("spec", "status")
    assert fields["MPIJob"] == ("spec", "status")
    assert fields["Deployment"] == ("spec",)
    assert fields["PersistentVolume"] == ()  # volumes are read whole, cluster-wide
