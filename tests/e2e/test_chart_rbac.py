"""Tier 3: the chart's ServiceAccounts can do their job and nothing else, on a real API server.

The chart is installed with `helm install`; every answer comes from the API server's RBAC
authorizer (SubjectAccessReviews for the ServiceAccounts' identities), and a few real requests
made while impersonating them confirm that the reviews mean what they say.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from helm_chart import CHART, run_helm
from kaptain_warden.kube.client import METADATA_LIST_ONLY, request_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.testing.controlplane import ControlPlane

pytestmark = pytest.mark.e2e

POLICY = load_policy()
GOVERNED = [(k.group, k.resource) for k in POLICY.kinds]
PARENTS = [
    *(gr for gr in GOVERNED if gr != ("", "secrets")),
    ("kubeflow.org", "trials"),
    ("", "namespaces"),
]
NEVER_DELETED_BY_THE_WEBHOOK = [
    *GOVERNED,
    ("", "pods"),
    ("", "namespaces"),
    ("apps", "deployments"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
]
OTHER_NAMESPACE = "team-a"


class Installed:
    """The default chart, installed by helm into its own namespace."""

    def __init__(self, control_plane: ControlPlane, namespace: str, release: str) -> None:
        self.control_plane = control_plane
        self.namespace = namespace
        self.fullname = f"{release}-kaptain-warden"

    def identity(self, component: str) -> tuple[str, list[str]]:
        ns = self.namespace
        return (
            f"system:serviceaccount:{ns}:{self.fullname}-{component}",
            ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
        )

    def allowed(
        self,
        component: str,
        verb: str,
        group: str,
        resource: str,
        *,
        namespace: str | None = None,
        name: str | None = None,
    ) -> bool:
        user, groups = self.identity(component)
        attributes: dict[str, Any] = {"verb": verb, "group": group, "resource": resource}
        if namespace is not None:
            attributes["namespace"] = namespace
        if name is not None:
            attributes["name"] = name
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": groups, "resourceAttributes": attributes},
        }
        with self.control_plane.api_client() as admin:
            answer = request_json(
                admin, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review
            )
        return bool(answer["status"].get("allowed"))


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane) -> Iterator[Installed]:
    namespace = f"kw-rbac-{uuid.uuid4().hex[:6]}"
    release = f"rb{uuid.uuid4().hex[:6]}"
    kubeconfig = f"--kubeconfig={control_plane.kubeconfig_path}"
    run_helm(
        "install", release, str(CHART), "--namespace", namespace, "--create-namespace", kubeconfig
    )
    yield Installed(control_plane, namespace, release)
    run_helm("uninstall", release, "--namespace", namespace, "--no-hooks", kubeconfig, check=False)
    control_plane.run_kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# ---- the sweeper ---------------------------------------------------------------------------


@pytest.mark.parametrize(("group", "resource"), GOVERNED)
def test_sweeper_lists_everywhere_and_deletes_each_governed_kind(installed, group, resource):
    assert installed.allowed("sweeper", "list", group, resource)
    assert installed.allowed("sweeper", "delete", group, resource, namespace=OTHER_NAMESPACE)
    # Backfill is on by default: it patches the warden's metadata onto what the webhook missed
    # (a merge patch), and never updates a whole object.
    assert installed.allowed("sweeper", "patch", group, resource, namespace=OTHER_NAMESPACE)
    assert not installed.allowed("sweeper", "update", group, resource, namespace=OTHER_NAMESPACE)


def test_sweeper_reads_what_backfill_attributes_an_owner_from(installed):
    assert installed.allowed("sweeper", "get", "", "namespaces")
    assert installed.allowed("sweeper", "get", "kubeflow.org", "profiles", name="team-a")
    # When the webhook was registered, and nothing else of admission registration.
    webhook = "admissionregistration.k8s.io"
    assert installed.allowed(
        "sweeper", "get", webhook, "mutatingwebhookconfigurations", name=installed.fullname
    )
    assert not installed.allowed(
        "sweeper", "get", webhook, "mutatingwebhookconfigurations", name="someone-elses"
    )
    assert not installed.allowed("sweeper", "update", "", "namespaces", name="team-a")


@pytest.mark.parametrize(
    ("verb", "group", "resource"),
    [
        ("list", "", "pods"),  # in-use protection: Secrets a live workload references
        ("list", "", "serviceaccounts"),
        ("list", "apps", "deployments"),
        ("list", "batch", "cronjobs"),
        ("get", "serving.knative.dev", "configurations"),  # latest ready revision
        ("get", "serving.kserve.io", "inferenceservices"),  # status.components
        ("create", "events.k8s.io", "events"),  # one Event per deletion
    ],
)
def test_sweeper_reads_what_in_use_protection_needs_and_records_events(
    installed, verb, group, resource
):
    assert installed.allowed("sweeper", verb, group, resource, namespace=OTHER_NAMESPACE)


@pytest.mark.parametrize(
    ("verb", "group", "resource", "namespace"),
    [
        ("delete", "apps", "deployments", OTHER_NAMESPACE),
        ("patch", "apps", "deployments", OTHER_NAMESPACE),
        ("create", "apps", "deployments", OTHER_NAMESPACE),
        ("delete", "", "pods", OTHER_NAMESPACE),
        ("get", "", "secrets", OTHER_NAMESPACE),  # lists metadata; never reads one by name
        ("delete", "", "namespaces", None),
        ("list", "", "nodes", None),
        ("create", "rbac.authorization.k8s.io", "clusterrolebindings", None),
        ("patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", None),
        ("impersonate", "", "users", None),
        ("create", "", "events", OTHER_NAMESPACE),  # only the events.k8s.io API
        ("create", "coordination.k8s.io", "leases", OTHER_NAMESPACE),
        ("list", "coordination.k8s.io", "leases", None),
    ],
)
def test_sweeper_cannot_touch_what_it_does_not_need(installed, verb, group, resource, namespace):
    assert not installed.allowed("sweeper", verb, group, resource, namespace=namespace)


def test_sweeper_renews_only_its_own_lease(installed):
    own = f"{installed.fullname}-sweeper"
    ns = installed.namespace
    for verb in ("get", "update"):
        assert installed.allowed(
            "sweeper", verb, "coordination.k8s.io", "leases", namespace=ns, name=own
        )
        assert not installed.allowed(
            "sweeper", verb, "coordination.k8s.io", "leases", namespace=ns, name="someone-elses"
        )
    assert installed.allowed("sweeper", "create", "coordination.k8s.io", "leases", namespace=ns)
    assert not installed.allowed(
        "sweeper", "delete", "coordination.k8s.io", "leases", namespace=ns, name=own
    )


def lease(name: str, holder: str) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": now},
    }


def test_real_requests_as_the_sweeper_match_the_reviews(installed, kube_admin):
    """Create and renew its Lease, list Secrets' metadata; another Lease and Deployments: 403."""
    ns = installed.namespace
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
    own = f"{installed.fullname}-sweeper"
    request_json(kube_admin, "POST", leases, body=lease("someone-elses", "them"))
    user, groups = installed.identity("sweeper")
    with installed.control_plane.impersonating_api_client(user, groups) as sweeper:
        created = request_json(sweeper, "POST", leases, body=lease(own, "me"))
        created["spec"]["renewTime"] = lease(own, "me")["spec"]["renewTime"]
        request_json(sweeper, "PUT", f"{leases}/{own}", body=created)
        secrets = request_json(sweeper, "GET", "/api/v1/secrets", accept=METADATA_LIST_ONLY)
        assert secrets["kind"] == "PartialObjectMetadataList"
        for method, path, body in (
            ("GET", f"{leases}/someone-elses", None),
            ("PUT", f"{leases}/someone-elses", lease("someone-elses", "me")),
            (
                "DELETE",
                f"/apis/apps/v1/namespaces/{ns}/deployments/{installed.fullname}-webhook",
                None,
            ),
        ):
            with pytest.raises(ApiError) as denied:
                request_json(sweeper, method, path, body=body)
            assert denied.value.status == 403, (method, path)


