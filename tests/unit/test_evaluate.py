"""Which rule governs an object: matching on kind, namespace, labels, names, type and creator."""

from dataclasses import replace

import pytest

from kaptain_warden.policies.evaluate import (
    Subject,
    find_rule,
    governs_kind,
    needs_namespace_labels,
)
from kaptain_warden.policies.loader import load_policy, parse_policy

NOTEBOOK = "system:serviceaccount:team-a:default-editor"
POLICY = load_policy()


def subject(api_version="v1", kind="Secret", namespace="team-a", username=NOTEBOOK, obj=None, **kw):
    obj = (
        obj
        if obj is not None
        else {"metadata": {"name": "creds"}, "type": "kubernetes.io/dockerconfigjson"}
    )
    return Subject(
        api_version=api_version, kind=kind, namespace=namespace, obj=obj, username=username, **kw
    )


def rule_id(s):
    rule = find_rule(POLICY, s)
    return rule.id if rule else None


@pytest.mark.parametrize(
    ("api_version", "kind", "expected"),
    [
        ("v1", "Secret", "credentials-secrets"),
        ("batch/v1", "Job", "build-jobs"),
        ("kubeflow.org/v1", "TFJob", "training-jobs"),
        ("kubeflow.org/v1", "PyTorchJob", "training-jobs"),
        ("kubeflow.org/v1beta1", "Experiment", "katib-experiments"),
        ("serving.kubeflow.org/v1beta1", "InferenceService", "inference-services"),
        ("serving.kserve.io/v1beta1", "InferenceService", "inference-services"),
        ("serving.knative.dev/v1", "Service", "knative-serving"),
        ("serving.knative.dev/v1", "Revision", "knative-revisions"),
        ("v1", "ConfigMap", None),
        ("batch/v1beta1", "Job", None),
    ],
)
def test_default_policy_governs_each_sdk_kind_created_from_a_notebook(api_version, kind, expected):
    assert rule_id(subject(api_version, kind)) == expected


@pytest.mark.parametrize(
    "secret_type",
    ["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg", "Opaque", None],
)
def test_credentials_secret_types_are_governed(secret_type):
    obj = {"metadata": {"name": "s3"}}
    if secret_type:
        obj["type"] = secret_type
    assert rule_id(subject(obj=obj)) == "credentials-secrets"


@pytest.mark.parametrize(
    "secret_type", ["kubernetes.io/service-account-token", "kubernetes.io/tls"]
)
def test_other_secret_types_are_not_governed(secret_type):
    assert rule_id(subject(obj={"metadata": {"name": "x"}, "type": secret_type})) is None


@pytest.mark.parametrize(
    "username",
    [
        "alice@example.com",
        "system:serviceaccount:team-a:default-viewer",
        "system:serviceaccount:team-a:default-editor-x",
    ],
)
def test_other_creators_are_not_governed(username):
    assert rule_id(subject(username=username)) is None


@pytest.mark.parametrize("namespace", ["kube-system", "kaptain-warden", "kube-public", ""])
def test_excluded_namespaces_are_never_governed(namespace):
    assert rule_id(subject(namespace=namespace)) is None


def test_controller_created_objects_match_through_an_inherited_owner():
    knative = "system:serviceaccount:knative-serving:controller"
    revision = subject("serving.knative.dev/v1", "Revision", username=knative)
    assert rule_id(revision) is None
    inherited = subject(
        "serving.knative.dev/v1", "Revision", username=knative, inherited_owner=NOTEBOOK
    )
    assert rule_id(inherited) == "knative-revisions"


def test_inherit_false_rules_ignore_parents():
    secret = subject(username="system:serviceaccount:kserve:controller", inherited_owner=NOTEBOOK)
    assert rule_id(secret) is None


def custom(match, **rule):
    return parse_policy(
        {
            "apiVersion": "warden.kaptain.io/v1alpha1",
            "kind": "WardenPolicy",
            "rules": [
                {
                    "id": "r",
                    "match": {"kinds": [{"apiVersion": "v1", "kind": "Secret"}], **match},
                    **rule,
                }
            ],
        }
    )


