"""Benchmark: `kaptain-warden sweep` as a user runs it, and the sweeper's pass, on an API server.

    KUBEBUILDER_ASSETS=$(hack/test-assets | tail -n 1) .venv/bin/python bench/sweep.py
    KUBEBUILDER_ASSETS=... .venv/bin/python bench/sweep.py --objects 100000

Starts its own control plane (etcd + kube-apiserver, the upstream CRDs) and stops it at the
end (its temporary directory goes with it; nothing is cached).

Default: 1,000 managed Secrets (half due) in 10 namespaces, and two arms alternating in rounds:

- `dry-run`: `kaptain-warden sweep --dry-run`, a whole process with default settings (what a
  user waits for in a preview): wall time, CPU, peak RSS, the time from spawning it to its
  first API answer (the `sweep starting` log line comes right after `GET /version`), the
  pass itself (the summary log line's duration), requests, and the API server's CPU.
- `delete`: `kaptain-warden sweep --max-deletes-per-cycle 1000`, default settings but the
  budget, deleting 1,000 expired Secrets (topped up before each round, not timed).

`--objects N` (10,000, 100,000): N objects of every governed kind (half due) in 100
namespaces, and two arms: `process` (the whole `kaptain-warden sweep --dry-run`) and `pass`
(one dry-run pass in a long-lived process, as the in-cluster sweeper runs them: wall, CPU,
peak RSS of that pass, requests, API server CPU). The steady-state cost per hour at the
default interval (a pass a minute) is 60 x the pass's CPU, the sweeper's and the API
server's. A dry-run pass does every list, decision and in-use check a real pass does; in a
steady state deletions follow the expiry rate and are few per pass.

Peak RSS of a whole process is the kernel's high-water mark of the child (wait4, spawned by a
small launcher process so that the mark is the child's own); of a pass, the
`VmHWM` of the long-lived process, reset before each pass (`/proc/self/clear_refs`). API
server CPU is read from `/proc/<pid>/stat` of the kube-apiserver process around the run.

Bytecode: the measured processes read our package's compiled bytecode, as an installed
package (the image runs `compileall`) does; the script compiles it first, so that a checkout
run with PYTHONDONTWRITEBYTECODE does not count compiling our modules as start-up.

A script, not a test: it prints figures and writes bench/results/sweep[-N].json. Loopback only.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kaptain_warden
from _rounds import Rounds, add_arguments
from kaptain_warden.kube.client import load_api_client, request_json, resource_path
from kaptain_warden.policies.timestamps import format_time
from kaptain_warden.testing.controlplane import ControlPlane

P = "warden.kaptain.io"
WARDEN = Path(sys.executable).with_name("kaptain-warden")
TICK = os.sysconf("SC_CLK_TCK")
REVISIONS_PER_CONFIGURATION = 5
# (apiVersion, kind, resource, rule, share of the objects): what a busy Kaptain cluster holds.
MIX = (
    ("v1", "Secret", "secrets", "credentials-secrets", 0.30),
    ("batch/v1", "Job", "jobs", "build-jobs", 0.20),
    ("kubeflow.org/v1", "TFJob", "tfjobs", "training-jobs", 0.08),
    ("kubeflow.org/v1", "PyTorchJob", "pytorchjobs", "training-jobs", 0.05),
    ("kubeflow.org/v1beta1", "Experiment", "experiments", "katib-experiments", 0.05),
    (
        "serving.kserve.io/v1beta1",
        "InferenceService",
        "inferenceservices",
        "inference-services",
        0.03,
    ),
    (
        "serving.kubeflow.org/v1beta1",
        "InferenceService",
        "inferenceservices",
        "inference-services",
        0.02,
    ),
    ("serving.knative.dev/v1", "Service", "services", "knative-serving", 0.03),
    ("serving.knative.dev/v1", "Route", "routes", "knative-serving", 0.03),
    ("serving.knative.dev/v1", "Configuration", "configurations", "knative-serving", 0.03),
    ("serving.knative.dev/v1", "Revision", "revisions", "knative-revisions", 0.18),
)
CONTAINER = {"name": "main", "image": "registry.example/kaptain/model:1", "args": ["--epochs=10"]}


# -- the objects -------------------------------------------------------------------------------


def manifest(api_version: str, kind: str, rule: str, name: str, *, expired: bool, now: datetime):
    created = now - timedelta(hours=30)
    expires = now - timedelta(hours=1) if expired else now + timedelta(days=3)
    obj: dict = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "labels": {f"{P}/managed": "true", f"{P}/rule": rule, f"{P}/owner": "alice"},
            "annotations": {
                f"{P}/owner": "system:serviceaccount:team:default-editor",
                f"{P}/created-at": format_time(created),
                f"{P}/ttl": "1d7h",
                f"{P}/expires-at": format_time(expires),
            },
        },
    }
    template = {"spec": {"containers": [CONTAINER]}}
    if kind == "Secret":
        obj |= {"type": "Opaque", "stringData": {"AWS_SECRET_ACCESS_KEY": "x" * 40}}
    elif kind == "Job":
        obj["spec"] = {
            "managedBy": "bench.example/none",  # no job controller runs here anyway
            "template": {"spec": {"restartPolicy": "Never", "containers": [CONTAINER]}},
        }
    elif kind in ("TFJob", "PyTorchJob"):
        replicas = "tfReplicaSpecs" if kind == "TFJob" else "pytorchReplicaSpecs"
        obj["spec"] = {replicas: {"Worker": {"replicas": 2, "template": template}}}
    elif kind == "Revision":
        configuration = name.rsplit("-", 1)[0]
        obj["metadata"]["labels"] |= {
            "serving.knative.dev/configuration": configuration,
            "serving.knative.dev/routingState": "reserve",
        }
        obj["spec"] = {"containers": [CONTAINER]}
    elif kind in ("Service", "Configuration"):
        obj["spec"] = {"template": template}
    elif kind == "InferenceService":  # the upstream KServe CRD requires a predictor
        obj["spec"] = {"predictor": {"sklearn": {"storageUri": "s3://models/bench"}}}
    else:
        obj["spec"] = {}
    return obj


def _create_chunk(kubeconfig: str, requests: list[tuple[str, str, dict]]) -> int:
    """POST (or PATCH status) each request with 16 connections; run in a worker process."""
    client = load_api_client(kubeconfig)
    client.rest_client.pool_manager.connection_pool_kw["maxsize"] = 16

    def send(request: tuple[str, str, dict]) -> None:
        method, path, body = request
        content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
        request_json(client, method, path, body=body, content_type=content_type)

    with client, ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(send, requests))
    return len(requests)


def create(kubeconfig: Path, requests: list[tuple[str, str, dict]]) -> None:
    """Send `requests` from two processes (the client's JSON work is the bottleneck)."""
    chunks = [requests[i::2] for i in range(2)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_create_chunk, [str(kubeconfig)] * 2, chunks))