# ---- the webhook ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "resource"),
    PARENTS,
)
def test_webhook_reads_the_parents_it_inherits_owners_from(installed, group, resource):
    namespace = None if resource == "namespaces" else OTHER_NAMESPACE
    for verb in ("get", "list", "watch"):
        assert installed.allowed("webhook", verb, group, resource, namespace=namespace)


@pytest.mark.parametrize(
    ("group", "resource", "namespaced"),
    [("", "pods", True), ("apps", "statefulsets", True), ("kubeflow.org", "profiles", False)],
)
def test_webhook_gets_provenance_objects_by_name_and_lists_none(
    installed, group, resource, namespaced
):
    namespace = OTHER_NAMESPACE if namespaced else None
    assert installed.allowed("webhook", "get", group, resource, namespace=namespace, name="x")
    for verb in ("list", "watch", "update", "patch", "create"):
        assert not installed.allowed("webhook", verb, group, resource, namespace=namespace)


@pytest.mark.parametrize(
    ("group", "resource"),
    NEVER_DELETED_BY_THE_WEBHOOK,
)
def test_webhook_cannot_delete_anything(installed, group, resource):
    for namespace in (None, OTHER_NAMESPACE, installed.namespace):
        for verb in ("delete", "deletecollection"):
            assert not installed.allowed(
                "webhook", verb, group, resource, namespace=namespace, name=installed.fullname
            )
            assert not installed.allowed("webhook", verb, group, resource, namespace=namespace)


