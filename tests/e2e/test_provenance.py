"""Tier 3: provenance from a real Pod-bound ServiceAccount token, and expireWhenCreatorGone.

The notebook is a real Pod object in a Kubeflow Profile's namespace (no kubelet: the Pod only
has to exist) and a TokenRequest bound to it (`boundObjectRef` kind Pod), as the kubelet
mounts one into a notebook; the API server itself puts the Pod's name and uid into every
request's userInfo.extra. The sweeper runs real passes against the same API server.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from factories import inference_service, job, secret, tfjob
from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import get_json, load_api_client, request_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.kube.provenance import ProvenanceResolver
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.policies.provenance import CreatorPod
from kaptain_warden.policies.timestamps import parse_time
from kaptain_warden.sweeper.loop import Sweeper
from kaptain_warden.sweeper.settings import SweeperSettings
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.crds import install_crds
from kaptain_warden.testing.profiles import create_owned_profile, install_profile_crd
from kaptain_warden.testing.stack import (
    NOTEBOOK_SERVICE_ACCOUNT,
    WardenStack,
    create_profile_namespace,
    notebook_user,
    service_account_token,
)
from polling import eventually
from sweeper_kit import run_cli

P = "warden.kaptain.io"
PERSON = "alice@example.com"
POLICY = load_policy()
# Kubeflow's Notebook (kubeflow.org/v1, notebook-controller): only its identity matters here.
NOTEBOOK_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "notebooks.kubeflow.org"},
    "spec": {
        "group": "kubeflow.org",
        "scope": "Namespaced",
        "names": {"kind": "Notebook", "listKind": "NotebookList", "plural": "notebooks"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


@dataclass
class Session:
    """A notebook's credentials: its namespace, its Pod (if bound), an ApiClient with its token."""

    namespace: str
    pod: dict[str, Any] | None
    client: k8s.ApiClient

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        group, _, version = obj["apiVersion"].rpartition("/")
        plural = {"Secret": "secrets", "Job": "jobs", "TFJob": "tfjobs"}[obj["kind"]]
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        path = f"{base}/namespaces/{self.namespace}/{plural}"
        created: dict[str, Any] = request_json(self.client, "POST", path, body=obj)
        return created


@pytest.fixture(scope="module")
def crds(kube_admin: k8s.ApiClient) -> Iterator[None]:
    """The Profile CRD, and the Notebook CRD for this module only: the session's control plane
    serves no Notebooks otherwise (other modules rely on that)."""
    install_profile_crd(kube_admin)
    with tempfile.TemporaryDirectory(prefix="notebook-crd-") as directory:
        Path(directory, "kubeflow.org_notebooks.yaml").write_text(yaml.safe_dump(NOTEBOOK_CRD))
        install_crds(kube_admin, crd_dir=Path(directory))
    yield
    name = NOTEBOOK_CRD["metadata"]["name"]
    request_json(
        kube_admin, "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
    )

    def unserved() -> bool:
        try:
            get_json(kube_admin, "/apis/kubeflow.org/v1/notebooks")
        except ApiError as exc:
            return exc.status == 404
        return False

    eventually(unserved, "the Notebook CRD to be gone", timeout=60)


@pytest.fixture
def team(warden: WardenStack, crds: None, kube_admin: k8s.ApiClient) -> str:
    namespace = f"team-{uuid.uuid4().hex[:8]}"
    create_owned_profile(kube_admin, namespace, PERSON)
    return namespace


def _session(
    plane: ControlPlane, admin: k8s.ApiClient, namespace: str, pod: str | None, work: Path
) -> Iterator[Session]:
    token = service_account_token(admin, namespace, pod=pod)
    kubeconfig = plane.write_token_kubeconfig(
        work / f"{pod or 'unbound'}.kubeconfig",
        token=token,
        user=notebook_user(namespace),
        namespace=namespace,
    )
    found = (
        get_json(admin, f"/api/v1/namespaces/{namespace}/pods/{pod}") if pod is not None else None
    )
    with load_api_client(str(kubeconfig)) as client:
        yield Session(namespace, found, client)


def _pod(name: str, *, labels: dict[str, str] | None = None, owner: Any = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels or {}}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "serviceAccountName": NOTEBOOK_SERVICE_ACCOUNT,
            "containers": [{"name": "notebook", "image": "registry.example/jupyter:1"}],
        },
    }


