"""Tier 3: what a tenant tries through the real API server, with the webhooks registered:
borrowing another namespace's owner through a parent reference, rewriting warden metadata
through a Job's status subresource, and rewriting it on create through a mutating webhook that
the API server calls after the warden's."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from kaptain_warden.kube.client import request_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.kinds.paths import json_pointer
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.stack import WardenStack, create_profile_namespace, notebook_user
from polling import eventually
from webhook_kit import LoopbackWebhook

pytestmark = pytest.mark.e2e

KEYS = MetadataKeys()
JOBS = "/apis/batch/v1/namespaces/{ns}/jobs"
STATUS_WRITER = "status-writer@example.com"


@pytest.fixture(scope="module")
def warden(control_plane: ControlPlane) -> Iterator[WardenStack]:
    with WardenStack(control_plane, failure_policy="Fail") as stack:
        yield stack


@pytest.fixture
def profile(warden: WardenStack, kube_admin: k8s.ApiClient) -> str:
    name = f"team-{uuid.uuid4().hex[:8]}"
    create_profile_namespace(kube_admin, name)
    return name


def job(name: str, **metadata: Any) -> dict[str, Any]:
    template = {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "r.example/x:1"}]}
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, **metadata},
        # Nobody runs these Jobs (KEP-4368): the job controller leaves their status to us.
        "spec": {"managedBy": "warden.kaptain.io/tests", "template": template},
    }


def test_an_owner_cannot_be_borrowed_from_another_namespace(
    control_plane, kube_admin, warden, profile
):
    """`ownerReferences[].name: x/../../../team-b/jobs/private` used to be normalised into a
    read of team-b's Job, and the new Job was stamped with team-b's owner."""
    other = f"team-b-{uuid.uuid4().hex[:8]}"
    create_profile_namespace(kube_admin, other)
    private = request_json(
        kube_admin,
        "POST",
        JOBS.format(ns=other),
        body=job("private", annotations={KEYS.owner: "bob@example.com"}),
    )
    assert private["metadata"]["annotations"][KEYS.owner] == "bob@example.com"
    reference = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": f"x/../../../{other}/jobs/private",
        "uid": private["metadata"]["uid"],
    }
    with control_plane.impersonating_api_client(notebook_user(profile)) as notebook:
        for dry_run in (True, False):  # a dry run was an existence oracle for other namespaces
            query = [("dryRun", "All")] if dry_run else []
            created = request_json(
                notebook,
                "POST",
                JOBS.format(ns=profile),
                body=job(f"borrower-{dry_run}".lower(), ownerReferences=[reference]),
                query=query,
            )
            assert created["metadata"]["annotations"][KEYS.owner] == notebook_user(profile)


def test_status_updates_cannot_rewrite_warden_metadata(control_plane, kube_admin, warden, profile):
    """An identity allowed only `jobs/status` changed a stamped Job's owner, managed label and
    keep annotation: for built-in kinds a status update carries metadata changes."""
    with control_plane.impersonating_api_client(notebook_user(profile)) as notebook:
        stamped = request_json(notebook, "POST", JOBS.format(ns=profile), body=job("trainer"))
    assert stamped["metadata"]["labels"][KEYS.managed] == "true"
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{profile}"
    rule = {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get", "patch"]}
    request_json(
        kube_admin, "POST", f"{rbac}/roles", body={"metadata": {"name": "st"}, "rules": [rule]}
    )
    request_json(
        kube_admin,
        "POST",
        f"{rbac}/rolebindings",
        body={
            "metadata": {"name": "st"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "st"},
            "subjects": [{"kind": "User", "name": STATUS_WRITER}],
        },
    )
    status_path = JOBS.format(ns=profile) + "/trainer/status"
    forged = {
        "metadata": {
            "labels": {KEYS.managed: "false"},
            "annotations": {KEYS.owner: STATUS_WRITER, KEYS.keep: "true"},
        }
    }
    with control_plane.impersonating_api_client(STATUS_WRITER) as writer:

        def may_read_status() -> bool:
            try:
                return bool(request_json(writer, "GET", status_path))
            except ApiError as exc:
                assert exc.status == 403, str(exc)
                return False

        eventually(may_read_status, "the status writer's RoleBinding to take effect")
        with pytest.raises(ApiError) as info:
            request_json(
                writer,
                "PATCH",
                status_path,
                body=forged,
                content_type="application/merge-patch+json",
            )
        assert info.value.status == 403, str(info.value)
        assert "warden.kaptain.io" in info.value.message
        # A status update that leaves warden metadata alone still goes through.
        request_json(
            writer,
            "PATCH",
            status_path,
            body={"status": {"active": 0}},
            content_type="application/merge-patch+json",
        )
    after = request_json(kube_admin, "GET", JOBS.format(ns=profile) + "/trainer")
    assert after["metadata"]["labels"][KEYS.managed] == "true"
    assert after["metadata"]["annotations"][KEYS.owner] == notebook_user(profile)
    assert KEYS.keep not in after["metadata"]["annotations"]


FORGED = "bob@example.com"


def _rewrite_owner(request: dict[str, Any]) -> dict[str, Any]:
    """Sets the owner annotation to `FORGED`, as a tenant's own mutation rule can (a namespaced
    Kyverno Policy in the tenant's namespace, say: it is the tenant's to write, and Kyverno's
    webhook applies it to every create there)."""
    owner = json_pointer("metadata", "annotations", KEYS.owner)
    patch = [{"op": "add", "path": owner, "value": FORGED}]
    encoded = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"allowed": True, "patchType": "JSONPatch", "patch": encoded}


@pytest.mark.parametrize("reinvocation", ["IfNeeded", "Never"])
def test_a_mutating_webhook_after_the_wardens_cannot_rewrite_the_owner_on_create(
    control_plane: ControlPlane,
    kube_admin: k8s.ApiClient,
    warden: WardenStack,
    profile: str,
    reinvocation: str,
) -> None:
    """Mutating webhooks run in the order of their configurations' names, and the API server
    reinvokes each `IfNeeded` webhook at most once. A mutator named after the warden's that is
    itself reinvoked has the last word on the object: only the validating webhook, which sees
    the object after every mutation, stops its owner from landing. This is why the validating
    webhook is called on every create, not only on updates. A mutator that is not reinvoked is
    undone by the warden's own reinvocation."""
    name = f"zz-tenant-mutator-{profile}"  # sorts after the warden's configuration
    assert name > warden.name
    configurations = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    secrets = f"/api/v1/namespaces/{profile}/secrets"
    rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"]}
    with LoopbackWebhook(control_plane, _rewrite_owner) as rewriter:
        mutator = {
            "name": "rewrite-owner.tenant.example.com",
            "clientConfig": rewriter.client_config("/mutate"),
            "rules": [{**rule, "resources": ["secrets"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": profile}},
            "reinvocationPolicy": reinvocation,
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
        }
        body = {"metadata": {"name": name}, "webhooks": [mutator]}
        request_json(kube_admin, "POST", configurations, body=body)
        try:
            with control_plane.impersonating_api_client(notebook_user(profile)) as notebook:

                def rewriter_called() -> bool:
                    probe = {"metadata": {"generateName": "probe-"}}
                    dry_run = [("dryRun", "All")]
                    with contextlib.suppress(ApiError):  # denied once the rewriter is in effect
                        request_json(notebook, "POST", secrets, query=dry_run, body=probe)
                    return rewriter.calls > 0

                eventually(rewriter_called, "the tenant's mutating webhook to take effect")
                rewriter.calls = 0
                secret = {"metadata": {"name": "creds"}, "stringData": {"token": "t"}}
                if reinvocation == "IfNeeded":
                    with pytest.raises(ApiError) as info:
                        request_json(notebook, "POST", secrets, body=secret)
                    assert info.value.status == 403, str(info.value)
                    assert "validate.warden.kaptain.io" in info.value.message
                    assert KEYS.owner in info.value.message and FORGED in info.value.message
                    with pytest.raises(ApiError) as missing:
                        request_json(kube_admin, "GET", f"{secrets}/creds")
                    assert missing.value.status == 404
                else:
                    created = request_json(notebook, "POST", secrets, body=secret)
                    owner = created["metadata"]["annotations"][KEYS.owner]
                    assert owner == notebook_user(profile)
                # Called once, and once more after the warden's reinvocation undid its change.
                assert rewriter.calls == (2 if reinvocation == "IfNeeded" else 1)
        finally:
            request_json(kube_admin, "DELETE", f"{configurations}/{name}")
