"""Tier 3: one sweep against the real API server deletes exactly what is due, and nothing else."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from kaptain_warden.kube.client import request_json
from kaptain_warden.sweeper.in_use import CLUSTER_WIDE_FROM
from kaptain_warden.sweeper.metrics import SweeperMetrics
from sweeper_kit import (
    HOUR,
    P,
    body,
    build_world,
    create,
    log_lines,
    now,
    policy_for_tests,
    present,
    run_cli,
    sweeper,
    write_policy,
)

pytestmark = pytest.mark.e2e

POLICY = policy_for_tests()


def test_one_sweep_deletes_exactly_what_is_due(kube_admin, namespace):
    world = build_world(kube_admin, namespace)
    report = sweeper(kube_admin, POLICY, namespace).run_once(now=now())

    decided = {(e.kind, e.name): e for e in report.entries}
    assert {k for k, e in decided.items() if e.action == "delete"} == world["due"]
    assert {k for k, e in decided.items() if e.outcome == "deleted"} == world["due"]
    assert report.complete and report.deletion.stopped is None
    # Look-alikes without managed=true were never even listed.
    assert not any("lookalike" in name or name.endswith("-false") for _, name in decided)

    remaining = present(kube_admin, namespace, world)
    assert remaining == world["kept"]

    reasons = {name: e.reason for (_, name), e in decided.items()}
    assert reasons["used-by-pod"].startswith("kept: in use by Pod/trainer")
    assert reasons["used-by-sa"].startswith("kept: in use by ServiceAccount/deployer")
    assert reasons["kept-on-purpose"].startswith(f'annotation {P}/keep="true"')
    assert "ignored" in reasons["keep-not-allowed"]
    assert reasons["cfg-00001"] == "protected: named in an InferenceService status"
    assert reasons["cfg-00004"] == "protected: routingState=active"
    assert reasons["cfg-00005"].startswith("protected: latest ready revision")
    assert reasons["cfg-00006"].startswith("protected: annotation serving.knative.dev/no-gc")
    assert reasons["cfg-00002"].startswith("retention: stale")
    assert "not finished" in reasons["job-complete-running"]

    # Every deletion is an Event on the object's namespace.
    events = request_json(
        kube_admin, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"
    )
    # (Objects expiring within their warning window also got an ExpiringSoon warning.)
    deletions = [e for e in events["items"] if e["action"] == "Delete"]
    regarding = {(e["regarding"]["kind"], e["regarding"]["name"]) for e in deletions}
    assert regarding == world["due"]
    assert {e["reportingController"] for e in events["items"]} == {"warden.kaptain.io/sweeper"}

    # A second pass finds nothing more to do.
    again = sweeper(kube_admin, POLICY, namespace).run_once(now=now())
    assert not again.to_delete


@pytest.fixture
def three_namespaces(kube_admin, namespace):
    """`namespace` and two more (CLUSTER_WIDE_FROM namespaces); the extra two deleted after."""
    extra = [f"{namespace}-{i}" for i in (2, 3)]
    for name in extra:
        request_json(kube_admin, "POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    yield [namespace, *extra]
    for name in extra:
        request_json(kube_admin, "DELETE", f"/api/v1/namespaces/{name}")


def test_across_namespaces_holders_and_revision_parents_are_read_once_per_kind(
    kube_admin, three_namespaces
):
    """Due Secrets in 3 namespaces: each holder kind is listed once across the cluster, and so
    are the Configurations and InferenceServices retention reads, not once per namespace or
    per object; the decisions are those of one namespace, in each."""
    assert len(three_namespaces) >= CLUSTER_WIDE_FROM
    worlds = {n: build_world(kube_admin, n) for n in three_namespaces}
    sweep = sweeper(kube_admin, POLICY, three_namespaces[0])
    sweep.settings = replace(sweep.settings, namespaces=tuple(three_namespaces))
    paths: list[str] = []  # what it read, in pages or streamed
    send, stream = sweep.api.request, sweep.api.stream

    def recorded(method, path, **kw):
        if method == "GET":
            paths.append(path)
        return send(method, path, **kw)

    def streamed(path, **kw):
        paths.append(path)
        return stream(path, **kw)

    sweep.api.request = recorded  # type: ignore[method-assign]
    sweep.api.stream = streamed  # type: ignore[method-assign]
    report = sweep.run_once(now=now())

    assert report.complete
    for n, world in worlds.items():
        decided = {(e.kind, e.name): e for e in report.entries if e.namespace == n}
        assert {k for k, e in decided.items() if e.outcome == "deleted"} == world["due"]
        assert present(kube_admin, n, world) == world["kept"]
        reasons = {name: e.reason for (_, name), e in decided.items()}
        assert reasons["used-by-pod"].startswith("kept: in use by Pod/trainer")
        assert reasons["used-by-sa"].startswith("kept: in use by ServiceAccount/deployer")
        assert reasons["cfg-00001"] == "protected: named in an InferenceService status"
        assert reasons["cfg-00005"].startswith("protected: latest ready revision")
    # Read across the cluster, once per kind and purpose: retention reads the Configurations'
    # and InferenceServices' status; as Secret holders (their templates) they are read by
    # their own governed list, once per namespace swept, not again. No per-namespace list of
    # another holder, no GET of one Configuration or InferenceService.
    assert {
        across: paths.count(across)
        for across in (
            "/api/v1/pods",
            "/api/v1/serviceaccounts",
            "/apis/serving.knative.dev/v1/configurations",
            "/apis/serving.kserve.io/v1beta1/inferenceservices",
        )
    } == {
        "/api/v1/pods": 1,
        "/api/v1/serviceaccounts": 1,
        "/apis/serving.knative.dev/v1/configurations": 1,
        "/apis/serving.kserve.io/v1beta1/inferenceservices": 1,
    }
    for n in three_namespaces:
        for governed in (
            f"/apis/serving.knative.dev/v1/namespaces/{n}/configurations",
            f"/apis/serving.kserve.io/v1beta1/namespaces/{n}/inferenceservices",
            f"/apis/batch/v1/namespaces/{n}/jobs",
        ):
            assert paths.count(governed) == 1, governed
    holders = ("/pods", "/serviceaccounts")
    assert not [p for p in paths if p.endswith(holders) and "/namespaces/" in p]
    assert not [p for p in paths if "/configurations/" in p or "/inferenceservices/" in p]


def test_dry_run_deletes_nothing_and_reports_the_same_set(
    kube_admin, control_plane, namespace, tmp_path
):
    world = build_world(kube_admin, namespace)
    policy_file = write_policy(tmp_path / "policy.yaml")
    kubeconfig = control_plane.kubeconfig_path
    result = run_cli(
        "sweep",
        "--dry-run",
        "--namespace",
        namespace,
        "--policy",
        str(policy_file),
        "--output",
        "json",
        kubeconfig=kubeconfig,
    )
    report = json.loads(result.stdout)
    assert {(e["kind"], e["name"]) for e in report if e["action"] == "delete"} == world["due"]
    assert {e["outcome"] for e in report if e["action"] == "delete"} == {"would-delete"}
    assert present(kube_admin, namespace, world) == world["due"] | world["kept"]

    # Every would-be deletion is a log line that cannot be mistaken for a deletion.
    lines = log_lines(result.stderr)
    would = [line for line in lines if line.get("outcome") == "would-delete"]
    assert {(line["kind"], line["object"]) for line in would} == world["due"]
    assert all(
        line["dryRun"] is True and line["msg"].startswith("DRY RUN, NOT DELETED") for line in would
    )
    assert not any(line.get("outcome") == "deleted" for line in lines)
    events = request_json(
        kube_admin, "GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"
    )
    assert events["items"] == []

    # The same pass for real deletes that very set.
    real = run_cli(
        "sweep",
        "--namespace",
        namespace,
        "--policy",
        str(policy_file),
        "--output",
        "json",
        kubeconfig=kubeconfig,
    )
    assert {
        (e["kind"], e["name"]) for e in json.loads(real.stdout) if e["outcome"] == "deleted"
    } == (world["due"])


def test_a_pass_is_counted_in_metrics(kube_admin, namespace):
    for name, expires in (("a", now() - HOUR), ("b", now() - HOUR), ("c", now() + HOUR)):
        create(kube_admin, namespace, body("v1", "Secret", name, expires=expires))
    metrics = SweeperMetrics()
    sweeper(kube_admin, POLICY, namespace, metrics).run_once(now=now())
    value = metrics.registry.get_sample_value
    labels = {"group": "", "kind": "Secret", "rule": "credentials-secrets"}
    assert value("kaptain_warden_sweeper_objects_seen", labels) == 3
    assert value("kaptain_warden_sweeper_objects_expired", labels) == 2
    assert value("kaptain_warden_sweeper_objects_deleted_total", labels) == 2
    assert value("kaptain_warden_sweeper_cycles_total", {"result": "ok"}) == 1
    assert value("kaptain_warden_sweeper_cycle_duration_seconds_count") == 1
    assert value("kaptain_warden_sweeper_last_success_timestamp_seconds") > 0
    assert b"kaptain_warden_sweeper_delete_errors_total" in metrics.render()