@pytest.fixture
def notebook(
    control_plane: ControlPlane, kube_admin: k8s.ApiClient, team: str, tmp_path: Path
) -> Iterator[Session]:
    """Notebook alice-nb's Pod (labelled by the notebook-controller) and a token bound to it."""
    pod = _pod("alice-nb-0", labels={"notebook-name": "alice-nb"})
    request_json(kube_admin, "POST", f"/api/v1/namespaces/{team}/pods", body=pod)
    yield from _session(control_plane, kube_admin, team, "alice-nb-0", tmp_path)


@pytest.fixture
def unbound(
    control_plane: ControlPlane, kube_admin: k8s.ApiClient, team: str, tmp_path: Path
) -> Iterator[Session]:
    """The same ServiceAccount with a token bound to no Pod."""
    yield from _session(control_plane, kube_admin, team, None, tmp_path)


def annotations(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj["metadata"].get("annotations") or {})


def sweeper(admin: k8s.ApiClient, namespace: str, *, dry_run: bool = False) -> Sweeper:
    settings = SweeperSettings(dry_run=dry_run, namespaces=(namespace,))
    return Sweeper(KubeApi(admin), policy=POLICY, settings=settings)


def entries(report: Any) -> dict[str, Any]:
    return {f"{e.kind}/{e.name}": e for e in report.entries}


def test_objects_a_notebook_creates_carry_its_pod_notebook_and_person(
    notebook: Session, kube_admin: k8s.ApiClient
) -> None:
    assert notebook.pod is not None
    uid = notebook.pod["metadata"]["uid"]
    made = [
        notebook.create(secret("s3-creds", namespace=notebook.namespace, type_="Opaque")),
        notebook.create(job("build-image", namespace=notebook.namespace)),
        notebook.create(tfjob("mnist", namespace=notebook.namespace)),
    ]
    for obj in made:
        found = annotations(obj)
        assert found[f"{P}/created-by-pod"] == "alice-nb-0", obj["kind"]
        assert found[f"{P}/created-by-pod-uid"] == uid
        assert found[f"{P}/notebook"] == "alice-nb"
        assert found[f"{P}/profile-owner"] == PERSON
        assert obj["metadata"]["labels"][f"{P}/notebook"] == "alice-nb"
    # The label selects a notebook's objects.
    listed = get_json(
        kube_admin,
        f"/api/v1/namespaces/{notebook.namespace}/secrets",
        query=[("labelSelector", f"{P}/notebook=alice-nb")],
    )
    assert [s["metadata"]["name"] for s in listed["items"]] == ["s3-creds"]


def test_a_forged_provenance_is_overwritten_and_kept_on_update(notebook: Session) -> None:
    forged = {
        f"{P}/created-by-pod": "bob-nb-0",
        f"{P}/created-by-pod-uid": "00000000-0000-0000-0000-000000000000",
        f"{P}/notebook": "bob-nb",
        f"{P}/profile-owner": "bob@example.com",
        f"{P}/creator-gone-at": "2020-01-01T00:00:00Z",
    }
    created = notebook.create(
        secret(
            "forged",
            namespace=notebook.namespace,
            type_="Opaque",
            annotations=forged,
            labels={f"{P}/notebook": "bob-nb"},
        )
    )
    found = annotations(created)
    assert found[f"{P}/created-by-pod"] == "alice-nb-0"
    assert found[f"{P}/notebook"] == "alice-nb"
    assert found[f"{P}/profile-owner"] == PERSON
    assert f"{P}/creator-gone-at" not in found
    assert created["metadata"]["labels"][f"{P}/notebook"] == "alice-nb"
    # An update by the notebook cannot move it either, nor write creator-gone-at.
    path = f"/api/v1/namespaces/{notebook.namespace}/secrets/forged"
    patched = request_json(
        notebook.client,
        "PATCH",
        path,
        body={"metadata": {"annotations": forged}},
        content_type="application/merge-patch+json",
    )
    assert annotations(patched) == found


