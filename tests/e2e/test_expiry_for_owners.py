"""Tier 3: what owners see before a deletion — warnings, `kaptain-warden ls` and `extend`.

Objects are created by a notebook's ServiceAccount (a real token, as a notebook Pod has)
through the real webhooks. The sweepers run as their own ServiceAccount with the chart's RBAC
and write `warned-at` through the validating webhook, which lets only that privileged identity
do it. `ls` and `extend` run as the notebook, with only its namespace's rights.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from e2e.test_sweeper_leader import SweeperProcess
from kaptain_warden.install.rbac import sweeper_cluster_rules
from kaptain_warden.kube.client import request_json
from kaptain_warden.policies.kinds import ALL_KINDS
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.policies.timestamps import parse_time
from kaptain_warden.sweeper.metrics import SweeperMetrics
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.stack import WardenStack, create_profile_namespace
from polling import eventually
from sweeper_kit import build_world, log_lines, now, policy_document, policy_for_tests, sweeper
from tokens import service_account_kubeconfig

pytestmark = pytest.mark.e2e

P = "warden.kaptain.io"
SWEEPER_NAMESPACE = "warden-sweepers"
SWEEPER_SA = "warnings-sweeper"
SWEEPER_USER = f"system:serviceaccount:{SWEEPER_NAMESPACE}:{SWEEPER_SA}"
RETENTION_POLICY = policy_for_tests()


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in policy, Secrets warned 2h ahead, the test sweeper as privileged identity."""
    document = policy_document(
        settings={"privileged": {"users": [SWEEPER_USER], "groups": ["system:masters"]}}
    )
    for rule in document["rules"]:
        if rule["id"] == "credentials-secrets":
            rule["warnBefore"] = "2h"
    path = tmp_path_factory.mktemp("warnings") / "policy.yaml"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture(scope="module")
