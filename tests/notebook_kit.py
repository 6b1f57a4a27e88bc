"""Helpers for the tier-3 tests that drive the real SDKs and kubectl as a notebook."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from kubernetes import client as k8s

from kaptain_warden.kube.client import get_json, request_json
from kaptain_warden.policies.metadata import MetadataKeys
from kaptain_warden.policies.owner import owner_label_value
from kaptain_warden.policies.timestamps import format_time, parse_time
from kaptain_warden.testing.controlplane import ControlPlane
from sweeper_kit import run_cli

KEYS = MetadataKeys()
SYSTEM_LABELS = (KEYS.managed, KEYS.owner, KEYS.rule)
SYSTEM_ANNOTATIONS = (KEYS.owner, KEYS.created_at, KEYS.expires_at)


def warden_metadata(obj: dict[str, Any]) -> dict[str, str]:
    """Every warden label and annotation of `obj`, as `label:KEY` / `annotation:KEY`."""
    meta = obj["metadata"]
    found = {
        f"label:{key}": value
        for key, value in (meta.get("labels") or {}).items()
        if key.startswith(f"{KEYS.prefix}/")
    }
    found.update(
        (f"annotation:{key}", value)
        for key, value in (meta.get("annotations") or {}).items()
        if key.startswith(f"{KEYS.prefix}/")
    )
    return found


def assert_stamped(
    obj: dict[str, Any], *, rule: str, owner: str, not_before: datetime
) -> dict[str, str]:
    """`obj` carries the system keys the warden computes for `owner` under `rule`, created at
    or after `not_before`; returns its warden metadata for later comparison."""
    labels = obj["metadata"].get("labels") or {}
    annotations = obj["metadata"].get("annotations") or {}
    assert labels.get(KEYS.managed) == "true", labels
    assert labels.get(KEYS.rule) == rule, labels
    assert labels.get(KEYS.owner) == owner_label_value(owner), labels
    assert annotations.get(KEYS.owner) == owner, annotations
    created = parse_time(annotations.get(KEYS.created_at, ""))
    assert created is not None, annotations
    assert not_before - timedelta(seconds=1) <= created, (created, not_before)
    return warden_metadata(obj)


def expected_expiry(obj: dict[str, Any], ttl: timedelta) -> str:
    """`created-at + ttl`, written as the warden writes `expires-at`."""
    created = parse_time(obj["metadata"]["annotations"][KEYS.created_at])
    assert created is not None
    return format_time(created + ttl)


def read(api: k8s.ApiClient, path: str) -> dict[str, Any]:
    """GET one object as JSON."""
    obj: dict[str, Any] = get_json(api, path)
    return obj


def write_status(api: k8s.ApiClient, path: str, status: dict[str, Any]) -> None:
    """Merge `status` into the object at `path` through its status subresource, as its
    controller would (no controller runs in these tests; `api` is a privileged identity)."""
    request_json(
        api,
        "PATCH",
        f"{path}/status",
        body={"status": status},
        content_type="application/merge-patch+json",
    )


def sweep_preview(
    plane: ControlPlane, namespace: str, at: str | None = None
) -> dict[str, dict[str, Any]]:
    """`kaptain-warden sweep --dry-run --output json` (at `at`), entries by `Kind/name`."""
    args = ["sweep", "--dry-run", "--output", "json", "--namespace", namespace]
    if at is not None:
        args += ["--at", at]
    report = json.loads(run_cli(*args, kubeconfig=plane.kubeconfig_path).stdout)
    return {f"{entry['kind']}/{entry['name']}": entry for entry in report}


def actions(report: dict[str, dict[str, Any]]) -> dict[str, str]:
    """`Kind/name` -> `keep` or `delete`."""
    return {key: entry["action"] for key, entry in report.items()}