def test_a_pod_run_by_a_notebooks_statefulset_names_the_notebook(
    control_plane: ControlPlane, kube_admin: k8s.ApiClient, team: str, tmp_path: Path
) -> None:
    notebook = request_json(
        kube_admin,
        "POST",
        f"/apis/kubeflow.org/v1/namespaces/{team}/notebooks",
        body={"apiVersion": "kubeflow.org/v1", "kind": "Notebook", "metadata": {"name": "carol"}},
    )
    statefulset = request_json(
        kube_admin,
        "POST",
        f"/apis/apps/v1/namespaces/{team}/statefulsets",
        body={
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {
                "name": "carol",
                "ownerReferences": [_controller(notebook)],
            },
            "spec": {
                "replicas": 0,  # no controller-made Pods: the test makes the one it binds to
                "serviceName": "carol",
                "selector": {"matchLabels": {"statefulset": "carol"}},
                "template": {
                    "metadata": {"labels": {"statefulset": "carol"}},
                    "spec": _pod("x")["spec"],
                },
            },
        },
    )
    pod = _pod("carol-0", labels={"statefulset": "carol"}, owner=_controller(statefulset))
    request_json(kube_admin, "POST", f"/api/v1/namespaces/{team}/pods", body=pod)
    session = next(_session(control_plane, kube_admin, team, "carol-0", tmp_path))
    created = session.create(secret("carol-creds", namespace=team, type_="Opaque"))
    assert annotations(created)[f"{P}/notebook"] == "carol"
    assert created["metadata"]["labels"][f"{P}/notebook"] == owner_label_value("carol")


def _controller(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
    }


def test_a_token_without_a_pod_binding_gets_no_provenance_and_todays_ttl(
    unbound: Session, kube_admin: k8s.ApiClient
) -> None:
    created = unbound.create(secret("plain", namespace=unbound.namespace, type_="Opaque"))
    found = annotations(created)
    for key in ("created-by-pod", "created-by-pod-uid", "notebook", "profile-owner"):
        assert f"{P}/{key}" not in found
    assert f"{P}/notebook" not in created["metadata"]["labels"]
    created_at = parse_time(found[f"{P}/created-at"])
    assert created_at is not None
    keep = entries(
        sweeper(kube_admin, unbound.namespace).run_once(now=created_at + timedelta(hours=23))
    )
    assert keep["Secret/plain"].action == "keep"
    assert "creator" not in keep["Secret/plain"].reason
    due = entries(
        sweeper(kube_admin, unbound.namespace, dry_run=True).run_once(
            now=created_at + timedelta(hours=24)
        )
    )
    assert due["Secret/plain"].action == "delete"


def test_when_the_notebook_pod_is_gone_its_build_objects_go_after_the_grace_not_its_training(
    notebook: Session, kube_admin: k8s.ApiClient
) -> None:
    namespace = notebook.namespace
    notebook.create(secret("s3-creds", namespace=namespace, type_="Opaque"))
    notebook.create(job("build-image", namespace=namespace))
    notebook.create(tfjob("mnist", namespace=namespace))

    # The creator is there: nothing waits for it, nothing is recorded.
    first = entries(sweeper(kube_admin, namespace).run_once(now=datetime.now(UTC)))
    assert "creator" not in first["Secret/s3-creds"].reason
    assert first["Secret/s3-creds"].notebook == "alice-nb"
    assert first["Secret/s3-creds"].person == PERSON

    # The notebook is stopped (culled): its Pod goes. A Pod under the same name with another
    # uid (a restarted notebook) is another kernel: it does not count as the creator.
    pods = f"/api/v1/namespaces/{namespace}/pods"
    request_json(kube_admin, "DELETE", f"{pods}/alice-nb-0", query=[("gracePeriodSeconds", 0)])

    def pod_gone() -> bool:
        try:
            get_json(kube_admin, f"{pods}/alice-nb-0")
        except ApiError as exc:
            return exc.status == 404
        return False

    eventually(pod_gone, "the notebook Pod to be deleted")
    request_json(
        kube_admin, "POST", pods, body=_pod("alice-nb-0", labels={"notebook-name": "alice-nb"})
    )

    # A preview records nothing and says when they would go.
    preview = entries(
        sweeper(kube_admin, namespace, dry_run=True).run_once(
            now=datetime.now(UTC) + timedelta(minutes=30)
        )
    )
    assert "creator Pod alice-nb-0 gone since" in preview["Secret/s3-creds"].reason
    assert preview["Secret/s3-creds"].action == "keep"
    assert "creator" not in preview["TFJob/mnist"].reason
    secrets = f"/api/v1/namespaces/{namespace}/secrets"
    assert f"{P}/creator-gone-at" not in annotations(get_json(kube_admin, f"{secrets}/s3-creds"))

    # The first real pass records when it saw the creator gone, on the build objects only.
    seen = datetime.now(UTC)
    sweeper(kube_admin, namespace).run_once(now=seen)
    recorded = annotations(get_json(kube_admin, f"{secrets}/s3-creds"))[f"{P}/creator-gone-at"]
    gone_at = parse_time(recorded)
    assert gone_at is not None and abs(gone_at - seen) < timedelta(seconds=5)
    build = get_json(kube_admin, f"/apis/batch/v1/namespaces/{namespace}/jobs/build-image")
    assert annotations(build)[f"{P}/creator-gone-at"] == recorded
    training = get_json(kube_admin, f"/apis/kubeflow.org/v1/namespaces/{namespace}/tfjobs/mnist")
    assert f"{P}/creator-gone-at" not in annotations(training)

    # A later pass does not move it.
    sweeper(kube_admin, namespace).run_once(now=gone_at + timedelta(minutes=30))
    assert annotations(get_json(kube_admin, f"{secrets}/s3-creds"))[f"{P}/creator-gone-at"] == (
        recorded
    )

    # Within the grace (1h in the default policy) they stay; after it they go, the TFJob stays.
    before = entries(sweeper(kube_admin, namespace).run_once(now=gone_at + timedelta(minutes=59)))
    assert before["Secret/s3-creds"].action == "keep"
    after = sweeper(kube_admin, namespace).run_once(now=gone_at + timedelta(hours=1))
    decided = entries(after)
    assert decided["Secret/s3-creds"].action == "delete"
    assert decided["Secret/s3-creds"].outcome == "deleted"
    assert f"creator Pod alice-nb-0 gone since {recorded}" in decided["Secret/s3-creds"].reason
    assert decided["Job/build-image"].action == "delete"
    assert decided["TFJob/mnist"].action == "keep"
    with pytest.raises(ApiError) as missing:
        get_json(kube_admin, f"{secrets}/s3-creds")
    assert missing.value.status == 404
    get_json(kube_admin, f"/apis/kubeflow.org/v1/namespaces/{namespace}/tfjobs/mnist")

    # The deletion Event names the notebook and the person.
    events = get_json(
        kube_admin,
        f"/apis/events.k8s.io/v1/namespaces/{namespace}/events",
        query=[("fieldSelector", "regarding.name=s3-creds")],
    )["items"]
    (deleted,) = [e for e in events if e["reason"] == "CreatorGone"]
    assert f"notebook alice-nb, person {PERSON}" in deleted["note"]