def namespaces(kubeconfig: Path, names: list[str]) -> None:
    create(kubeconfig, [("POST", "/api/v1/namespaces", {"metadata": {"name": n}}) for n in names])


def secrets(tag: str, count: int, *, spaces: int, expired: bool) -> list[tuple[str, str, dict]]:
    """`count` managed Secrets named `<tag>-<i>`, spread over `spaces` namespaces."""
    now = datetime.now(UTC)
    return [
        (
            "POST",
            resource_path(group="", version="v1", resource="secrets", namespace=f"w-{i % spaces}"),
            manifest("v1", "Secret", "credentials-secrets", f"{tag}-{i}", expired=expired, now=now),
        )
        for i in range(count)
    ]


def mixed(total: int, spaces: int) -> tuple[list, list]:
    """`total` objects of every governed kind, half expired: (Configurations and their status
    first, then the objects)."""
    now = datetime.now(UTC)
    rng = random.Random(total)
    objects = []
    for api_version, kind, resource, rule, share in MIX:
        count = max(1, round(total * share))
        if kind == "Revision":
            count -= count % REVISIONS_PER_CONFIGURATION
        for i in range(count):
            namespace = f"w-{i % spaces}"
            if kind == "Revision":
                configuration, number = divmod(i, REVISIONS_PER_CONFIGURATION)
                namespace = f"w-{configuration % spaces}"
                name = f"cfg{configuration}-{number:05d}"
            else:
                name = f"{resource[:-1]}-{i}"
            objects.append((api_version, kind, resource, rule, namespace, name))
    expired = set(rng.sample(range(len(objects)), len(objects) // 2))
    first, then = [], []
    parents = sorted({(o[4], o[5].rsplit("-", 1)[0]) for o in objects if o[1] == "Revision"})
    for namespace, name in parents:
        path = resource_path(
            group="serving.knative.dev",
            version="v1",
            resource="configurations",
            namespace=namespace,
        )
        first.append(
            (
                "POST",
                path,
                {
                    "apiVersion": "serving.knative.dev/v1",
                    "kind": "Configuration",
                    "metadata": {"name": name},
                    "spec": {"template": {"spec": {"containers": [CONTAINER]}}},
                },
            )
        )
    status = [("PATCH", f"{r[1]}/{r[2]['metadata']['name']}/status", {"status": {}}) for r in first]
    for request in status:
        request[2]["status"]["latestReadyRevisionName"] = request[1].rsplit("/", 2)[1] + "-00004"
    for index, (api_version, kind, resource, rule, namespace, name) in enumerate(objects):
        group, _, version = api_version.rpartition("/")
        path = resource_path(group=group, version=version, resource=resource, namespace=namespace)
        body = manifest(api_version, kind, rule, name, expired=index in expired, now=now)
        then.append(("POST", path, body))
    return first + status, then


# -- measuring ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _log_time(line: dict) -> float:
    return datetime.fromisoformat(line["ts"].replace("Z", "+00:00")).timestamp()


# Spawns each measured process and reaps it with wait4. A child's peak RSS (ru_maxrss) counts
# the memory it had as a fork of its parent before exec, so the parent must be small: this
# launcher starts before the benchmark holds anything, not the benchmark itself.
LAUNCHER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    argv = json.loads(line)
    spawned = time.time()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    print(json.dumps({
        "spawned": spawned,
        "ended": time.time(),
        "status": os.waitstatus_to_exitcode(status),
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_kib": usage.ru_maxrss,
        "log": log.decode("utf-8", "replace"),
    }), flush=True)
"""


class Launcher:
    """The small process that spawns and reaps each measured `kaptain-warden` (see LAUNCHER)."""

    def __init__(self) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def run(self, argv: list[str], apiserver: int) -> dict[str, float]:
        """One whole process: wall, CPU, first answer, pass, peak RSS, requests, API server."""
        assert self._child.stdin is not None and self._child.stdout is not None
        server_before = cpu_seconds(apiserver)
        self._child.stdin.write(json.dumps([str(WARDEN), *argv]).encode() + b"\n")
        self._child.stdin.flush()
        run = json.loads(self._child.stdout.readline())
        server = cpu_seconds(apiserver) - server_before
        lines = [json.loads(x) for x in run["log"].splitlines() if x.startswith("{")]
        started = next((x for x in lines if x.get("msg") == "sweep starting"), None)
        summary = next((x for x in lines if "seen" in x and "durationSeconds" in x), None)
        if run["status"] != 0 or started is None or summary is None:
            raise SystemExit(f"kaptain-warden {' '.join(argv)} failed ({run['status']}):\n{run}")
        return {
            "wall": run["ended"] - run["spawned"],
            "cpu": run["cpu"],
            "first answer": _log_time(started) - run["spawned"],
            "pass": summary["durationSeconds"],
            "peak RSS": run["peak_kib"] / 1024,
            "requests": summary["requests"],
            "API server CPU": server,
            "seen": summary["seen"],
            "deleted": summary["deleted"],
        }

    def close(self) -> None:
        assert self._child.stdin is not None
        self._child.stdin.close()
        self._child.wait()


# A long-lived process that runs one dry-run pass per line it reads, as the in-cluster sweeper
# runs them (the start-up paid once).
PASSES = """
import json, sys, time
from datetime import UTC, datetime
from kaptain_warden.kube.client import load_api_client
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.kube.api import KubeApi
from kaptain_warden.sweeper.loop import Sweeper
from kaptain_warden.sweeper.settings import SweeperSettings

def high_water_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

api = KubeApi(load_api_client(sys.argv[1]))
sweeper = Sweeper(api, policy=load_policy(), settings=SweeperSettings(dry_run=True))
for _ in sys.stdin:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset VmHWM: the peak of this pass alone
    requests, cpu, began = api.total, time.process_time(), time.perf_counter()
    report = sweeper.run_once(now=datetime.now(UTC))
    print(json.dumps({
        "wall": time.perf_counter() - began,
        "cpu": time.process_time() - cpu,
        "peak RSS": high_water_kib() / 1024,
        "requests": api.total - requests,
        "seen": len(report.entries),
        "complete": report.complete,
    }), flush=True)
    del report  # as in the sweeper's loop: a pass's report is not kept through the next pass
"""


class Passes:
    """The long-lived process of `PASSES`."""

    def __init__(self, kubeconfig: Path, apiserver: int) -> None:
        self._apiserver = apiserver
        self._child = subprocess.Popen(
            [sys.executable, "-c", PASSES, str(kubeconfig)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def run(self) -> dict[str, float]:
        assert self._child.stdin is not None and self._child.stdout is not None
        server_before = cpu_seconds(self._apiserver)
        self._child.stdin.write("pass\n")
        self._child.stdin.flush()
        line = self._child.stdout.readline()
        if not line:
            raise SystemExit("the pass process ended")
        figures = json.loads(line)
        if not figures.pop("complete"):
            raise SystemExit("a pass was incomplete")
        figures["API server CPU"] = cpu_seconds(self._apiserver) - server_before
        return figures

    def close(self) -> None:
        self._child.kill()
        self._child.wait()


# -- the two benchmarks ------------------------------------------------------------------------


def thousand(args: argparse.Namespace, launcher: Launcher) -> None:
    spaces = 10
    bench = Rounds.from_args(
        "sweep",
        args,
        title="kaptain-warden sweep, whole processes: a dry run over 1,000 managed Secrets "
        "(half due), and a real pass deleting 1,000 expired Secrets (budget 1,000)",
        arms=("dry-run", "delete"),
        setup={"secrets": 1000, "namespaces": spaces, "due_in_dry_run": 500, "deleted": 1000},
    )
    for name, unit in (
        ("wall", "s"),
        ("cpu", "s"),
        ("first answer", "s"),
        ("pass", "s"),
        ("peak RSS", "MiB"),
        ("requests", ""),
        ("API server CPU", "s"),
    ):
        bench.declare(name, unit)
    with ControlPlane(crds=True) as plane:
        kubeconfig = plane.kubeconfig_path
        apiserver = next(p.pid for p in plane.processes if p.name == "kube-apiserver")
        namespaces(kubeconfig, [f"w-{i}" for i in range(spaces)])
        create(kubeconfig, secrets("live", 500, spaces=spaces, expired=False))
        due = 0  # expired Secrets present
        for n in bench.rounds():
            for arm in bench.order(n):
                want = 500 if arm == "dry-run" else 1000
                create(kubeconfig, secrets(f"r{n}{arm}", want - due, spaces=spaces, expired=True))
                due = want
                argv = ["sweep", "--kubeconfig", str(kubeconfig)]
                argv += ["--dry-run"] if arm == "dry-run" else ["--max-deletes-per-cycle", "1000"]
                figures = launcher.run(argv, apiserver)
                if arm == "delete":
                    if figures["deleted"] != 1000:
                        raise SystemExit(f"deleted {figures['deleted']}, not 1,000")
                    due = 0
                figures.pop("seen")
                figures.pop("deleted")
                bench.record(n, arm, figures)
    bench.note(
        "first answer: from spawning the process to the log line after its first API request "
        "(GET /version) was answered"
    )
    bench.note("absolute figures: this machine under its load at the time, not a property")
    bench.finish()


def objects(args: argparse.Namespace, launcher: Launcher) -> None:
    spaces = 100
    total = args.objects
    bench = Rounds.from_args(
        f"sweep-{total}",
        args,
        title=f"dry-run passes over {total:,} managed objects of every governed kind (half due) "
        f"in {spaces} namespaces: the whole `kaptain-warden sweep --dry-run` and one pass of "
        "a long-lived sweeper",
        arms=("process", "pass"),
        setup={"objects": total, "namespaces": spaces, "due": "half"}
        | ({"run": "by hand, not by make bench"} if total > 10000 else {}),
    )
    for name, unit in (
        ("wall", "s"),
        ("cpu", "s"),
        ("peak RSS", "MiB"),
        ("requests", ""),
        ("API server CPU", "s"),
        ("first answer", "s"),
        ("pass", "s"),
        ("sweeper CPU per hour", "s"),
        ("API server CPU per hour", "s"),
    ):
        bench.declare(name, unit)
    with contextlib.ExitStack() as stack:
        if args.kubeconfig:  # a running control plane that holds the objects already
            kubeconfig, apiserver = args.kubeconfig, args.apiserver_pid
        else:
            plane = stack.enter_context(ControlPlane(crds=True))
            kubeconfig = plane.kubeconfig_path
            apiserver = next(p.pid for p in plane.processes if p.name == "kube-apiserver")
            began = time.perf_counter()
            namespaces(kubeconfig, [f"w-{i}" for i in range(spaces)])
            parents, made = mixed(total, spaces)
            create(kubeconfig, parents)
            create(kubeconfig, made)
            print(
                f"created {len(made):,} objects in {time.perf_counter() - began:.0f} s", flush=True
            )
        passes = Passes(kubeconfig, apiserver)
        try:
            passes.run()  # the first pass warms the API server's caches and ours
            for n in bench.rounds():
                for arm in bench.order(n):
                    if arm == "pass":
                        figures = passes.run()
                    else:
                        argv = ["sweep", "--dry-run", "--kubeconfig", str(kubeconfig)]
                        figures = launcher.run(argv, apiserver)
                        figures.pop("deleted")
                    if figures.pop("seen") < total * 0.99:
                        raise SystemExit("the pass saw fewer objects than were made")
                    bench.record(n, arm, figures)
        finally:
            passes.close()
    for name in ("wall", "cpu", "peak RSS"):
        bench.ratio(name, "process", "pass")
    for name in ("wall", "cpu", "peak RSS", "requests", "API server CPU"):
        bench.headline(name, "pass")
    for name in ("sweeper CPU per hour", "API server CPU per hour"):
        bench.headline(name)
    pass_cpu = bench.result()
    per_hour = {
        f["name"]: [v * 60 for v in f["values"]]
        for f in pass_cpu["figures"]
        if f["arm"] == "pass" and f["name"] in ("cpu", "API server CPU")
    }
    for n, (sweeper, server) in enumerate(
        zip(per_hour["cpu"], per_hour["API server CPU"], strict=True)
    ):
        bench.record_round(
            n, {"sweeper CPU per hour": sweeper, "API server CPU per hour": server}, kind="absolute"
        )
    bench.note(
        "per hour: 60 passes (the default --interval of 60 s) x one pass's CPU; a steady state "
        "deletes only what expires, so its passes cost what a dry-run pass does"
    )
    bench.note("absolute figures: this machine under its load at the time, not a property")
    bench.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--objects",
        type=int,
        default=None,
        metavar="N",
        help="N mixed objects in 100 namespaces (process vs pass) instead of the 1,000-Secret "
        "dry run and delete",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="with --objects: measure on this running control plane, which already holds the N "
        "objects as this script makes them (100,000 take about 11 minutes to create on 2 "
        "cores); needs --apiserver-pid",
    )
    parser.add_argument(
        "--apiserver-pid", type=int, default=None, help="its kube-apiserver's pid (CPU is read)"
    )
    add_arguments(parser)
    args = parser.parse_args()
    if args.kubeconfig and not (args.objects and args.apiserver_pid):
        parser.error("--kubeconfig goes with --objects and --apiserver-pid")
    compileall.compile_dir(Path(kaptain_warden.__file__).parent, quiet=1)
    launcher = Launcher()
    try:
        if args.objects:
            objects(args, launcher)
        else:
            thousand(args, launcher)
    finally:
        launcher.close()


if __name__ == "__main__":
    main()
