"""Tier 3: a Secret that any workload kind still references is kept, whatever its replicas:
the holders the sweeper used to miss (a Katib trial template, a ReplicationController scaled to
0, an InferenceService component, a PersistentVolume of another scope)."""

from __future__ import annotations

import uuid

import pytest

from kaptain_warden.kube.client import request_json
from sweeper_kit import HOUR, body, create, exists, now, policy_for_tests, sweeper

pytestmark = pytest.mark.e2e

POLICY = policy_for_tests()
CONTAINER = {"name": "c", "image": "registry.example/train:1"}


def uses(secret: str) -> dict:
    """A pod spec that reads `secret` from the environment."""
    env = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}]
    return {"restartPolicy": "Never", "containers": [{**CONTAINER, "env": env}]}


@pytest.fixture
def volume(kube_admin, namespace):
    name = f"pv-{uuid.uuid4().hex[:8]}"
    request_json(
        kube_admin,
        "POST",
        "/api/v1/persistentvolumes",
        body={
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "csi": {
                    "driver": "csi.example.com",
                    "volumeHandle": name,
                    "nodePublishSecretRef": {"name": "used-by-pv", "namespace": namespace},
                },
            },
        },
    )
    yield name
    request_json(kube_admin, "DELETE", f"/api/v1/persistentvolumes/{name}")


def test_every_holder_kind_keeps_its_secret(kube_admin, namespace, volume):
    t = now()
    names = [
        "used-by-rc-at-zero",
        "used-by-trial-template",
        "used-by-tfjob-trial-template",
        "used-by-isvc",
        "used-by-pv",
        "used-by-nobody",
    ]
    secrets = {
        n: create(kube_admin, namespace, body("v1", "Secret", n, expires=t - HOUR)) for n in names
    }
    ns = f"/api/v1/namespaces/{namespace}"
    request_json(
        kube_admin,
        "POST",
        f"{ns}/replicationcontrollers",
        body={
            "metadata": {"name": "scaled-down"},
            "spec": {
                "replicas": 0,
                "selector": {"app": "x"},
                "template": {
                    "metadata": {"labels": {"app": "x"}},
                    "spec": {**uses("used-by-rc-at-zero"), "restartPolicy": "Always"},
                },
            },
        },
    )
    experiments = f"/apis/kubeflow.org/v1beta1/namespaces/{namespace}/experiments"
    for name, trial_spec in (
        (
            "tune-job",
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {"template": {"spec": uses("used-by-trial-template")}},
            },
        ),
        (
            "tune-tfjob",
            {
                "apiVersion": "kubeflow.org/v1",
                "kind": "TFJob",
                "spec": {
                    "tfReplicaSpecs": {
                        "Worker": {"template": {"spec": uses("used-by-tfjob-trial-template")}}
                    }
                },
            },
        ),
    ):
        request_json(
            kube_admin,
            "POST",
            experiments,
            body={
                "apiVersion": "kubeflow.org/v1beta1",
                "kind": "Experiment",
                "metadata": {"name": name},
                "spec": {"maxTrialCount": 3, "trialTemplate": {"trialSpec": trial_spec}},
            },
        )
    isvc_env = [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "used-by-isvc", "key": "k"}}}]
    request_json(
        kube_admin,
        "POST",
        f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices",
        body={
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "mnist"},
            "spec": {"predictor": {"sklearn": {"storageUri": "s3://m/x", "env": isvc_env}}},
        },
    )

    report = sweeper(kube_admin, POLICY, namespace).run_once(now=t)

    reasons = {e.name: e.reason for e in report.entries if e.kind == "Secret"}
    assert reasons["used-by-rc-at-zero"].startswith("kept: in use by ReplicationController/")
    assert reasons["used-by-trial-template"].startswith("kept: in use by Experiment/tune-job")
    assert reasons["used-by-tfjob-trial-template"].startswith(
        "kept: in use by Experiment/tune-tfjob"
    )
    assert reasons["used-by-isvc"].startswith("kept: in use by InferenceService/mnist")
    assert reasons["used-by-pv"].startswith(f"kept: in use by PersistentVolume/{volume}")
    for name, secret in secrets.items():
        assert (exists(kube_admin, namespace, secret) is None) == (name == "used-by-nobody")
