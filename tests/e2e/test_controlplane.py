"""Tier 3: the harness itself: TLS, RBAC, impersonation, CRDs, controllers, cleanup."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kaptain_warden.testing import controlplane
from kaptain_warden.testing.binaries import BinariesNotFoundError, find_binaries, kubernetes_version
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.crds import crd_documents
from kaptain_warden.testing.errors import ControlPlaneError
from kaptain_warden.testing.upstream import LOCAL_CRD_DIR, find_upstream
from kube_versions import job_finished_conditions
from polling import eventually
from webhook_kit import LoopbackWebhook

pytestmark = pytest.mark.e2e


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _process_group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _process_gone(pid: int) -> bool:
    """No such process, or only a zombie (dead; its new parent, init, may reap it late)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"


# --------------------------------------------------------------------------------------------
# The API server
# --------------------------------------------------------------------------------------------


def test_api_server_serves_tls_signed_by_our_ca(control_plane: ControlPlane) -> None:
    context = ssl.create_default_context(cadata=control_plane.ca_pem.decode())
    with urllib.request.urlopen(f"{control_plane.url}/version", context=context) as response:
        version = json.load(response)
    # The server reports the version its binary was built as (and the one asked for, if any).
    built = ".".join(map(str, kubernetes_version(control_plane.binaries.kube_apiserver)))
    assert version["gitVersion"] == f"v{built}"
    assert version["gitVersion"] == f"v{os.environ.get('KW_K8S_VERSION', built)}"

    # The certificate chains to our CA only: the system trust store rejects it.
    with pytest.raises(urllib.error.URLError) as raised:
        urllib.request.urlopen(f"{control_plane.url}/version", context=ssl.create_default_context())
    assert isinstance(raised.value.reason, ssl.SSLCertVerificationError)


def test_admin_kubeconfig_works_with_kubectl(control_plane: ControlPlane) -> None:
    whoami = json.loads(control_plane.run_kubectl("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == "admin"
    assert "system:masters" in whoami["status"]["userInfo"]["groups"]

    # The env form works the same way (KUBECONFIG instead of --kubeconfig).
    result = subprocess.run(
        [str(control_plane.kubectl_path), "get", "namespace", "default", "-o", "name"],
        env=control_plane.kubectl_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "namespace/default"


def test_rbac_is_enforced_for_impersonated_users(
    control_plane: ControlPlane, kube_admin: k8s.ApiClient, namespace: str
) -> None:
    k8s.CoreV1Api(kube_admin).list_namespaced_secret(namespace)  # admin may

    with control_plane.impersonating_api_client("alice", ["team-a"]) as alice_client:
        alice = k8s.CoreV1Api(alice_client)
        with pytest.raises(ApiException) as denied:
            alice.list_namespaced_secret(namespace)
        assert denied.value.status == 403
        message = json.loads(denied.value.body)["message"]
        assert 'User "alice" cannot list resource "secrets"' in message

        # Denial comes from RBAC, not from a blanket refusal: a binding to the group lets her.
        rbac = k8s.RbacAuthorizationV1Api(kube_admin)
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "secret-reader"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "team-a-reads-secrets"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "secret-reader",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "team-a"}
                ],
            },
        )

        def allowed() -> bool:
            try:
                alice.list_namespaced_secret(namespace)
            except ApiException as error:
                if error.status == 403:
                    return False
                raise
            return True

        eventually(allowed, "the RoleBinding to take effect", timeout=10)


def test_aggregated_edit_role_works_for_a_service_account(
    control_plane: ControlPlane, kube_admin: k8s.ApiClient, namespace: str
) -> None:
    # Kubeflow binds a profile's default-editor to ClusterRole edit, which is aggregated: empty
    # until kube-controller-manager's clusterrole-aggregation-controller fills it.
    k8s.RbacAuthorizationV1Api(kube_admin).create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "default-editor"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "edit",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "default-editor", "namespace": namespace}
            ],
        },
    )
    editor = f"system:serviceaccount:{namespace}:default-editor"
    with control_plane.impersonating_api_client(editor) as api_client:
        core = k8s.CoreV1Api(api_client)

        def created() -> bool:
            try:
                core.create_namespaced_secret(
                    namespace, {"metadata": {"name": "registry"}}, dry_run="All"
                )
            except ApiException as error:
                if error.status == 403:
                    return False
                raise
            return True

        eventually(created, "the RoleBinding to let the editor create a Secret", timeout=10)
        with pytest.raises(ApiException) as denied:
            core.list_namespaced_secret("default")
        assert denied.value.status == 403


