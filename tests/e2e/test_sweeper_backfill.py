"""Tier 3: --backfill stamps governed objects made before the install, owner inferred."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml

from kaptain_warden.policies.loader import load_policy_text
from kaptain_warden.policies.timestamps import parse_time
from sweeper_kit import P, create, exists, now, policy_document, run_cli, sweeper

pytestmark = pytest.mark.e2e

NOTEBOOK = "system:serviceaccount:team-a:default-editor"


def backfill_policy() -> dict:
    """The built-in rules, plus one for registry Secrets that matches whoever made them."""
    document = policy_document()
    document["rules"].insert(
        0,
        {
            "id": "registry-secrets",
            "match": {
                "kinds": [{"apiVersion": "v1", "kind": "Secret"}],
                "secretTypes": ["kubernetes.io/dockerconfigjson"],
                "inherit": False,
            },
            "ttl": "24h",
        },
    )
    return document


def unstamped(namespace: str) -> dict[str, dict]:
    container = {"name": "c", "image": "registry.example/model:1"}
    return {
        # No rule matches an Opaque Secret of an unknown creator: it stays unstamped.
        "opaque": {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "opaque"},
            "type": "Opaque",
            "stringData": {"k": "v"},
        },
        # registry-secrets matches any creator, by type; the owner is unknown.
        "registry": {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "registry"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": '{"auths": {}}'},
        },
        # Knative records who made it: that is the requester the rules match on.
        "ksvc": {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {
                "name": "ksvc",
                "annotations": {"serving.knative.dev/creator": NOTEBOOK, f"{P}/ttl": "2h"},
            },
            "spec": {"template": {"spec": {"containers": [container]}}},
        },
        # Nobody known made this Job: build-jobs only governs the notebook's.
        "job": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "job"},
            "spec": {
                "managedBy": "warden.kaptain.io/tests",
                "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
            },
        },
    }


def test_backfill_stamps_what_a_rule_governs_and_nothing_else(
    control_plane, kube_admin, namespace, tmp_path
):
    objects = {
        name: create(kube_admin, namespace, obj) for name, obj in unstamped(namespace).items()
    }
    # A managed parent (stamped by the webhook at the time) and its controller-made child.
    parent = create(
        kube_admin,
        namespace,
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Configuration",
            "metadata": {
                "name": "cfg",
                "labels": {
                    f"{P}/managed": "true",
                    f"{P}/rule": "knative-serving",
                    f"{P}/owner": "alice",
                },
                "annotations": {f"{P}/owner": "alice@example.com"},
            },
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}},
        },
    )
    objects["revision"] = create(
        kube_admin,
        namespace,
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Revision",
            "metadata": {
                "name": "cfg-00001",
                "labels": {"serving.knative.dev/configuration": "cfg"},
                "ownerReferences": [
                    {
                        "apiVersion": "serving.knative.dev/v1",
                        "kind": "Configuration",
                        "name": "cfg",
                        "uid": parent["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    )
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(backfill_policy()))

    # Dry run: says what it would stamp, patches nothing.
    dry = run_cli(
        "sweep",
        "--dry-run",
        "--backfill",
        "--namespace",
        namespace,
        "--policy",
        str(policy_file),
        "--output",
        "json",
        kubeconfig=control_plane.kubeconfig_path,
    )
    would = {e["name"]: e for e in json.loads(dry.stdout) if e["reason"].startswith("unmanaged")}
    assert set(would) == {"registry", "ksvc", "cfg-00001"}
    assert (would["registry"]["owner"], would["registry"]["rule"]) == (
        "unknown",
        "registry-secrets",
    )
    assert would["ksvc"]["owner"] == NOTEBOOK
    assert would["cfg-00001"]["owner"] == "alice@example.com"
    for name, obj in objects.items():
        labels = exists(kube_admin, namespace, obj)["metadata"].get("labels") or {}
        assert f"{P}/managed" not in labels, name

    # For real, as the (privileged) sweeper.
    policy = load_policy_text(yaml.safe_dump(backfill_policy()))
    t = now()
    report = sweeper(kube_admin, policy, namespace, backfill=True).run_once(now=t)
    assert report.backfilled == 3
    stamped = {
        name: exists(kube_admin, namespace, obj)["metadata"] for name, obj in objects.items()
    }
    for name in ("opaque", "job"):
        assert f"{P}/managed" not in (stamped[name].get("labels") or {}), name
    expected = {
        "registry": ("registry-secrets", "unknown"),
        "ksvc": ("knative-serving", NOTEBOOK),
        "revision": ("knative-revisions", "alice@example.com"),
    }
    for name, (rule, owner) in expected.items():
        labels, annotations = stamped[name]["labels"], stamped[name]["annotations"]
        assert labels[f"{P}/managed"] == "true"
        assert labels[f"{P}/rule"] == rule
        assert annotations[f"{P}/owner"] == owner
        assert parse_time(annotations[f"{P}/created-at"]) is not None
    # A valid user-set ttl is honoured, and counted from the stamp: the owner sees it from now.
    assert stamped["ksvc"]["annotations"][f"{P}/ttl"] == "2h"
    expires = parse_time(stamped["ksvc"]["annotations"][f"{P}/expires-at"])
    assert expires is not None and timedelta(0) <= expires - (t + timedelta(hours=2)) < timedelta(
        seconds=2
    )
    # The same pass lists them as managed, and nothing stamped just now is due.
    decided = {e.name: e for e in report.entries}
    assert decided["registry"].action == decided["ksvc"].action == "keep"
    assert report.deletion.attempted == 0

    # Idempotent: a second backfill finds nothing left to stamp.
    again = sweeper(kube_admin, policy, namespace, backfill=True).run_once(now=now())
    assert again.backfilled == 0
