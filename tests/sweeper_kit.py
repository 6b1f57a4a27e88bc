"""Helpers for the sweeper's tier-3 tests: stamped objects of every governed kind, made as admin."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import request_json, resource_path
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.loader import DEFAULT_POLICY_NAME, load_policy_text
from kaptain_warden.policies.model import Policy
from kaptain_warden.policies.timestamps import format_time
from kaptain_warden.sweeper.loop import Sweeper
from kaptain_warden.sweeper.metrics import SweeperMetrics
from kaptain_warden.sweeper.settings import SweeperSettings
from kube_versions import job_finished_conditions, server_version

P = "warden.kaptain.io"
HOUR = timedelta(hours=1)

#: (apiVersion, kind) -> (resource, rule id in the default policy)
KINDS: dict[tuple[str, str], tuple[str, str]] = {
    ("v1", "Secret"): ("secrets", "credentials-secrets"),
    ("batch/v1", "Job"): ("jobs", "build-jobs"),
    ("kubeflow.org/v1", "TFJob"): ("tfjobs", "training-jobs"),
    ("kubeflow.org/v1", "PyTorchJob"): ("pytorchjobs", "training-jobs"),
    ("kubeflow.org/v1beta1", "Experiment"): ("experiments", "katib-experiments"),
    ("serving.kserve.io/v1beta1", "InferenceService"): ("inferenceservices", "inference-services"),
    ("serving.kubeflow.org/v1beta1", "InferenceService"): (
        "inferenceservices",
        "inference-services",
    ),
    ("serving.knative.dev/v1", "Service"): ("services", "knative-serving"),
    ("serving.knative.dev/v1", "Configuration"): ("configurations", "knative-serving"),
    ("serving.knative.dev/v1", "Route"): ("routes", "knative-serving"),
    ("serving.knative.dev/v1", "Revision"): ("revisions", "knative-revisions"),
}
_OTHER_RESOURCES = {"Pod": "pods", "ServiceAccount": "serviceaccounts"}


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


DEFAULT_RETENTION = {
    "minNonActive": 1,
    "maxNonActive": 3,
    "retainSinceCreate": "disabled",
    "retainSinceLastActive": "1h",
}


def policy_document(
    *, retention: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The built-in policy with revision retention the tests can reach without waiting 48h."""
    text = resources.files("kaptain_warden.policies").joinpath(DEFAULT_POLICY_NAME).read_text()
    document: dict[str, Any] = yaml.safe_load(text)
    for rule in document["rules"]:
        if rule["id"] == "knative-revisions":
            rule["retention"] = retention or DEFAULT_RETENTION
    document["settings"].update(settings or {})
    return document


def policy_for_tests(**kw: Any) -> Policy:
    """`policy_document(**kw)`, loaded."""
    return load_policy_text(yaml.safe_dump(policy_document(**kw)), source="<test policy>")


def write_policy(path: Path, **kw: Any) -> Path:
    """`policy_document(**kw)` written to `path`, for the command line."""
    path.write_text(yaml.safe_dump(policy_document(**kw)))
    return path