def test_impersonation_sends_the_user_and_every_group(control_plane: ControlPlane) -> None:
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    with control_plane.impersonating_api_client("bob", ["team-b", "ml-users"]) as api_client:
        user_info = k8s.AuthenticationV1Api(api_client).create_self_subject_review(review)
    assert user_info.status.user_info.username == "bob"
    assert set(user_info.status.user_info.groups) == {
        "team-b",
        "ml-users",
        "system:authenticated",
    }


def test_client_certificate_kubeconfig_for_a_service_account(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    kubeconfig = control_plane.write_kubeconfig(
        tmp_path / "sweeper.kubeconfig",
        user="system:serviceaccount:kaptain-warden:sweeper",
        groups=("system:serviceaccounts", "system:serviceaccounts:kaptain-warden"),
    )
    result = subprocess.run(
        [str(control_plane.kubectl_path), f"--kubeconfig={kubeconfig}", "auth", "whoami"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "system:serviceaccount:kaptain-warden:sweeper" in result.stdout


# --------------------------------------------------------------------------------------------
# The CRDs: the upstream releases of hack/upstream.tsv, and the KFServing one kept in the repo
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrdCase:
    group: str
    version: str
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: dict[str, Any]
    status: dict[str, Any]
    #: A status patch that breaks a typed field: the API server must reject it. None where
    #: the CRD keeps the object schemaless (Katib's Experiment upstream, the KFServing one).
    bad_status: dict[str, Any] | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.kind}.{self.group}"


_TS = "2026-01-02T03:04:05Z"
_JOB_CONDITIONS = [
    {
        "type": "Created",
        "status": "True",
        "reason": "JobCreated",
        "message": "created",
        "lastUpdateTime": _TS,
        "lastTransitionTime": _TS,
    },
    {
        "type": "Succeeded",
        "status": "True",
        "reason": "JobSucceeded",
        "message": "done",
        "lastUpdateTime": _TS,
        "lastTransitionTime": _TS,
    },
]
_KNATIVE_READY = [{"type": "Ready", "status": "True", "lastTransitionTime": _TS}]
_TRAFFIC = [
    {"revisionName": "model-predictor-00002", "percent": 90, "latestRevision": True},
    {"revisionName": "model-predictor-00001", "percent": 10, "tag": "prev"},
]
_POD_TEMPLATE = {"spec": {"containers": [{"name": "main", "image": "example.com/train:1"}]}}


def _job_status() -> dict[str, Any]:
    return {
        "conditions": _JOB_CONDITIONS,
        "startTime": _TS,
        "completionTime": _TS,
        "replicaStatuses": {"Worker": {"succeeded": 1}},
    }


def _isvc_status() -> dict[str, Any]:
    component = {
        "latestCreatedRevision": "model-predictor-00002",
        "latestReadyRevision": "model-predictor-00002",
        "latestRolledoutRevision": "model-predictor-00001",
        "previousRolledoutRevision": "model-predictor-00000",
        "traffic": _TRAFFIC,
        "url": "http://model-predictor.ns.example.com",
    }
    return {"conditions": _KNATIVE_READY, "components": {"predictor": component}}


CRD_CASES = [
    CrdCase(
        "kubeflow.org",
        "v1",
        "TFJob",
        "tfjobs",
        (),
        spec={
            "runPolicy": {
                "cleanPodPolicy": "None",
                "ttlSecondsAfterFinished": 600,
                "activeDeadlineSeconds": 3600,
                "backoffLimit": 3,
            },
            "tfReplicaSpecs": {"Worker": {"replicas": 2, "template": _POD_TEMPLATE}},
        },
        status=_job_status(),
        bad_status={"completionTime": "yesterday"},
    ),
    CrdCase(
        "kubeflow.org",
        "v1",
        "PyTorchJob",
        "pytorchjobs",
        (),
        spec={
            "runPolicy": {"cleanPodPolicy": "Running", "ttlSecondsAfterFinished": 0},
            "pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": _POD_TEMPLATE}},
        },
        status=_job_status(),
        bad_status={"startTime": 12},
    ),
    CrdCase(
        "kubeflow.org",
        "v1",
        "MPIJob",
        "mpijobs",
        (),
        spec={
            "slotsPerWorker": 1,
            "runPolicy": {"cleanPodPolicy": "Running", "ttlSecondsAfterFinished": 60},
            "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "template": _POD_TEMPLATE},
                "Worker": {"replicas": 2, "template": _POD_TEMPLATE},
            },
        },
        status=_job_status(),
        bad_status={"completionTime": "yesterday"},
    ),
    CrdCase(
        "kubeflow.org",
        "v1",
        "XGBoostJob",
        "xgboostjobs",
        (),
        spec={
            "runPolicy": {"ttlSecondsAfterFinished": 60},
            "xgbReplicaSpecs": {"Master": {"replicas": 1, "template": _POD_TEMPLATE}},
        },
        status=_job_status(),
        bad_status={"startTime": 12},
    ),
    CrdCase(
        "kubeflow.org",
        "v1",
        "PaddleJob",
        "paddlejobs",
        (),
        spec={
            "runPolicy": {"ttlSecondsAfterFinished": 60},
            "paddleReplicaSpecs": {"Worker": {"replicas": 2, "template": _POD_TEMPLATE}},
        },
        status=_job_status(),
        bad_status={"completionTime": "yesterday"},
    ),
    CrdCase(
        "kubeflow.org",
        "v1",
        "JAXJob",
        "jaxjobs",
        (),
        spec={
            "runPolicy": {"ttlSecondsAfterFinished": 60},
            "jaxReplicaSpecs": {"Worker": {"replicas": 2, "template": _POD_TEMPLATE}},
        },
        status=_job_status(),
        bad_status={"startTime": 12},
    ),
    CrdCase(
        "kubeflow.org",
        "v1beta1",
        "Experiment",
        "experiments",
        (),
        spec={
            "resumePolicy": "Never",
            "maxTrialCount": 4,
            "objective": {"type": "maximize", "objectiveMetricName": "accuracy"},
        },
        status={"conditions": _JOB_CONDITIONS, "startTime": _TS, "completionTime": _TS},
        bad_status=None,
    ),
    CrdCase(
        "kubeflow.org",
        "v1beta1",
        "Trial",
        "trials",
        (),
        spec={
            "objective": {"type": "maximize", "objectiveMetricName": "accuracy"},
            "parameterAssignments": [{"name": "lr", "value": "0.03"}],
            "runSpec": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {"template": _POD_TEMPLATE},
            },
        },
        status={"conditions": _JOB_CONDITIONS, "startTime": _TS, "completionTime": _TS},
        bad_status=None,
    ),
    CrdCase(
        "serving.kubeflow.org",
        "v1beta1",
        "InferenceService",
        "inferenceservices",
        ("isvc",),
        spec={"predictor": {"tensorflow": {"storageUri": "s3://models/mnist"}}},
        status=_isvc_status(),
        bad_status=None,
    ),
    CrdCase(
        "serving.kserve.io",
        "v1beta1",
        "InferenceService",
        "inferenceservices",
        ("isvc",),
        spec={"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
        status=_isvc_status(),
        bad_status={"components": {"explainer": {"latestReadyRevision": 3}}},
    ),
    CrdCase(
        "serving.knative.dev",
        "v1",
        "Service",
        "services",
        ("kservice", "ksvc"),
        spec={"template": _POD_TEMPLATE, "traffic": [{"latestRevision": True, "percent": 100}]},
        status={
            "conditions": _KNATIVE_READY,
            "latestCreatedRevisionName": "model-predictor-00002",
            "latestReadyRevisionName": "model-predictor-00002",
            "traffic": _TRAFFIC,
        },
        bad_status={"latestReadyRevisionName": ["a", "b"]},
    ),
    CrdCase(
        "serving.knative.dev",
        "v1",
        "Configuration",
        "configurations",
        ("config", "cfg"),
        spec={"template": _POD_TEMPLATE},
        status={
            "conditions": _KNATIVE_READY,
            "latestCreatedRevisionName": "model-predictor-00003",
            "latestReadyRevisionName": "model-predictor-00002",
        },
        bad_status={"latestCreatedRevisionName": {"name": "x"}},
    ),
    CrdCase(
        "serving.knative.dev",
        "v1",
        "Route",
        "routes",
        ("rt",),
        spec={"traffic": [{"revisionName": "model-predictor-00001", "percent": 100}]},
        status={"conditions": _KNATIVE_READY, "traffic": _TRAFFIC},
        bad_status={"traffic": [{"latestRevision": "yes"}]},
    ),
    CrdCase(
        "serving.knative.dev",
        "v1",
        "Revision",
        "revisions",
        ("rev",),
        spec={"containers": [{"image": "example.com/model:2"}], "timeoutSeconds": 300},
        status={"conditions": _KNATIVE_READY, "actualReplicas": 0, "desiredReplicas": 0},
        bad_status={"actualReplicas": "many"},
        extra={
            "labels": {
                "serving.knative.dev/configuration": "model-predictor",
                "serving.knative.dev/routingState": "reserve",
            }
        },
    ),
]


