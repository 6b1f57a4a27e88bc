"""Tier 1: which Secrets a live workload references (pods, templates, ServiceAccounts)."""

from __future__ import annotations

from typing import Any

import pytest

from kaptain_warden.policies.kinds import HOLDER_KINDS, KnownKind, SecretRefs
from kaptain_warden.policies.secret_refs import (
    holders_reason,
    pod_spec_secret_names,
    secret_references,
)

HOLDERS = {h.kind: h for h in HOLDER_KINDS}


def test_every_reference_kubernetes_knows_is_found():
    spec = {
        "imagePullSecrets": [{"name": "registry"}],
        "initContainers": [{"envFrom": [{"secretRef": {"name": "init-env"}}]}],
        "containers": [
            {
                "env": [
                    {"name": "A", "value": "plain"},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}},
                    {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
                ],
                "envFrom": [{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "env"}}],
            }
        ],
        "ephemeralContainers": [{"envFrom": [{"secretRef": {"name": "debug"}}]}],
        "volumes": [
            {"name": "a", "secret": {"secretName": "mounted", "optional": True}},
            {"name": "b", "configMap": {"name": "cm"}},
            {
                "name": "c",
                "projected": {
                    "sources": [
                        {"secret": {"name": "projected"}},
                        {"serviceAccountToken": {"path": "t"}},
                    ]
                },
            },
            {"name": "d", "csi": {"driver": "x", "nodePublishSecretRef": {"name": "csi"}}},
            {"name": "e", "azureFile": {"secretName": "azure", "shareName": "s"}},
            {"name": "f", "cephfs": {"monitors": [], "secretRef": {"name": "ceph"}}},
        ],
    }
    assert pod_spec_secret_names(spec) == {
        "registry",
        "init-env",
        "s3",
        "env",
        "debug",
        "mounted",
        "projected",
        "csi",
        "azure",
        "ceph",
    }


@pytest.mark.parametrize(
    "spec",
    [{}, {"containers": None}, {"volumes": [None, "x", {"secret": "bad"}]}, {"env": [{}]}],
)
def test_malformed_specs_reference_nothing(spec):
    assert pod_spec_secret_names(spec) == frozenset()


def pod(phase: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"envFrom": [{"secretRef": {"name": "creds"}}]}]},
        "status": {"phase": phase},
    }


@pytest.mark.parametrize(
    ("phase", "held"),
    [
        ("Pending", True),
        ("Running", True),
        ("Unknown", True),
        ("Succeeded", False),
        ("Failed", False),
    ],
)
def test_only_pods_that_can_still_run_hold_a_secret(phase, held):
    assert (secret_references(pod(phase), HOLDERS["Pod"]) == {"creds"}) is held


def test_a_service_account_holds_its_secrets_and_pull_secrets():
    sa = {"secrets": [{"name": "token"}], "imagePullSecrets": [{"name": "registry"}]}
    assert secret_references(sa, HOLDERS["ServiceAccount"]) == {"token", "registry"}


def template(kind_path: list[str], secret: str) -> dict[str, Any]:
    node: dict[str, Any] = {"spec": {"imagePullSecrets": [{"name": secret}]}}
    for key in reversed(kind_path):
        node = {key: node}
    return node


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Deployment", ["spec", "template"]),
        ("StatefulSet", ["spec", "template"]),
        ("DaemonSet", ["spec", "template"]),
        ("ReplicaSet", ["spec", "template"]),
        ("Job", ["spec", "template"]),
        ("CronJob", ["spec", "jobTemplate", "spec", "template"]),
        ("Configuration", ["spec", "template"]),
        ("TFJob", ["spec", "tfReplicaSpecs", "Worker", "template"]),
        ("PyTorchJob", ["spec", "pytorchReplicaSpecs", "Master", "template"]),
    ],
)
def test_pod_templates_hold_their_secrets(kind, path):
    assert secret_references(template(path, "registry"), HOLDERS[kind]) == {"registry"}


