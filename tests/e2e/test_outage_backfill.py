"""Tier 3: an admission server killed under a create load (chart defaults: failurePolicy Ignore,
the default policy) loses nothing: backfill stamps every Secret admitted meanwhile with the
attributed owner, and none is due before a full TTL counted from the stamp."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from kaptain_warden.kube.client import request_json
from kaptain_warden.policies.timestamps import format_time, parse_time
from kaptain_warden.testing.load import SecretLoad
from kaptain_warden.testing.profiles import create_owned_profile, install_profile_crd
from kaptain_warden.testing.stack import WardenStack, notebook_user
from kaptain_warden.webhook.metrics import METRICS_DIR_PREFIX
from polling import eventually
from sweeper_kit import P, create, now, run_cli

pytestmark = pytest.mark.e2e

OWNER = "alice@example.com"  # the Profile's owner
TTL = timedelta(hours=24)  # credentials-secrets in the default policy


def metrics_dirs(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"{METRICS_DIR_PREFIX}{pid}-*"))


def secrets(kube_admin, namespace: str) -> dict[str, dict]:
    listed = request_json(kube_admin, "GET", f"/api/v1/namespaces/{namespace}/secrets")
    return {s["metadata"]["name"]: s["metadata"] for s in listed["items"]}


def test_an_outage_loses_nothing(control_plane, kube_admin):
    namespace = f"outage-{uuid.uuid4().hex[:6]}"
    install_profile_crd(kube_admin)
    create_owned_profile(kube_admin, namespace, OWNER)
    # Made before the warden was installed: not something the webhook missed.
    before = create(
        kube_admin,
        namespace,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "before-install"}},
    )
    created = parse_time(before["metadata"]["creationTimestamp"])
    assert created is not None
    # creationTimestamp has whole seconds: the webhook configuration must come a second later.
    eventually(lambda: now() > created, "the next second")

    name = f"warden-{uuid.uuid4().hex[:6]}"
    user = notebook_user(namespace)
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
    with WardenStack(control_plane, failure_policy="Ignore", name=name) as stack:
        with SecretLoad(control_plane, namespace=namespace, user=user, groups=groups) as load:
            eventually(lambda: sum(r.stamped for r in load.results) >= 10, "stamped creates")
            killed = stack.kill_server()
            killed_at = time.monotonic()
            assert metrics_dirs(killed), "a killed server leaves its metrics directory behind"
            eventually(
                lambda: load.results[-1].sent_at - killed_at >= 3.0,
                "three seconds of creates with the server dead",
            )
            stack.start_server()
            assert metrics_dirs(killed) == [], "the next server removes the dead one's directory"
            restarted = len(load.results)
            eventually(
                lambda: sum(r.stamped for r in load.results[restarted:]) >= 10,
                "stamped creates after the restart",
            )
        results = load.results
        # Under failurePolicy Ignore no create failed, and the outage was real.
        assert [r for r in results if not r.ok] == []
        missed = {r.name for r in results if not r.stamped}
        stamped = {r.name for r in results if r.stamped}
        assert len(missed) >= 20, "creates admitted unstamped while the server was dead"

        # The chart's sweeper: backfill of what the webhook missed, then a real pass.
        began = now()
        swept = run_cli(
            "sweep",
            "--backfill",
            "--backfill-since-webhook",
            name,
            "--namespace",
            namespace,
            "--output",
            "json",
            kubeconfig=control_plane.kubeconfig_path,
        )
        ended = now()
        assert not [e for e in json.loads(swept.stdout) if e["outcome"] is not None]

        found = secrets(kube_admin, namespace)
        assert set(found) >= missed | stamped, "nothing was deleted"
        stamps = set()
        for secret in missed:
            labels, annotations = found[secret]["labels"], found[secret]["annotations"]
            assert labels[f"{P}/managed"] == "true", secret
            assert labels[f"{P}/rule"] == "credentials-secrets"
            assert annotations[f"{P}/owner"] == OWNER
            stamp = parse_time(annotations[f"{P}/backfilled-at"])
            assert stamp is not None and began <= stamp <= ended
            assert annotations[f"{P}/created-at"] == annotations[f"{P}/backfilled-at"]
            assert parse_time(annotations[f"{P}/expires-at"]) == stamp + TTL
            stamps.add(stamp)
        for secret in stamped:
            annotations = found[secret]["annotations"]
            assert annotations[f"{P}/owner"] == user
            assert f"{P}/backfilled-at" not in annotations
        assert f"{P}/managed" not in (found["before-install"].get("labels") or {})

        # None is due before a full TTL from the stamp; every one is right after.
        (stamp,) = stamps
        for at, due in ((stamp + TTL - timedelta(seconds=1), False), (stamp + TTL, True)):
            preview = run_cli(
                "sweep",
                "--dry-run",
                "--at",
                format_time(at),
                "--namespace",
                namespace,
                "--output",
                "json",
                kubeconfig=control_plane.kubeconfig_path,
            )
            decided = {e["name"]: e["action"] for e in json.loads(preview.stdout)}
            assert {decided[s] for s in missed} == {"delete" if due else "keep"}, at


def managers(kube_admin, namespace: str, name: str) -> list[str]:
    secret = request_json(kube_admin, "GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    return [entry.get("manager", "") for entry in secret["metadata"].get("managedFields", [])]


def test_managed_fields_name_the_client_not_who_made_it(control_plane, kube_admin):
    """Why backfill does not attribute from `managedFields`: the manager is the client's name
    (from its User-Agent, or `fieldManager`, which any client sets to anything), the same for
    a notebook and for a person; the identity is recorded nowhere in the object."""
    namespace = f"managers-{uuid.uuid4().hex[:6]}"
    install_profile_crd(kube_admin)
    create_owned_profile(kube_admin, namespace, OWNER)
    notebook = notebook_user(namespace)
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
    path = f"/api/v1/namespaces/{namespace}/secrets"
    # The Python client the Kubeflow SDKs use, as the notebook and as the Profile's owner.
    with control_plane.impersonating_api_client(notebook, groups) as client:
        request_json(client, "POST", path, body={"metadata": {"name": "by-notebook"}})
    with control_plane.impersonating_api_client(OWNER, ("system:masters",)) as client:
        request_json(client, "POST", path, body={"metadata": {"name": "by-owner"}})
        request_json(
            client,
            "POST",
            path,
            query=[("fieldManager", "OpenAPI-Generator")],
            body={"metadata": {"name": "forged-manager"}},
        )
    control_plane.run_kubectl(
        "create", "secret", "generic", "by-kubectl", "-n", namespace, f"--as={notebook}"
    )
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "by-apply"}}
    control_plane.run_kubectl(
        "apply", "-n", namespace, f"--as={notebook}", "-f", "-", input=json.dumps(manifest)
    )

    python = managers(kube_admin, namespace, "by-notebook")
    assert len(python) == 1 and python[0].startswith("OpenAPI-Generator")
    # A person with the same client, and anyone naming that manager: indistinguishable.
    assert managers(kube_admin, namespace, "by-owner") == python
    assert managers(kube_admin, namespace, "forged-manager") == python
    assert managers(kube_admin, namespace, "by-kubectl") == ["kubectl-create"]
    assert managers(kube_admin, namespace, "by-apply") == ["kubectl-client-side-apply"]
    for name in ("by-notebook", "by-owner", "by-kubectl", "by-apply"):
        secret = request_json(kube_admin, "GET", f"{path}/{name}")["metadata"]
        assert notebook not in json.dumps(secret) and OWNER not in json.dumps(secret)