def test_every_crd_is_covered_by_a_case_and_only_kfserving_lives_in_the_repo() -> None:
    names = {document["metadata"]["name"] for document in crd_documents()}
    assert names == {f"{case.plural}.{case.group}" for case in CRD_CASES}
    # Every other one comes from its Go module, through the cache hack/test-assets fills.
    assert [path.name for path in LOCAL_CRD_DIR.glob("*.yaml")] == [
        "serving.kubeflow.org_inferenceservices.yaml"
    ]
    upstream = find_upstream()
    upstream_names = {
        document["metadata"]["name"] for document in crd_documents(upstream.crd_files())
    }
    assert upstream_names == names - {"inferenceservices.serving.kubeflow.org"}
    assert all(path.is_relative_to(upstream.root) for path in upstream.crd_files())


def _contains(whole: Any, part: Any) -> bool:
    """Whether `part` is `whole` with some mapping keys left out (schema defaults, say)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            key in whole and _contains(whole[key], value) for key, value in part.items()
        )
    return bool(whole == part)


@pytest.mark.parametrize("case", CRD_CASES, ids=[case.id for case in CRD_CASES])
def test_crd_is_served_with_status_subresource_and_schema(
    kube_admin: k8s.ApiClient, namespace: str, case: CrdCase
) -> None:
    """What the warden relies on: the kind is served with its short names, its status is a
    subresource holding the fields the sweeper reads, and a typed schema refuses bad values and
    prunes fields it does not know."""
    api = k8s.CustomObjectsApi(kube_admin)

    resources = {r.name: r for r in api.get_api_resources(case.group, case.version).resources}
    resource = resources[case.plural]
    assert resource.kind == case.kind
    assert resource.namespaced is True
    assert set(case.short_names) <= set(resource.short_names or ())
    assert f"{case.plural}/status" in resources

    name = f"{case.kind.lower()}-sample"
    unknown = {"notInTheSchema": {"nested": [1, "two"]}}
    body = {
        "apiVersion": f"{case.group}/{case.version}",
        "kind": case.kind,
        "metadata": {"name": name, **case.extra},
        "spec": {**case.spec, **unknown},
        "status": case.status,  # ignored on create: status is a subresource
    }
    created = api.create_namespaced_custom_object(
        case.group, case.version, namespace, case.plural, body
    )
    assert _contains(created["spec"], case.spec)
    typed = case.bad_status is not None
    assert ("notInTheSchema" in created["spec"]) is not typed
    assert not created.get("status")

    api.patch_namespaced_custom_object_status(
        case.group, case.version, namespace, case.plural, name, {"status": case.status}
    )
    read = api.get_namespaced_custom_object(case.group, case.version, namespace, case.plural, name)
    assert _contains(read["spec"], case.spec)
    assert _contains(read["status"], case.status), read["status"]
    assert read["metadata"].get("labels") == case.extra.get("labels")

    if case.bad_status is not None:
        with pytest.raises(ApiException) as rejected:
            api.patch_namespaced_custom_object_status(
                case.group, case.version, namespace, case.plural, name, {"status": case.bad_status}
            )
        assert rejected.value.status == 422, rejected.value.body


def test_kubectl_finds_the_custom_resources(control_plane: ControlPlane, namespace: str) -> None:
    for name in ("isvc", "ksvc", "cfg", "rt", "rev", "tfjob", "pytorchjob", "experiment"):
        control_plane.run_kubectl("get", name, "-n", namespace)


# --------------------------------------------------------------------------------------------
# kube-controller-manager: garbage collector, Job and TTL-after-finished controllers
# --------------------------------------------------------------------------------------------

_POD_SPEC = {
    "restartPolicy": "Never",
    "containers": [{"name": "main", "image": "example.com/build:1"}],
}


def _job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": _POD_SPEC}, **spec},
    }


def _owned_pods(core: k8s.CoreV1Api, namespace: str, job: Any, count: int) -> str:
    """Create `count` Pods owned by `job` (not matching its selector); return their selector."""
    reference = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job.metadata.name,
        "uid": job.metadata.uid,
    }
    for index in range(count):
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {
                    "name": f"{job.metadata.name}-{index}",
                    "labels": {"owned-by": job.metadata.name},
                    "ownerReferences": [reference],
                },
                "spec": _POD_SPEC,
            },
        )
    return f"owned-by={job.metadata.name}"


def _job_exists(batch: k8s.BatchV1Api, namespace: str, name: str) -> bool:
    try:
        batch.read_namespaced_job(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def test_garbage_collector_deletes_dependents_in_background(
    kube_admin: k8s.ApiClient, namespace: str
) -> None:
    core, batch = k8s.CoreV1Api(kube_admin), k8s.BatchV1Api(kube_admin)
    # Suspended, so the Job controller creates no Pods of its own: these are the GC's only.
    job = batch.create_namespaced_job(namespace, _job("background", suspend=True))
    selector = _owned_pods(core, namespace, job, 2)

    batch.delete_namespaced_job("background", namespace, propagation_policy="Background")

    eventually(lambda: not _job_exists(batch, namespace, "background"), "the Job to go")
    eventually(
        lambda: not core.list_namespaced_pod(namespace, label_selector=selector).items,
        "the garbage collector to delete the Job's Pods",
    )


def test_garbage_collector_orphans_dependents(kube_admin: k8s.ApiClient, namespace: str) -> None:
    core, batch = k8s.CoreV1Api(kube_admin), k8s.BatchV1Api(kube_admin)
    job = batch.create_namespaced_job(namespace, _job("orphan", suspend=True))
    selector = _owned_pods(core, namespace, job, 2)

    batch.delete_namespaced_job("orphan", namespace, propagation_policy="Orphan")

    # The GC removes the owner references first, then the `orphan` finalizer: once the Job is
    # gone, the Pods are there without an owner.
    eventually(lambda: not _job_exists(batch, namespace, "orphan"), "the GC to orphan and delete")
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    assert len(pods) == 2
    assert all(not pod.metadata.owner_references for pod in pods)


def test_job_controller_runs_and_gc_removes_its_pods(
    job_controller: tuple[k8s.ApiClient, str],
) -> None:
    api_client, namespace = job_controller
    core, batch = k8s.CoreV1Api(api_client), k8s.BatchV1Api(api_client)
    job = batch.create_namespaced_job(namespace, _job("build"))
    selector = f"batch.kubernetes.io/controller-uid={job.metadata.uid}"
    pods = eventually(
        lambda: core.list_namespaced_pod(namespace, label_selector=selector).items,
        "the Job controller to create a Pod",
    )
    assert pods[0].metadata.owner_references[0].uid == job.metadata.uid

    batch.delete_namespaced_job("build", namespace, propagation_policy="Background")
    eventually(
        lambda: not core.list_namespaced_pod(namespace, label_selector=selector).items,
        "the Job's Pods to be deleted (GC, and the Job controller's tracking finalizer removed)",
    )


def test_ttl_after_finished_controller_deletes_a_finished_job(
    kube_admin: k8s.ApiClient, namespace: str, kube_version: tuple[int, int]
) -> None:
    batch = k8s.BatchV1Api(kube_admin)
    # managedBy hands the Job's status to "another controller" (us), so the built-in Job
    # controller leaves it alone and the Complete status below is the only truth. Before 1.32
    # the field is dropped and the session runs no Job controller (tests/kube_versions.py).
    batch.create_namespaced_job(
        namespace,
        _job("finished", managedBy="kaptain-warden.test/fake", ttlSecondsAfterFinished=0),
    )
    now = _now()
    batch.patch_namespaced_job_status(
        "finished",
        namespace,
        {
            "status": {
                "startTime": now,
                "completionTime": now,
                "succeeded": 1,
                "conditions": job_finished_conditions("Complete", now, kube_version),
            }
        },
    )
    eventually(
        lambda: not _job_exists(batch, namespace, "finished"),
        "the TTL-after-finished controller to delete the Job",
    )


# --------------------------------------------------------------------------------------------
# The library's lifecycle (its own short-lived control planes, not the session fixture)
# --------------------------------------------------------------------------------------------


def test_stop_leaves_no_process_and_no_directory(control_plane: ControlPlane) -> None:
    plane = ControlPlane(controller_manager=True, binaries=control_plane.binaries)
    with plane:
        pids = plane.pids
        work_dir = plane.work_dir
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "watchdog"}
        assert all(not _process_gone(pid) for pid in pids.values())
        assert plane.startup_seconds is not None
        assert work_dir.is_dir()
    assert not plane.running
    for name, pid in pids.items():
        assert _process_gone(pid), f"{name} ({pid}) is still running"
        if name != "watchdog":
            assert _process_group_gone(pid), f"a process of {name}'s group is still running"
    assert not work_dir.exists()
    plane.stop()  # idempotent


_OWNER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from kaptain_warden.testing.binaries import Binaries
    from kaptain_warden.testing.controlplane import ControlPlane
    paths = json.loads(sys.argv[1])
    plane = ControlPlane(binaries=Binaries(**{k: Path(v) for k, v in paths.items()}))
    plane.start()
    print(json.dumps({"pids": plane.pids, "work_dir": str(plane.work_dir)}), flush=True)
    if sys.argv[2] == "hang":
        time.sleep(600)
    # else: exit without stop(); the atexit handler must clean up
    """
)