@pytest.mark.parametrize(
    "resource", ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"]
)
def test_webhook_patches_only_its_own_webhook_configurations(installed, resource):
    group = "admissionregistration.k8s.io"
    own = installed.fullname
    for verb in ("get", "patch"):
        assert installed.allowed("webhook", verb, group, resource, name=own)
        assert not installed.allowed("webhook", verb, group, resource, name="another-webhook")
    for verb in ("update", "create", "list"):
        assert not installed.allowed("webhook", verb, group, resource, name=own)


def test_webhook_reads_and_updates_only_its_own_certificate_secret(installed):
    ns, own = installed.namespace, f"{installed.fullname}-webhook-tls"
    for verb in ("get", "update"):
        assert installed.allowed("webhook", verb, "", "secrets", namespace=ns, name=own)
        assert not installed.allowed("webhook", verb, "", "secrets", namespace=ns, name="other")
        assert not installed.allowed(
            "webhook", verb, "", "secrets", namespace=OTHER_NAMESPACE, name=own
        )
    for verb in ("list", "watch", "create", "patch"):
        assert not installed.allowed("webhook", verb, "", "secrets", namespace=ns)
    for group, resource in GOVERNED:
        for verb in ("create", "update", "patch"):
            assert not installed.allowed(
                "webhook", verb, group, resource, namespace=OTHER_NAMESPACE
            )


# ---- the sweeper confined to some namespaces -------------------------------------------------


@pytest.fixture(scope="module")
def confined(control_plane: ControlPlane) -> Iterator[Installed]:
    """The chart with sweeper.namespaces=[team-a]: nothing of the sweeper's is cluster-wide."""
    namespace = f"kw-conf-{uuid.uuid4().hex[:6]}"
    release = f"cf{uuid.uuid4().hex[:6]}"
    kubeconfig = f"--kubeconfig={control_plane.kubeconfig_path}"
    control_plane.run_kubectl("create", "namespace", OTHER_NAMESPACE, check=False)
    run_helm(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        "--set",
        f"sweeper.namespaces={{{OTHER_NAMESPACE}}}",
        kubeconfig,
    )
    yield Installed(control_plane, namespace, release)
    run_helm("uninstall", release, "--namespace", namespace, "--no-hooks", kubeconfig, check=False)
    control_plane.run_kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.mark.parametrize(("group", "resource"), GOVERNED)
def test_a_confined_sweeper_has_no_cluster_wide_permission(confined, group, resource):
    """With sweeper.namespaces set, `secrets: list` was still bound cluster-wide: a list returns
    Secret data, so the sweeper's token could read kube-system's Secrets."""
    assert confined.allowed("sweeper", "list", group, resource, namespace=OTHER_NAMESPACE)
    assert confined.allowed("sweeper", "delete", group, resource, namespace=OTHER_NAMESPACE)
    for elsewhere in ("kube-system", "default", None):
        assert not confined.allowed("sweeper", "list", group, resource, namespace=elsewhere)
        assert not confined.allowed("sweeper", "delete", group, resource, namespace=elsewhere)
    assert not confined.allowed("sweeper", "list", "", "pods", namespace="kube-system")
    assert confined.allowed("sweeper", "list", "", "pods", namespace=OTHER_NAMESPACE)