@pytest.mark.parametrize(
    ("match", "obj_meta", "namespace", "groups", "ns_labels", "matches"),
    [
        ({"names": ["build-*"]}, {"name": "build-7"}, "a", (), None, True),
        ({"names": ["build-*"]}, {"name": "other"}, "a", (), None, False),
        ({"names": ["build-*"]}, {"generateName": "build-"}, "a", (), None, True),
        ({"nameRegex": "s3-[0-9]+"}, {"name": "s3-12"}, "a", (), None, True),
        ({"nameRegex": "s3-[0-9]+"}, {"name": "s3-12x"}, "a", (), None, False),
        ({"namespaces": ["team-*"]}, {"name": "x"}, "team-b", (), None, True),
        ({"namespaces": ["team-*"]}, {"name": "x"}, "other", (), None, False),
        (
            {"selector": {"matchLabels": {"app": "sdk"}}},
            {"name": "x", "labels": {"app": "sdk"}},
            "a",
            (),
            None,
            True,
        ),
        ({"selector": {"matchLabels": {"app": "sdk"}}}, {"name": "x"}, "a", (), None, False),
        (
            {
                "selector": {
                    "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["prod"]}]
                }
            },
            {"name": "x"},
            "a",
            (),
            None,
            True,
        ),
        (
            {"selector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}},
            {"name": "x"},
            "a",
            (),
            None,
            False,
        ),
        (
            {"groups": ["data-*"]},
            {"name": "x"},
            "a",
            ("system:authenticated", "data-sci"),
            None,
            True,
        ),
        ({"groups": ["data-*"]}, {"name": "x"}, "a", ("system:authenticated",), None, False),
        (
            {"namespaceSelector": {"matchLabels": {"kf": "profile"}}},
            {"name": "x"},
            "a",
            (),
            {"kf": "profile"},
            True,
        ),
        (
            {"namespaceSelector": {"matchLabels": {"kf": "profile"}}},
            {"name": "x"},
            "a",
            (),
            {},
            False,
        ),
        # Unknown namespace labels never match a namespace selector: no guessing.
        (
            {"namespaceSelector": {"matchLabels": {"kf": "profile"}}},
            {"name": "x"},
            "a",
            (),
            None,
            False,
        ),
    ],
)
def test_match_fields(match, obj_meta, namespace, groups, ns_labels, matches):
    policy = custom(match)
    s = Subject(
        api_version="v1",
        kind="Secret",
        namespace=namespace,
        obj={"metadata": obj_meta},
        username="u",
        groups=groups,
        namespace_labels=ns_labels,
    )
    assert (find_rule(policy, s) is not None) is matches


def test_first_matching_rule_wins():
    policy = parse_policy(
        {
            "apiVersion": "warden.kaptain.io/v1alpha1",
            "kind": "WardenPolicy",
            "rules": [
                {
                    "id": "special",
                    "match": {
                        "kinds": [{"apiVersion": "v1", "kind": "Secret"}],
                        "names": ["special-*"],
                    },
                    "ttl": "1h",
                },
                {
                    "id": "general",
                    "match": {"kinds": [{"apiVersion": "v1", "kind": "Secret"}]},
                    "ttl": "1d",
                },
            ],
        }
    )
    s1 = Subject(
        api_version="v1", kind="Secret", namespace="a", obj={"metadata": {"name": "special-1"}}
    )
    s2 = Subject(
        api_version="v1", kind="Secret", namespace="a", obj={"metadata": {"name": "plain"}}
    )
    assert find_rule(policy, s1).id == "special"
    assert find_rule(policy, s2).id == "general"


def test_malformed_objects_do_not_raise():
    for obj in ({}, {"metadata": None}, {"metadata": {"labels": "x"}}, {"metadata": {"name": 5}}):
        find_rule(POLICY, subject(obj=obj))


def test_kind_and_namespace_label_helpers():
    assert governs_kind(POLICY, "batch/v1", "Job")
    assert not governs_kind(POLICY, "v1", "Pod")
    assert not needs_namespace_labels(POLICY)
    assert needs_namespace_labels(custom({"namespaceSelector": {"matchLabels": {"a": "b"}}}))


def test_excluded_namespaces_are_made_once_per_policy():
    """Every review asks which namespaces are excluded; the set is made once per settings."""
    settings = replace(
        load_policy().settings, excluded_namespaces=frozenset({"ops"}), warden_namespace="warden"
    )
    assert settings.all_excluded_namespaces == {"ops", "kube-system", "warden"}
    assert settings.all_excluded_namespaces is settings.all_excluded_namespaces
