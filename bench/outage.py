"""Benchmark: the admission server killed under a create load, then backfill; figures per round.

    KUBEBUILDER_ASSETS=$(hack/test-assets | tail -n 1) .venv/bin/python bench/outage.py

Starts its own control plane and `kaptain-warden serve` (the built-in policy), a Kubeflow
Profile namespace owned by alice@example.com, and a notebook identity creating Opaque Secrets
at --rate per second for --seconds. A third of the way in, the admission server's whole process
group (arbiter and workers) gets SIGKILL, as when its container dies; --outage seconds later it
is started again. Then one sweeper pass runs as the chart runs it (backfill of what the webhook
missed, then deletes), and a dry run at the stamp + TTL - 1 s. Each round (--rounds, default 5)
runs the three scenarios in an order rotating from round to round: failurePolicy Ignore (the
chart's default), failurePolicy Fail, and the API server stopped; per round it prints:

  creates / failed creates / admitted unstamped / unstamped after backfill / wrong deletions
  (objects gone after the pass, or due before a full TTL from the stamp) / recovery time (from
  the restart to the first create stamped again) / backfill pass time

then the ranges over rounds. The third scenario stops the API server (SIGSTOP, a hung server)
between a pass's decisions and its deletes, with --expired expired and as many live stamped
Secrets, and prints: deletes deferred / deletes reported as errors / expired left after the next
pass once it is back (SIGCONT) / live Secrets deleted / recovery time (SIGCONT to the end of a
complete pass).

A script, not a test: it prints figures (the tier-3 test
tests/e2e/test_outage_backfill.py asserts the correctness). Loopback only; it stops by itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from kubernetes import client as k8s

from _rounds import Rounds, add_arguments
from kaptain_warden.kube.api import KubeApi
from kaptain_warden.kube.client import request_json
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.policies.timestamps import format_time, parse_time
from kaptain_warden.sweeper.loop import Sweeper
from kaptain_warden.sweeper.settings import SweeperSettings
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.load import SecretLoad
from kaptain_warden.testing.profiles import create_owned_profile, install_profile_crd
from kaptain_warden.testing.stack import WardenStack, notebook_user

P = "warden.kaptain.io"
OWNER = "alice@example.com"
TTL = timedelta(hours=24)


def wait(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


def one_round(plane: ControlPlane, failure_policy: str, args: argparse.Namespace) -> dict:
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    name = f"warden-{uuid.uuid4().hex[:6]}"
    with plane.api_client() as admin:
        create_owned_profile(admin, namespace, OWNER)
    user = notebook_user(namespace)
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
    with WardenStack(plane, failure_policy=failure_policy, name=name) as stack:
        with SecretLoad(
            plane, namespace=namespace, user=user, groups=groups, rate=args.rate
        ) as load:
            began = time.monotonic()
            time.sleep(args.seconds / 3)
            stack.kill_server()
            time.sleep(args.outage)
            restart = time.monotonic()
            stack.start_server()
            seen = len(load.results)
            wait(lambda: any(r.stamped for r in load.results[seen:]))
            recovered = next(r for r in load.results[seen:] if r.stamped).sent_at - restart
            time.sleep(max(0.0, began + args.seconds - time.monotonic()))
        results = load.results
        with plane.api_client() as admin:
            sweeper = Sweeper(
                KubeApi(admin),
                policy=load_policy(),
                settings=SweeperSettings(
                    namespaces=(namespace,), backfill=True, backfill_since_webhook=name
                ),
            )
            start = time.monotonic()
            report = sweeper.run_once(now=datetime.now(UTC))
            backfill_seconds = time.monotonic() - start
            listed = request_json(admin, "GET", f"/api/v1/namespaces/{namespace}/secrets")
            found = {s["metadata"]["name"]: s["metadata"] for s in listed["items"]}
            stamps = [
                parse_time((m.get("annotations") or {}).get(f"{P}/backfilled-at"))
                for m in found.values()
            ]
            stamp = min((s for s in stamps if s is not None), default=None)
            early = 0
            if stamp is not None:
                preview = Sweeper(
                    KubeApi(admin),
                    policy=load_policy(),
                    settings=SweeperSettings(namespaces=(namespace,), dry_run=True),
                ).run_once(now=stamp + TTL - timedelta(seconds=1))
                backfilled = {
                    n
                    for n, m in found.items()
                    if f"{P}/backfilled-at" in (m.get("annotations") or {})
                }
                early = sum(
                    1 for e in preview.entries if e.action == "delete" and e.name in backfilled
                )
    ok = [r for r in results if r.ok]
    return {
        "creates": len(results),
        "failed": len(results) - len(ok),
        "unstamped": sum(1 for r in ok if not r.stamped),
        "unstamped after backfill": sum(
            1 for m in found.values() if f"{P}/managed" not in (m.get("labels") or {})
        ),
        "wrong deletions": sum(1 for r in ok if r.name not in found)
        + early
        + report.deletion.deleted,
        "recovery s": round(recovered, 2),
        "backfill pass s": round(backfill_seconds, 2),
    }


def stamped_secret(name: str, expires: datetime) -> dict:
    created = expires - TTL
    return {
        "metadata": {
            "name": name,
            "labels": {
                f"{P}/managed": "true",
                f"{P}/rule": "credentials-secrets",
                f"{P}/owner": "alice",
            },
            "annotations": {
                f"{P}/owner": "alice",
                f"{P}/created-at": format_time(created),
                f"{P}/ttl": "1d",
                f"{P}/expires-at": format_time(expires),
            },
        },
        "type": "Opaque",
    }


def api_server_round(plane: ControlPlane, args: argparse.Namespace) -> dict:
    """SIGSTOP the API server after the decisions of a pass; SIGCONT; one more pass."""
    namespace = f"api-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    with plane.api_client() as admin:
        request_json(admin, "POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
        path = f"/api/v1/namespaces/{namespace}/secrets"
        bodies = [
            stamped_secret(f"expired-{i}", now - timedelta(hours=1)) for i in range(args.expired)
        ]
        bodies += [
            stamped_secret(f"live-{i}", now + timedelta(hours=1)) for i in range(args.expired)
        ]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda b: request_json(admin, "POST", path, body=b), bodies))
    (apiserver,) = [p for p in plane.processes if p.name == "kube-apiserver"]
    configuration = plane.client_configuration()
    configuration.retries = 0

    def stop(entries) -> None:
        os.killpg(apiserver.pid, signal.SIGSTOP)

    settings = SweeperSettings(namespaces=(namespace,), max_deletes_per_cycle=10 * args.expired)
    with k8s.ApiClient(configuration) as api_client:
        sweeper = Sweeper(KubeApi(api_client, timeout=1.0), policy=load_policy(), settings=settings)
        try:
            first = sweeper.run_once(now=datetime.now(UTC), after_decisions=stop)
        finally:
            os.killpg(apiserver.pid, signal.SIGCONT)
        resumed = time.monotonic()
        while True:
            again = sweeper.run_once(now=datetime.now(UTC))
            if again.complete:
                break
        recovery = time.monotonic() - resumed
    with plane.api_client() as admin:
        listed = request_json(admin, "GET", path)
    names = {s["metadata"]["name"] for s in listed["items"]}
    return {
        "deferred": first.deletion.deferred,
        "errors": first.deletion.errors,
        "expired left": sum(1 for n in names if n.startswith("expired-")),
        "live deleted": args.expired - sum(1 for n in names if n.startswith("live-")),
        "recovery s": round(recovery, 2),
    }


ARMS = ("failurePolicy Ignore", "failurePolicy Fail", "API server stopped mid-pass")
UNITS = {
    "creates": "",
    "failed": "creates",
    "unstamped": "objects",
    "unstamped after backfill": "objects",
    "wrong deletions": "objects",
    "recovery s": "s",
    "backfill pass s": "s",
    "deferred": "deletes",
    "errors": "deletes",
    "expired left": "objects",
    "live deleted": "objects",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--outage", type=float, default=10.0)
    parser.add_argument("--expired", type=int, default=200)
    add_arguments(parser)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # one line per deferred delete would bury the figures
    bench = Rounds.from_args(
        "outage",
        args,
        title="the admission server killed under a create load, then backfill; the API server "
        "stopped in the middle of a sweep pass",
        arms=ARMS,
        setup={
            "load": f"{args.rate:g} Secrets/s for {args.seconds:g} s as a notebook identity",
            "outage": f"the admission server's process group SIGKILLed a third of the way in, "
            f"restarted {args.outage:g} s later; then one sweeper pass with backfill",
            "API server": f"SIGSTOP between a pass's decisions and its deletes, {args.expired} "
            "expired and as many live stamped Secrets; SIGCONT, then passes until one completes",
        },
    )
    for field, unit in UNITS.items():
        bench.declare(field, unit)
    with ControlPlane(crds=False) as plane:
        with plane.api_client() as admin:
            install_profile_crd(admin)
        for n in bench.rounds():
            for arm in bench.order(n):  # rotate, so drift hits every scenario alike
                if arm == ARMS[2]:
                    row = api_server_round(plane, args)
                else:
                    row = one_round(plane, arm.rsplit(" ", 1)[1], args)
                bench.record(n, arm, row)
    bench.note(
        "wrong deletions: objects gone after the pass, or due before a full TTL from their "
        "stamp; recovery s: from the restart to the first create stamped again (API server: "
        "from SIGCONT to the end of a complete pass)"
    )
    for arm in ARMS[:2]:
        bench.headline("unstamped after backfill", arm)
        bench.headline("wrong deletions", arm)
    bench.headline("live deleted", ARMS[2])
    bench.headline("expired left", ARMS[2])
    bench.finish()


if __name__ == "__main__":
    main()