def test_the_resolver_leaves_out_what_it_cannot_confirm(
    kube_admin: k8s.ApiClient, team: str
) -> None:
    keys = POLICY.keys
    pod = request_json(
        kube_admin,
        "POST",
        f"/api/v1/namespaces/{team}/pods",
        body=_pod("dave-0", labels={"notebook-name": "dave"}),
    )
    creator = CreatorPod("dave-0", pod["metadata"]["uid"])
    found = ProvenanceResolver(kube_admin, keys=keys).provenance(namespace=team, pod=creator)
    assert (found.notebook, found.profile_owner, found.unresolved) == ("dave", PERSON, frozenset())
    # Another uid under the Pod's name is not the token's Pod: no notebook, nothing failed.
    other = CreatorPod("dave-0", str(uuid.uuid4()))
    stranger = ProvenanceResolver(kube_admin, keys=keys).provenance(namespace=team, pod=other)
    assert stranger.notebook is None and stranger.unresolved == frozenset()
    # A namespace that is no Profile has no person.
    plain = f"plain-{uuid.uuid4().hex[:8]}"
    create_profile_namespace(kube_admin, plain)
    request_json(
        kube_admin,
        "POST",
        f"/api/v1/namespaces/{plain}/pods",
        body=_pod("erin-0", labels={"notebook-name": "erin"}),
    )
    erin = get_json(kube_admin, f"/api/v1/namespaces/{plain}/pods/erin-0")
    nobody = ProvenanceResolver(kube_admin, keys=keys).provenance(
        namespace=plain, pod=CreatorPod("erin-0", erin["metadata"]["uid"])
    )
    assert (nobody.notebook, nobody.profile_owner, nobody.unresolved) == ("erin", None, frozenset())
    # Out of time, or an API server that does not answer: left out, named unresolved.
    late = ProvenanceResolver(kube_admin, keys=keys).provenance(
        namespace=team, pod=creator, deadline=time.monotonic() - 1
    )
    both = frozenset({keys.notebook, keys.profile_owner})
    assert (late.notebook, late.profile_owner, late.unresolved) == (None, None, both)
    configuration = k8s.Configuration()
    configuration.host = "https://127.0.0.1:9"
    with k8s.ApiClient(configuration) as closed:
        down = ProvenanceResolver(closed, keys=keys).provenance(namespace=team, pod=creator)
    assert (down.notebook, down.profile_owner, down.unresolved) == (None, None, both)