def test_every_replica_type_of_a_training_job_is_read():
    tfjob = {
        "spec": {
            "tfReplicaSpecs": {
                "Chief": {"template": {"spec": {"imagePullSecrets": [{"name": "a"}]}}},
                "Worker": {"template": {"spec": {"imagePullSecrets": [{"name": "b"}]}}},
            }
        }
    }
    assert secret_references(tfjob, HOLDERS["TFJob"]) == {"a", "b"}


@pytest.mark.parametrize(
    ("kind", "condition"),
    [("Job", "Complete"), ("Job", "Failed"), ("TFJob", "Succeeded"), ("PyTorchJob", "Failed")],
)
def test_finished_jobs_hold_nothing(kind, condition):
    path = {
        "Job": ["spec", "template"],
        "TFJob": ["spec", "tfReplicaSpecs", "Worker", "template"],
        "PyTorchJob": ["spec", "pytorchReplicaSpecs", "Worker", "template"],
    }[kind]
    obj = template(path, "registry")
    assert secret_references(obj, HOLDERS[kind]) == {"registry"}
    obj["status"] = {
        "conditions": [
            {"type": condition, "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}
        ]
    }
    assert secret_references(obj, HOLDERS[kind]) == frozenset()


def test_the_reason_names_the_holders():
    assert holders_reason(["Pod/a", "ServiceAccount/default"]) == (
        "in use by Pod/a, ServiceAccount/default"
    )
    many = [f"Pod/p{i}" for i in range(7)]
    assert holders_reason(many).endswith("Pod/p4 and 2 more")


@pytest.mark.parametrize(
    ("kind", "replica_specs"),
    [
        ("TFJob", "tfReplicaSpecs"),
        ("PyTorchJob", "pytorchReplicaSpecs"),
        ("MPIJob", "mpiReplicaSpecs"),
        ("XGBoostJob", "xgbReplicaSpecs"),
        ("PaddleJob", "paddleReplicaSpecs"),
        ("JAXJob", "jaxReplicaSpecs"),
    ],
)
def test_training_operator_jobs_hold_the_secrets_of_every_replica_template(kind, replica_specs):
    def replica(secret: str) -> dict[str, Any]:
        return {"template": {"spec": {"imagePullSecrets": [{"name": secret}]}}}

    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": kind,
        "spec": {replica_specs: {"Launcher": replica("launcher"), "Worker": replica("worker")}},
    }
    assert secret_references(job, HOLDERS[kind]) == {"launcher", "worker"}
    job["status"] = {
        "conditions": [
            {"type": "Succeeded", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z"}
        ]
    }
    assert secret_references(job, HOLDERS[kind]) == frozenset()


def test_a_path_follows_every_item_of_a_list():
    holder = KnownKind(
        "ray.example/v1",
        "Cluster",
        "clusters",
        secret_refs=SecretRefs(
            pod_specs=("spec.headGroupSpec.template.spec", "spec.workerGroupSpecs[*].template.spec")
        ),
    )
    cluster = {
        "spec": {
            "headGroupSpec": {"template": {"spec": {"imagePullSecrets": [{"name": "head"}]}}},
            "workerGroupSpecs": [
                {"template": {"spec": {"volumes": [{"secret": {"secretName": "gpu"}}]}}},
                "not a group",
                {
                    "template": {
                        "spec": {"containers": [{"envFrom": [{"secretRef": {"name": "cpu"}}]}]}
                    }
                },
                {"template": None},
            ],
        }
    }
    assert secret_references(cluster, holder) == {"head", "gpu", "cpu"}
    cluster["spec"]["workerGroupSpecs"] = {
        "a": {"template": {"spec": {"imagePullSecrets": [{"name": "map"}]}}}
    }
    assert secret_references(cluster, holder) == {"head"}  # `[*]` walks a list, not a map


def test_a_secret_named_by_a_bare_string_is_held():
    holder = KnownKind(
        "example.com/v1", "App", "apps", secret_refs=SecretRefs(names=("spec.pullSecrets[*]",))
    )
    app = {"spec": {"pullSecrets": ["registry", 7, "", None, {"name": "not-a-string"}]}}
    assert secret_references(app, holder) == {"registry"}
    assert secret_references({"spec": {"pullSecrets": "registry"}}, holder) == frozenset()