def run_cli(
    *args: str, kubeconfig: Path, expect: int | None = 0, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`kaptain-warden <args> --kubeconfig <kubeconfig> --log-format json`, output captured."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaptain_warden.cli",
            *args,
            "--kubeconfig",
            str(kubeconfig),
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if expect is not None:
        assert result.returncode == expect, result.stderr
    return result


def log_lines(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines of a run."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def meta(
    name: str,
    *,
    api_version: str,
    kind: str,
    expires: datetime | None = None,
    after: str | None = None,
    keep: str | None = None,
    managed: str | None = "true",
    owner: str = "alice",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """metadata stamped as the mutating webhook would (or a look-alike with managed=None)."""
    rule = KINDS[(api_version, kind)][1]
    label_map = {f"{P}/owner": owner, f"{P}/rule": rule}
    if managed is not None:
        label_map[f"{P}/managed"] = managed
    label_map.update(labels or {})
    created = now()
    annotation_map = {f"{P}/owner": owner, f"{P}/created-at": format_time(created - 3 * HOUR)}
    if expires is not None:
        annotation_map[f"{P}/expires-at"] = format_time(expires)
        annotation_map[f"{P}/ttl"] = "1h"
    if after is not None:
        annotation_map[f"{P}/ttl-after-finished"] = after
    if keep is not None:
        annotation_map[f"{P}/keep"] = keep
    annotation_map.update(annotations or {})
    return {"name": name, "labels": label_map, "annotations": annotation_map}


def body(api_version: str, kind: str, name: str, **kw: Any) -> dict[str, Any]:
    """An object of a governed kind with a minimal valid spec and warden metadata."""
    spec: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    container = {"name": "c", "image": "registry.example/train:1"}
    if kind == "Secret":
        extra = {"type": "Opaque", "stringData": {"password": "hunter2"}}
    elif kind == "Job":
        spec = {
            # Nobody runs these Jobs: the job controller leaves them to "us" (KEP-4368); before
            # 1.32 there is no Job controller to keep away (see tests/kube_versions.py).
            "managedBy": "warden.kaptain.io/tests",
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        }
    elif kind in ("TFJob", "PyTorchJob"):
        replicas = "tfReplicaSpecs" if kind == "TFJob" else "pytorchReplicaSpecs"
        spec = {
            replicas: {"Worker": {"replicas": 1, "template": {"spec": {"containers": [container]}}}}
        }
    elif kind == "Revision":
        spec = {"containers": [container]}
    elif kind in ("Service", "Configuration"):
        spec = {"template": {"spec": {"containers": [container]}}}
    elif kind == "InferenceService":  # the upstream CRDs require a predictor
        spec = {"predictor": {"sklearn": {"storageUri": "s3://models/iris"}}}
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": meta(name, api_version=api_version, kind=kind, **kw),
        "spec": spec,
        **extra,
    }


def path_of(obj: dict[str, Any], namespace: str, name: str | None = None) -> str:
    api_version, kind = obj["apiVersion"], obj["kind"]
    resource = _OTHER_RESOURCES.get(kind) or KINDS[(api_version, kind)][0]
    group, _, version = api_version.rpartition("/")
    return resource_path(
        group=group, version=version, resource=resource, namespace=namespace, name=name
    )


def create(api: k8s.ApiClient, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    """POST `obj` into `namespace`; returns the created object."""
    created: dict[str, Any] = request_json(api, "POST", path_of(obj, namespace), body=obj)
    return created


def set_status(
    api: k8s.ApiClient, namespace: str, obj: dict[str, Any], status: dict[str, Any]
) -> None:
    """Merge `status` through the status subresource (where the controllers write it)."""
    request_json(
        api,
        "PATCH",
        path_of(obj, namespace, obj["metadata"]["name"]) + "/status",
        body={"status": status},
        content_type="application/merge-patch+json",
    )


def exists(api: k8s.ApiClient, namespace: str, obj: dict[str, Any]) -> dict[str, Any] | None:
    """The object as it is now, or None when it is gone."""
    try:
        found: dict[str, Any] = request_json(
            api, "GET", path_of(obj, namespace, obj["metadata"]["name"])
        )
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return found


def finished(
    condition: str, at: datetime, *, kind: str, version: tuple[int, int]
) -> dict[str, Any]:
    """A status saying the object finished at `at`, as its controller on the server `version`
    would write it."""
    stamp = format_time(at)
    if kind == "Job":
        status: dict[str, Any] = {
            "startTime": format_time(at - HOUR),
            "conditions": job_finished_conditions(condition, stamp, version),
        }
        if condition == "Complete":
            status |= {"completionTime": stamp, "succeeded": 1}
        else:
            status |= {"failed": 1}
        return status
    return {
        "conditions": [
            {"type": "Created", "status": "True", "lastTransitionTime": format_time(at - HOUR)},
            {"type": condition, "status": "True", "lastTransitionTime": stamp},
        ],
        "completionTime": stamp,
    }


def running(kind: str) -> dict[str, Any]:
    if kind == "Job":
        return {"startTime": format_time(now() - HOUR), "active": 1}
    return {"conditions": [{"type": "Running", "status": "True"}]}


def sweeper(
    api_client: k8s.ApiClient,
    policy: Policy,
    namespace: str,
    metrics: SweeperMetrics | None = None,
    **settings: Any,
) -> Sweeper:
    """An in-process Sweeper confined to `namespace` (other tests' objects are not ours)."""
    return Sweeper(
        KubeApi(api_client, timeout=settings.pop("timeout", 10.0)),
        policy=policy,
        settings=SweeperSettings(namespaces=(namespace,), **settings),
        metrics=metrics,
    )


MINUTE = timedelta(minutes=1)


def build_world(api: k8s.ApiClient, namespace: str) -> dict[str, Any]:
    """Objects of every governed kind: due, not due, protected, look-alikes.

    Returns {"due": {(kind, name)}, "kept": {(kind, name)}, "objects": {name: body}}.
    """
    t = now()
    version = server_version(api)
    due: set[tuple[str, str]] = set()
    kept: set[tuple[str, str]] = set()
    objects: dict[str, dict[str, Any]] = {}

    def make(api_version: str, kind: str, name: str, *, goes: bool, status=None, **kw):
        obj = body(api_version, kind, name, **kw)
        objects[name] = create(api, namespace, obj)
        if status is not None:
            set_status(api, namespace, obj, status)
        (due if goes else kept).add((kind, name))
        return obj

    # Expired by expires-at, one of every kind, and a fresh twin that stays.
    for (api_version, kind), (resource, _rule) in KINDS.items():
        if kind == "Revision":
            continue  # revisions go by retention, below
        group = api_version.rpartition("/")[0]
        tag = (
            group.split(".")[1] if group.startswith("serving.") else group.split(".")[0]
        ) or "core"
        prefix = f"{resource}-{tag}"
        make(api_version, kind, f"{prefix}-expired", goes=True, expires=t - HOUR)
        make(api_version, kind, f"{prefix}-fresh", goes=False, expires=t + HOUR)
        # Unmanaged look-alikes: every annotation, but no managed=true label.
        make(api_version, kind, f"{prefix}-lookalike", goes=False, expires=t - HOUR, managed=None)
        make(api_version, kind, f"{prefix}-false", goes=False, expires=t - HOUR, managed="false")

    # Completion: each job-like kind read from its own status.
    for api_version, kind, done in (
        ("batch/v1", "Job", "Complete"),
        ("batch/v1", "Job", "Failed"),
        ("kubeflow.org/v1", "TFJob", "Succeeded"),
        ("kubeflow.org/v1", "PyTorchJob", "Failed"),
        ("kubeflow.org/v1beta1", "Experiment", "Succeeded"),
    ):
        stem = f"{kind.lower()}-{done.lower()}"
        make(
            api_version,
            kind,
            f"{stem}-long-ago",
            goes=True,
            after="1h",
            status=finished(done, t - 2 * HOUR, kind=kind, version=version),
        )
        make(
            api_version,
            kind,
            f"{stem}-just-now",
            goes=False,
            after="1h",
            status=finished(done, t - 10 * MINUTE, kind=kind, version=version),
        )
        make(api_version, kind, f"{stem}-running", goes=False, after="1h", status=running(kind))

    # keep: honoured for Secrets (the rule allows it), ignored for Jobs (it does not).
    make("v1", "Secret", "kept-on-purpose", goes=False, expires=t - HOUR, keep="true")
    make("batch/v1", "Job", "keep-not-allowed", goes=True, expires=t - HOUR, keep="true")

    # Secrets in use: by a Pod that can still run, by a ServiceAccount; a finished Pod holds none.
    make("v1", "Secret", "used-by-pod", goes=False, expires=t - HOUR)
    make("v1", "Secret", "used-by-sa", goes=False, expires=t - HOUR)
    make("v1", "Secret", "used-by-finished-pod", goes=True, expires=t - HOUR)
    container = {"name": "c", "image": "registry.example/train:1"}
    create(
        api,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "trainer"},
            "spec": {
                "containers": [{**container, "envFrom": [{"secretRef": {"name": "used-by-pod"}}]}]
            },
        },
    )
    done_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "done"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    **container,
                    "env": [
                        {
                            "name": "X",
                            "valueFrom": {
                                "secretKeyRef": {"name": "used-by-finished-pod", "key": "password"}
                            },
                        }
                    ],
                }
            ],
        },
    }
    create(api, namespace, done_pod)
    set_status(api, namespace, done_pod, {"phase": "Succeeded"})
    create(
        api,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "deployer"},
            "imagePullSecrets": [{"name": "used-by-sa"}],
        },
    )

    # Knative revisions of one Configuration under retention (minNonActive 1, maxNonActive 3,
    # retainSinceLastActive 1h): r1 named by the InferenceService, r4 routed, r5 latest ready,
    # r6 no-gc; of r2 (idle 2h) and r3 (idle 10m) only the stale r2 goes.
    make("serving.knative.dev/v1", "Configuration", "cfg", goes=False, expires=t + HOUR)
    set_status(
        api,
        namespace,
        body("serving.knative.dev/v1", "Configuration", "cfg"),
        {"latestReadyRevisionName": "cfg-00005", "latestCreatedRevisionName": "cfg-00005"},
    )
    make("serving.kserve.io/v1beta1", "InferenceService", "mnist", goes=False, expires=t + HOUR)
    set_status(
        api,
        namespace,
        body("serving.kserve.io/v1beta1", "InferenceService", "mnist"),
        {
            "components": {
                "predictor": {
                    "latestReadyRevision": "cfg-00005",
                    "previousRolledoutRevision": "cfg-00001",
                }
            }
        },
    )
    for number, state, idle, extra, goes in (
        (1, "reserve", 3 * HOUR, {}, False),
        (2, "reserve", 2 * HOUR, {}, True),
        (3, "reserve", 10 * MINUTE, {}, False),
        (4, "active", 5 * HOUR, {}, False),
        (5, "reserve", 4 * HOUR, {}, False),
        (6, "reserve", 5 * HOUR, {"serving.knative.dev/no-gc": "true"}, False),
    ):
        make(
            "serving.knative.dev/v1",
            "Revision",
            f"cfg-0000{number}",
            goes=goes,
            labels={
                "serving.knative.dev/configuration": "cfg",
                "serving.knative.dev/routingState": state,
                "serving.kserve.io/inferenceservice": "mnist",
            },
            annotations={
                "serving.knative.dev/routingStateModified": format_time(t - idle),
                **extra,
            },
        )
    return {"due": due, "kept": kept, "objects": objects}


def present(api, namespace, world) -> set[tuple[str, str]]:
    return {
        (obj["kind"], name)
        for name, obj in world["objects"].items()
        if exists(api, namespace, obj) is not None
    }


@contextlib.contextmanager
def user_with_rules(
    api: k8s.ApiClient,
    prefix: str,
    rules: list[dict[str, Any]],
    *,
    service_account_namespace: str | None = None,
) -> Iterator[str]:
    """The user name to impersonate for an identity (`prefix-<random>`; a ServiceAccount of
    that name in `service_account_namespace` when given) bound to a ClusterRole of exactly
    `rules`, both deleted afterwards."""
    rbac = k8s.RbacAuthorizationV1Api(api)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    if service_account_namespace is None:
        user = name
        subject = {"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"}
    else:
        user = f"system:serviceaccount:{service_account_namespace}:{name}"
        subject = {"kind": "ServiceAccount", "name": name, "namespace": service_account_namespace}
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [subject],
        }
    )
    try:
        yield user
    finally:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)