def test_a_controller_made_child_takes_its_parents_provenance_not_the_controllers_pod(
    control_plane: ControlPlane, kube_admin: k8s.ApiClient, notebook: Session, tmp_path: Path
) -> None:
    namespace = notebook.namespace
    isvc = request_json(
        notebook.client,
        "POST",
        f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices",
        body=inference_service("mnist", namespace=namespace),
    )
    assert annotations(isvc)[f"{P}/notebook"] == "alice-nb"
    # KServe's controller runs in a Pod of its own: its requests carry that Pod.
    system = f"kserve-{uuid.uuid4().hex[:8]}"
    request_json(kube_admin, "POST", "/api/v1/namespaces", body={"metadata": {"name": system}})
    request_json(
        kube_admin,
        "POST",
        f"/api/v1/namespaces/{system}/serviceaccounts",
        body={"metadata": {"name": "kserve-controller"}},
    )
    controller_pod = _pod("kserve-controller-manager-0")
    controller_pod["spec"]["serviceAccountName"] = "kserve-controller"
    request_json(kube_admin, "POST", f"/api/v1/namespaces/{system}/pods", body=controller_pod)
    request_json(
        kube_admin,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        body={
            "metadata": {"name": system},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "kserve-controller", "namespace": system}
            ],
        },
    )
    token = service_account_token(
        kube_admin, system, "kserve-controller", pod="kserve-controller-manager-0"
    )
    kubeconfig = control_plane.write_token_kubeconfig(
        tmp_path / "kserve.kubeconfig",
        token=token,
        user=f"system:serviceaccount:{system}:kserve-controller",
        namespace=namespace,
    )
    service = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": "mnist-predictor",
            "ownerReferences": [_controller(isvc)],
            "labels": {"serving.kserve.io/inferenceservice": "mnist"},
        },
        "spec": {"template": {"spec": {"containers": [{"image": "registry.example/tf:1"}]}}},
    }

    def created() -> dict[str, Any]:
        with load_api_client(str(kubeconfig)) as client:
            return dict(
                request_json(
                    client,
                    "POST",
                    f"/apis/serving.knative.dev/v1/namespaces/{namespace}/services",
                    body=service,
                )
            )

    # The binding may take a moment to reach the RBAC authorizer's cache.
    child = eventually(_allowed(created), "the controller's ClusterRoleBinding to take effect")
    found = annotations(child)
    assert found[f"{P}/owner"] == notebook_user(namespace)
    assert found[f"{P}/created-by-pod"] == "alice-nb-0"
    assert found[f"{P}/created-by-pod-uid"] == annotations(isvc)[f"{P}/created-by-pod-uid"]
    assert found[f"{P}/notebook"] == "alice-nb"
    assert found[f"{P}/profile-owner"] == PERSON


def _allowed(create: Any) -> Any:
    def attempt() -> Any:
        try:
            return create()
        except ApiError as exc:
            if exc.status == 403:
                return None
            raise

    return attempt


def test_sweep_previews_one_notebooks_objects_and_when_its_gone_creator_takes_them(
    control_plane: ControlPlane,
    kube_admin: k8s.ApiClient,
    notebook: Session,
    unbound: Session,
) -> None:
    namespace = notebook.namespace
    notebook.create(secret("s3-creds", namespace=namespace, type_="Opaque"))
    notebook.create(tfjob("mnist", namespace=namespace))
    unbound.create(secret("other", namespace=namespace, type_="Opaque"))
    request_json(
        kube_admin,
        "DELETE",
        f"/api/v1/namespaces/{namespace}/pods/alice-nb-0",
        query=[("gracePeriodSeconds", 0)],
    )

    def sweep(*extra: str) -> list[dict[str, Any]]:
        result = run_cli(
            "sweep",
            "--dry-run",
            "--namespace",
            namespace,
            "--output",
            "json",
            *extra,
            kubeconfig=control_plane.kubeconfig_path,
        )
        report: list[dict[str, Any]] = json.loads(result.stdout)
        return report

    everything = sweep()
    assert {e["name"] for e in everything} == {"s3-creds", "mnist", "other"}
    mine = {e["name"]: e for e in sweep("--notebook", "alice-nb", "--at", "+2h")}
    assert set(mine) == {"s3-creds", "mnist"}
    assert mine["s3-creds"]["notebook"] == "alice-nb"
    assert mine["s3-creds"]["profileOwner"] == PERSON
    assert mine["s3-creds"]["action"] == "delete"
    assert "creator Pod alice-nb-0 gone since" in mine["s3-creds"]["reason"]
    assert mine["mnist"]["action"] == "keep"
    assert sweep("--notebook", "nobody") == []