def _run_owner(
    control_plane: ControlPlane, mode: str
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    binaries = control_plane.binaries
    paths = {
        "kube_apiserver": str(binaries.kube_apiserver),
        "etcd": str(binaries.etcd),
        "kubectl": str(binaries.kubectl),
    }
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER_SCRIPT, json.dumps(paths), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    line = owner.stdout.readline()
    assert line, f"the owner process exited with {owner.wait()} before starting a control plane"
    return owner, json.loads(line)


def _assert_cleaned_up(started: dict[str, Any]) -> None:
    for name, pid in started["pids"].items():
        eventually(lambda pid=pid: _process_gone(pid), f"{name} ({pid}) to end", timeout=20)
    eventually(
        lambda: not Path(started["work_dir"]).exists(), "the work directory to go", timeout=5
    )


def test_atexit_stops_a_control_plane_its_owner_forgot(control_plane: ControlPlane) -> None:
    owner, started = _run_owner(control_plane, "exit")
    assert owner.wait(timeout=60) == 0
    _assert_cleaned_up(started)


def test_watchdog_cleans_up_when_the_owner_is_killed(control_plane: ControlPlane) -> None:
    owner, started = _run_owner(control_plane, "hang")
    owner.send_signal(signal.SIGKILL)  # no atexit, no finally: only the watchdog is left
    owner.wait()
    _assert_cleaned_up(started)


def test_start_failure_names_the_process_and_shows_its_log(
    control_plane: ControlPlane,
) -> None:
    plane = ControlPlane(binaries=control_plane.binaries, extra_apiserver_args=["--no-such-flag=1"])
    with pytest.raises(ControlPlaneError) as failed:
        plane.start()
    message = str(failed.value)
    assert "kube-apiserver exited with code 1 before it could become ready" in message
    assert "last lines of its log:" in message
    assert "unknown flag: --no-such-flag" in message
    # What did start was cleaned up.
    assert _process_gone(plane.pids["etcd"])
    assert not plane.work_dir.exists()


def test_a_port_taken_meanwhile_is_retried_with_new_ports(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_free_ports = controlplane.free_ports
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        calls: list[list[int]] = []

        def first_etcd_port_taken(count: int) -> list[int]:
            ports = real_free_ports(count)
            if not calls:
                ports[0] = taken  # etcd client, etcd peer, kube-apiserver, controller manager
            calls.append(ports)
            return ports

        monkeypatch.setattr(controlplane, "free_ports", first_etcd_port_taken)
        with ControlPlane(binaries=control_plane.binaries) as plane:
            assert len(calls) == 2
            assert plane.etcd_url == f"http://127.0.0.1:{calls[1][0]}"
            with plane.api_client() as api_client:
                k8s.CoreV1Api(api_client).read_namespace("default")


def test_missing_binaries_error_says_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(BinariesNotFoundError) as missing:
        find_binaries(environ={"KUBEBUILDER_ASSETS": str(tmp_path)}, run_script=False)
    message = str(missing.value)
    assert "kube-apiserver, etcd, kubectl, kube-controller-manager" in message
    assert f"KUBEBUILDER_ASSETS='{tmp_path}'" in message
    assert "hack/test-assets" in message

    with pytest.raises(BinariesNotFoundError, match="TEST_ASSET_ETCD=/nonexistent/etcd"):
        find_binaries(environ={"TEST_ASSET_ETCD": "/nonexistent/etcd"})


def test_failing_test_assets_script_is_reported(tmp_path: Path) -> None:
    script = tmp_path / "test-assets"
    script.write_text("#!/bin/sh\necho 'test-assets: Go is needed' >&2\nexit 1\n")
    script.chmod(0o755)
    with pytest.raises(BinariesNotFoundError) as failed:
        find_binaries(environ={}, test_assets_script=script)
    assert "exited with code 1" in str(failed.value)
    assert "test-assets: Go is needed" in str(failed.value)


def test_binaries_from_test_assets_output_and_overrides(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    real = control_plane.binaries
    script = tmp_path / "test-assets"
    script.write_text(f"#!/bin/sh\necho building >&2\necho noise\necho {real.etcd.parent}\n")
    script.chmod(0o755)
    found = find_binaries(environ={}, test_assets_script=script)
    assert found.kube_apiserver == real.kube_apiserver
    assert found.kube_controller_manager is not None

    # A TEST_ASSET_* variable wins over the directory.
    etcd_wrapper = tmp_path / "my-etcd"
    etcd_wrapper.write_text(f'#!/bin/sh\nexec {real.etcd} "$@"\n')
    etcd_wrapper.chmod(0o755)
    found = find_binaries(
        environ={"KUBEBUILDER_ASSETS": str(real.etcd.parent), "TEST_ASSET_ETCD": str(etcd_wrapper)},
        run_script=False,
    )
    assert found.etcd == etcd_wrapper.resolve()
    assert found.kubectl == real.kubectl


# --------------------------------------------------------------------------------------------
# Admission webhooks
# --------------------------------------------------------------------------------------------


def _deny(request: dict[str, Any]) -> dict[str, Any]:
    """Denies every AdmissionReview, naming the object."""
    message = f"denied {request['name']} by the test webhook"
    return {"allowed": False, "status": {"code": 403, "message": message}}


def test_api_server_calls_admission_webhooks_on_loopback(
    control_plane: ControlPlane, kube_admin: k8s.ApiClient, namespace: str
) -> None:
    with LoopbackWebhook(control_plane, _deny) as server:
        admission = k8s.AdmissionregistrationV1Api(kube_admin)
        name = f"deny-configmaps-{namespace}"
        try:
            admission.create_validating_webhook_configuration(
                {
                    "metadata": {"name": name},
                    "webhooks": [
                        {
                            "name": "deny.test.kaptain.io",
                            "clientConfig": server.client_config("/validate"),
                            "rules": [
                                {
                                    "apiGroups": [""],
                                    "apiVersions": ["v1"],
                                    "operations": ["CREATE"],
                                    "resources": ["configmaps"],
                                }
                            ],
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": namespace}
                            },
                            "sideEffects": "None",
                            "admissionReviewVersions": ["v1"],
                            "failurePolicy": "Fail",
                            "timeoutSeconds": 5,
                        }
                    ],
                }
            )
            core = k8s.CoreV1Api(kube_admin)

            def denied() -> str:
                try:
                    core.create_namespaced_config_map(
                        namespace, {"metadata": {"name": "probe"}}, dry_run="All"
                    )
                except ApiException as error:
                    return str(json.loads(error.body)["message"])
                return ""

            message = eventually(denied, "the webhook configuration to take effect", timeout=15)
            assert "denied probe by the test webhook" in message
        finally:
            admission.delete_validating_webhook_configuration(name)
