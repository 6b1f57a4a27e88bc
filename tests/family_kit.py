"""Helpers for the tier-3 tests of a kind family whose CRDs are `family-crd` rows of
hack/upstream.tsv: too big for every control plane's start, so the family's tests install them
on the session's control plane and remove them when they are done.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from kubernetes import client as k8s

from kaptain_warden.kube.client import get_json, request_json, resource_path
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.sweeper.loop import CycleReport
from kaptain_warden.testing.crds import install_crds
from kaptain_warden.testing.upstream import find_upstream
from polling import eventually
from sweeper_kit import now, sweeper

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
DAY = timedelta(days=1)


@contextmanager
def family_crds(api: k8s.ApiClient, module: str) -> Iterator[list[str]]:
    """The `family-crd` rows of Go module `module`, served until the block ends; then deleted,
    and waited for until the API server no longer knows them (a later module sees the session's
    control plane as it was)."""
    manifests = find_upstream()
    rows = [r for r in manifests.rows if r.what == "family-crd" and r.module == module]
    assert rows, f"hack/upstream.tsv has no family-crd row of {module}"
    # Four big CRDs take a loaded API server ~30 s to serve.
    names = install_crds(api, crd_dir=[manifests.location(r) for r in rows], timeout=300)
    try:
        yield names
    finally:
        for name in names:
            request_json(api, "DELETE", f"{CRDS}/{name}")
        for name in names:
            eventually(lambda name=name: _gone(api, f"{CRDS}/{name}"), f"CRD {name} gone", 120)


def _gone(api: k8s.ApiClient, path: str) -> bool:
    try:
        get_json(api, path)
    except ApiError as exc:
        if exc.status == 404:
            return True
        raise
    return False


def grant_controller(
    api: k8s.ApiClient, namespace: str, user: str, group: str, resources: list[str]
) -> None:
    """Let `user` (a controller's identity) do anything with `resources` of `group` in
    `namespace`, and read its other kinds there (the parents it names)."""
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    name = f"controller-{group}"
    request_json(
        api,
        "POST",
        f"{rbac}/roles",
        body={
            "metadata": {"name": name},
            "rules": [{"apiGroups": [group], "resources": resources, "verbs": ["*"]}],
        },
    )
    request_json(
        api,
        "POST",
        f"{rbac}/rolebindings",
        body={
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )


def path(api_version: str, resource: str, namespace: str, name: str | None = None) -> str:
    """The REST path of a namespaced custom resource (or of its collection)."""
    group, _, version = api_version.rpartition("/")
    return resource_path(
        group=group, version=version, resource=resource, namespace=namespace, name=name
    )


def post(api: k8s.ApiClient, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
    """POST `obj` to `collection`; the object as the API server stored it."""
    created: dict[str, Any] = request_json(api, "POST", collection, body=obj)
    return created


def write_status(api: k8s.ApiClient, obj_path: str, status: dict[str, Any]) -> dict[str, Any]:
    """Replace the status through the status subresource, as the operators do (controller-
    runtime's `Status().Update`: the whole object, `null` for an unset `metav1.Time`); no
    operator runs here and `api` is privileged. Returns the object as stored."""
    obj = get_json(api, obj_path)
    obj["status"] = status
    stored: dict[str, Any] = request_json(api, "PUT", f"{obj_path}/status", body=obj)
    return stored


def assert_kept_as_written(stored: dict[str, Any], status: dict[str, Any]) -> None:
    """The upstream CRD's schema kept every status field written (a field it does not know
    would be pruned silently, and the test would read a shape no controller can write)."""
    assert _canonical(stored["status"]) == _canonical(status), (stored["status"], status)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def sweep_at(api: k8s.ApiClient, namespace: str, at: datetime, *, dry_run: bool) -> CycleReport:
    """One sweep of `namespace` with the built-in policy, as if the clock showed `at`."""
    return sweeper(api, load_policy(), namespace, dry_run=dry_run).run_once(now=at)


def decisions(report: CycleReport) -> dict[str, tuple[str, str]]:
    """`Kind/name` -> (action, reason) of every object the pass decided about."""
    return {f"{e.kind}/{e.name}": (e.action, e.reason) for e in report.entries}


def later(days: float) -> datetime:
    """`days` from now (whole seconds, like the warden's timestamps)."""
    return now() + days * DAY