def warden(control_plane: ControlPlane, policy_path: Path) -> Iterator[WardenStack]:
    with WardenStack(
        control_plane, policy_path=policy_path, failure_policy="Fail", name="warnings-e2e"
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def sweeper_kubeconfig(
    control_plane: ControlPlane,
    kube_admin: k8s.ApiClient,
    policy_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """A real token of the sweeper's ServiceAccount, bound to exactly the chart's rules."""
    core = k8s.CoreV1Api(kube_admin)
    try:
        core.create_namespace({"metadata": {"name": SWEEPER_NAMESPACE}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    rbac = k8s.RbacAuthorizationV1Api(kube_admin)
    rbac.create_cluster_role(
        {
            "metadata": {"name": SWEEPER_SA},
            "rules": sweeper_cluster_rules(load_policy(policy_path)),
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": SWEEPER_SA},
            "subjects": [
                {"kind": "ServiceAccount", "name": SWEEPER_SA, "namespace": SWEEPER_NAMESPACE}
            ],
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": SWEEPER_SA,
            },
        }
    )
    path = tmp_path_factory.mktemp("sweeper") / "kubeconfig"
    yield service_account_kubeconfig(
        control_plane, kube_admin, namespace=SWEEPER_NAMESPACE, name=SWEEPER_SA, path=path
    )
    rbac.delete_cluster_role_binding(SWEEPER_SA)
    rbac.delete_cluster_role(SWEEPER_SA)


def secret(name: str, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "annotations": {f"{P}/{k}": v for k, v in annotations.items()}},
        "type": "Opaque",
        "stringData": {"key": "value"},
    }


def kubectl_as(plane: ControlPlane, kubeconfig: Path, *args: str, stdin: str = "") -> Any:
    return subprocess.run(
        [str(plane.kubectl_path), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def warning_events(api: k8s.ApiClient, namespace: str) -> Counter[str]:
    events = request_json(api, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    return Counter(
        e["regarding"]["name"]
        for e in events["items"]
        if e["reason"] == "ExpiringSoon" and e["type"] == "Warning"
    )


def passes(process: SweeperProcess) -> int:
    return sum(
        1
        for line in log_lines(process.log_path.read_text())
        if str(line.get("msg", "")).startswith("sweep pass complete")
    )


def test_exactly_one_warning_per_object_across_two_replicas_and_a_restart(
    control_plane, kube_admin, warden, sweeper_kubeconfig, policy_path, tmp_path
):
    namespace = f"team-{uuid.uuid4().hex[:8]}"
    create_profile_namespace(kube_admin, namespace)
    notebook = service_account_kubeconfig(
        control_plane,
        kube_admin,
        namespace=namespace,
        name="default-editor",
        path=tmp_path / "notebook.kubeconfig",
    )
    # Made by the notebook with kubectl: a short TTL is inside the 2h window at creation,
    # and kubectl prints the admission warning with the expiry instant.
    made = {}
    for name, wanted in {
        "short-1": {"ttl": "1h"},
        "short-2": {"ttl": "90m"},
        "long": {"ttl": "30d"},
        "kept": {"ttl": "1h", "keep": "true"},
    }.items():
        made[name] = kubectl_as(
            control_plane,
            notebook,
            "create",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=json.dumps(secret(name, **wanted)),
        )
    for name in ("short-1", "short-2"):
        assert "Warning: kaptain-warden deletes this Secret at " in made[name].stderr, name
    assert "Warning:" not in made["long"].stderr + made["kept"].stderr

    # Both sweep at once (no leader election): only the warned-at claim keeps them apart.
    replicas = [
        SweeperProcess(
            f"replica-{i}",
            sweeper_kubeconfig,
            policy_path,
            namespace,
            tmp_path,
            "--no-leader-election",
        )
        for i in "ab"
    ]
    try:
        eventually(
            lambda: warning_events(kube_admin, namespace).keys() == {"short-1", "short-2"},
            "a warning for each object in its window",
        )
        marks = {r.identity: passes(r) for r in replicas}
        eventually(
            lambda: all(passes(r) >= marks[r.identity] + 3 for r in replicas),
            "three more passes of each replica",
        )
    finally:
        for replica in replicas:
            replica.stop()
    restarted = SweeperProcess(
        "replica-c", sweeper_kubeconfig, policy_path, namespace, tmp_path, "--no-leader-election"
    )
    try:
        eventually(lambda: passes(restarted) >= 3, "three passes after the restart")
    finally:
        restarted.stop()

    assert warning_events(kube_admin, namespace) == Counter({"short-1": 1, "short-2": 1})
    core = k8s.CoreV1Api(kube_admin)
    for name in ("short-1", "short-2"):
        annotations = core.read_namespaced_secret(name, namespace).metadata.annotations
        assert f"{P}/warned-at" in annotations
    for name in ("long", "kept"):
        assert f"{P}/warned-at" not in (
            core.read_namespaced_secret(name, namespace).metadata.annotations
        )
    note = next(
        e["note"]
        for e in request_json(
            kube_admin, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"
        )["items"]
        if e["reason"] == "ExpiringSoon" and e["regarding"]["name"] == "short-1"
    )
    assert f"{P}/ttl" in note and "30d" in note and f"{P}/keep=true" in note
    warned = sum(
        1
        for r in [*replicas, restarted]
        for line in log_lines(r.log_path.read_text())
        if str(line.get("msg", "")).startswith("warned the owner")
    )
    assert warned == 2


def test_the_notebook_cannot_forge_or_strip_warned_at(control_plane, kube_admin, warden, tmp_path):
    namespace, notebook = notebook_namespace(control_plane, kube_admin, tmp_path)
    # A forged warned-at on a new object would silence its warning: the mutator drops it.
    kubectl_as(
        control_plane,
        notebook,
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps(secret("forged", **{"warned-at": "2099-01-01T00:00:00Z"})),
    )
    stored = k8s.CoreV1Api(kube_admin).read_namespaced_secret("forged", namespace)
    assert f"{P}/warned-at" not in stored.metadata.annotations
    assert f"{P}/expires-at" in stored.metadata.annotations
    kubectl_as(
        control_plane,
        notebook,
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps(secret("plain")),
    )
    core = k8s.CoreV1Api(kube_admin)
    # Adding it to an existing object is a change of a system key: carried over, and said.
    added = kubectl_as(
        control_plane,
        notebook,
        "annotate",
        "-n",
        namespace,
        "secret/plain",
        f"{P}/warned-at=2099-01-01T00:00:00Z",
    )
    assert f"{P}/warned-at" in added.stderr  # kubectl prints the admission warning
    assert (
        f"{P}/warned-at" not in core.read_namespaced_secret("plain", namespace).metadata.annotations
    )
    # Written by a privileged identity (as the sweeper does), the owner cannot strip it.
    core.patch_namespaced_secret(
        "plain",
        namespace,
        {"metadata": {"annotations": {f"{P}/warned-at": "2026-01-01T00:00:00Z"}}},
    )
    kubectl_as(
        control_plane, notebook, "annotate", "-n", namespace, "secret/plain", f"{P}/warned-at-"
    )
    kept = core.read_namespaced_secret("plain", namespace).metadata.annotations
    assert kept[f"{P}/warned-at"] == "2026-01-01T00:00:00Z"


def notebook_namespace(control_plane, kube_admin, tmp_path) -> tuple[str, Path]:
    """A profile namespace, and a kubeconfig with its notebook ServiceAccount's token.

    Besides the SDK's kinds, the notebook may list the workloads that can hold a Secret, as
    Kubeflow's kubeflow-edit role lets it: `ls` asks what the sweeper asks before it calls a
    Secret due.
    """
    namespace = f"team-{uuid.uuid4().hex[:8]}"
    create_profile_namespace(kube_admin, namespace)
    rbac = k8s.RbacAuthorizationV1Api(kube_admin)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "workloads-view"},
            "rules": [
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"],
                    "verbs": ["list"],
                },
                {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["list"]},
                {"apiGroups": [""], "resources": ["replicationcontrollers"], "verbs": ["list"]},
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "workloads-view"},
            "subjects": [
                {"kind": "ServiceAccount", "name": "default-editor", "namespace": namespace}
            ],
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "workloads-view",
            },
        },
    )
    kubeconfig = service_account_kubeconfig(
        control_plane,
        kube_admin,
        namespace=namespace,
        name="default-editor",
        path=tmp_path / "notebook.kubeconfig",
    )
    return namespace, kubeconfig


def read_only_kubeconfig(
    control_plane: ControlPlane, kube_admin: k8s.ApiClient, namespace: str, tmp_path: Path
) -> Path:
    """A ServiceAccount token whose only rights are get and list in `namespace`."""
    rbac = k8s.RbacAuthorizationV1Api(kube_admin)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "viewer"},
            "rules": [
                {
                    # Every group the registry knows, as a profile's view role grants: a kind
                    # added to the registry is readable here without editing this test.
                    "apiGroups": sorted({kind.group for kind in ALL_KINDS}),
                    "resources": ["*"],
                    "verbs": ["get", "list"],
                }
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "viewer"},
            "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": namespace}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"},
        },
    )
    return service_account_kubeconfig(
        control_plane, kube_admin, namespace=namespace, name="viewer", path=tmp_path / "viewer"
    )


def warden_cli(
    *args: str, kubeconfig: Path, policy: Path, expect: int | None = 0
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaptain_warden.cli",
            *args,
            "--kubeconfig",
            str(kubeconfig),
            "--policy",
            str(policy),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if expect is not None:
        assert result.returncode == expect, result.stderr
    return result


def test_ls_shows_a_notebook_what_it_owns_soonest_first(
    control_plane, kube_admin, warden, policy_path, tmp_path
):
    namespace, notebook = notebook_namespace(control_plane, kube_admin, tmp_path)
    for name, wanted in {
        "s3-later": {"ttl": "30d"},
        "s3-soon": {"ttl": "1h"},
        "s3-kept": {"ttl": "1h", "keep": "true"},
        "s3-due": {"ttl": "1s"},
    }.items():
        kubectl_as(
            control_plane,
            notebook,
            "create",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=json.dumps(secret(name, **wanted)),
        )
    me = f"system:serviceaccount:{namespace}:default-editor"
    # `created-at` has whole seconds: s3-due is due only once its expires-at has passed, which
    # a quick `ls` can beat by up to a second. Wait for that instant, read from the object.
    due_at = parse_time(
        k8s.CoreV1Api(kube_admin)
        .read_namespaced_secret("s3-due", namespace)
        .metadata.annotations[f"{P}/expires-at"]
    )
    wait = (due_at - datetime.now(UTC)).total_seconds()
    if wait > 0:
        time.sleep(wait + 0.05)
    # The context's namespace is the notebook's: no -n needed.
    listed = json.loads(
        warden_cli("ls", "--output", "json", kubeconfig=notebook, policy=policy_path).stdout
    )
    assert [(e["name"], e["state"]) for e in listed] == [
        ("s3-due", "due"),
        ("s3-soon", "expiring"),
        ("s3-later", "live"),
        ("s3-kept", "kept"),
    ]
    assert {e["owner"] for e in listed} == {me}
    assert listed[0]["reason"].startswith("expired:")
    assert listed[1]["expiresAt"] is not None and listed[3]["expiresAt"] is None

    mine_soon = json.loads(
        warden_cli(
            "ls",
            "--owner",
            "me",
            "--expiring-within",
            "2h",
            "-o",
            "json",
            kubeconfig=notebook,
            policy=policy_path,
        ).stdout
    )
    assert [e["name"] for e in mine_soon] == ["s3-due", "s3-soon"]
    others = warden_cli(
        "ls", "--owner", "someone-else", kubeconfig=notebook, policy=policy_path
    ).stdout
    assert others.strip() == "(nothing governed matches)"
    table = warden_cli("ls", kubeconfig=notebook, policy=policy_path).stdout.splitlines()
    assert table[0].split() == [
        "KIND",
        "NAME",
        "OWNER",
        "NOTEBOOK",
        "PERSON",
        "RULE",
        "STATE",
        "EXPIRES",
        "REASON",
    ]
    assert [line.split()[1] for line in table[1:]] == ["s3-due", "s3-soon", "s3-later", "s3-kept"]
    # Read rights in the namespace are all it takes: a ServiceAccount that may only get and
    # list sees the same.
    viewer = read_only_kubeconfig(control_plane, kube_admin, namespace, tmp_path)
    viewed = json.loads(
        warden_cli("ls", "-o", "json", kubeconfig=viewer, policy=policy_path).stdout
    )
    # (Reasons say "18s ago": compare everything else.)
    assert [{k: v for k, v in e.items() if k != "reason"} for e in viewed] == [
        {k: v for k, v in e.items() if k != "reason"} for e in listed
    ]
    # Nothing was written: ls is the sweeper's dry run.
    assert warning_events(kube_admin, namespace) == Counter()

    # The gauges count the same states, per namespace and rule, with no per-object label.
    metrics = SweeperMetrics()
    sweeper(kube_admin, load_policy(policy_path), namespace, metrics, dry_run=True).run_once(
        now=datetime.now(UTC)
    )
    samples = {
        (s.labels["namespace"], s.labels["rule"], s.labels["state"]): s.value
        for family in metrics.registry.collect()
        if family.name == "kaptain_warden_sweeper_objects"
        for s in family.samples
    }
    assert samples == {
        (namespace, "credentials-secrets", state): 1.0
        for state in ("due", "expiring", "live", "kept")
    }


def test_extend_refuses_above_max_ttl_with_the_webhooks_own_message(
    control_plane, kube_admin, warden, policy_path, tmp_path
):
    namespace, notebook = notebook_namespace(control_plane, kube_admin, tmp_path)
    kubectl_as(
        control_plane,
        notebook,
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps(secret("creds", ttl="1h")),
    )
    before = k8s.CoreV1Api(kube_admin).read_namespaced_secret("creds", namespace)
    refused = warden_cli(
        "extend", "secret/creds", "--ttl", "40d", kubeconfig=notebook, policy=policy_path, expect=1
    )
    # The webhook says the same to anyone who asks for 40d.
    webhook = subprocess.run(
        [
            str(control_plane.kubectl_path),
            f"--kubeconfig={notebook}",
            "create",
            "-n",
            namespace,
            "-f",
            "-",
        ],
        input=json.dumps(secret("greedy", ttl="40d")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    message = (
        f'annotation {P}/ttl: "40d" is above the maximum of 30d that rule '
        '"credentials-secrets" allows'
    )
    assert message in refused.stderr
    assert webhook.returncode != 0 and message in webhook.stderr
    after = k8s.CoreV1Api(kube_admin).read_namespaced_secret("creds", namespace)
    assert after.metadata.resource_version == before.metadata.resource_version

    unknown = warden_cli(
        "extend", "secret/nope", "--ttl", "2d", kubeconfig=notebook, policy=policy_path, expect=1
    )
    assert f"no secret named nope in namespace {namespace}" in unknown.stderr


def test_extend_moves_the_expiry_and_ls_agrees(
    control_plane, kube_admin, warden, policy_path, tmp_path
):
    namespace, notebook = notebook_namespace(control_plane, kube_admin, tmp_path)
    kubectl_as(
        control_plane,
        notebook,
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps(secret("creds", ttl="1h")),
    )
    core = k8s.CoreV1Api(kube_admin)
    created = core.read_namespaced_secret("creds", namespace).metadata.annotations
    result = warden_cli(
        "extend", "secret/creds", "--ttl", "7d", kubeconfig=notebook, policy=policy_path
    )
    annotations = core.read_namespaced_secret("creds", namespace).metadata.annotations
    start = parse_time(created[f"{P}/created-at"])
    assert start is not None
    assert annotations[f"{P}/ttl"] == "7d"
    assert parse_time(annotations[f"{P}/expires-at"]) == start + timedelta(days=7)
    assert result.stdout.strip() == (
        f"secret/creds: {P}/ttl=7d, expires at {annotations[f'{P}/expires-at']}"
    )
    # ls agrees: no longer expiring.
    listed = json.loads(
        warden_cli("ls", "-o", "json", kubeconfig=notebook, policy=policy_path).stdout
    )
    assert [(e["name"], e["state"]) for e in listed] == [("creds", "live")]


def test_a_revision_about_to_leave_retention_is_warned_once_and_protected_ones_never(
    kube_admin, namespace
):
    # Retention: retainSinceLastActive 1h, so the window is 15m. Evaluated 40 minutes from
    # now, cfg-00003 (idle 10m) leaves retention in 10m; the protected revisions never do.
    world = build_world(kube_admin, namespace)
    later = now() + timedelta(minutes=40)
    first = sweeper(kube_admin, RETENTION_POLICY, namespace).run_once(now=later)
    second = sweeper(kube_admin, RETENTION_POLICY, namespace).run_once(now=later)
    warned = warning_events(kube_admin, namespace)
    revisions = {name for name in warned if name.startswith("cfg-")}
    assert revisions == {"cfg-00003"}
    assert warned["cfg-00003"] == 1 and first.warned >= 1 and second.warned == 0
    note = next(
        e["note"]
        for e in request_json(
            kube_admin, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"
        )["items"]
        if e["reason"] == "ExpiringSoon" and e["regarding"]["name"] == "cfg-00003"
    )
    assert "serving.knative.dev/no-gc=true" in note
    assert ("Revision", "cfg-00003") in world["kept"]
