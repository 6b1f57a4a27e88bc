"""Benchmark: one full sweep pass over N managed objects in a real kube-apiserver.

    KUBEBUILDER_ASSETS=$(hack/test-assets | tail -n 1) .venv/bin/python bench/sweep.py

Starts its own control plane (etcd + kube-apiserver, the upstream CRDs), creates N managed objects
(default 1,000 then 10,000; a mix of every governed kind over 20 namespaces; 20% expired) with
a thread pool, then runs ONE pass in a fresh child process and prints its wall time, the API
requests it made (counted by the sweeper's client adapter, by method), its peak RSS, and
objects per second. Peak RSS is the child's high-water mark (`VmHWM` in /proc/self/status)
after the pass; the same mark before the pass (interpreter, kubernetes client, our modules) is
printed too.

A script, not a test: it prints figures. Loopback only; it stops by itself.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kaptain_warden.kube.client import request_json, resource_path
from kaptain_warden.policies.timestamps import format_time
from kaptain_warden.testing.controlplane import ControlPlane

P = "warden.kaptain.io"
NAMESPACES = 20
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


def populate(plane: ControlPlane, total: int, tag: str) -> int:
    """Create `total` objects (20% expired); returns how many are expired."""
    now = datetime.now(UTC)
    rng = random.Random(total)
    jobs = []
    for api_version, kind, resource, rule, share in MIX:
        count = max(1, round(total * share))
        if kind == "Revision":
            count -= count % REVISIONS_PER_CONFIGURATION
        for i in range(count):
            namespace = f"bench-{tag}-{i % NAMESPACES}"
            if kind == "Revision":
                # A Configuration's revisions live in its namespace.
                configuration, number = divmod(i, REVISIONS_PER_CONFIGURATION)
                namespace = f"bench-{tag}-{configuration % NAMESPACES}"
                name = f"{tag}-cfg{configuration}-{number:05d}"
            else:
                name = f"{tag}-{resource[:-1]}-{i}"
            jobs.append((api_version, kind, resource, rule, namespace, name))
    expired_count = round(len(jobs) * 0.2)
    expired = set(rng.sample(range(len(jobs)), expired_count))
    configurations = {
        (namespace, name.rsplit("-", 1)[0])
        for api_version, kind, _, _, namespace, name in jobs
        if kind == "Revision"
    }

    with plane.api_client() as admin:
        admin.configuration.connection_pool_maxsize = 32
        for n in range(NAMESPACES):
            request_json(
                admin, "POST", "/api/v1/namespaces", body={"metadata": {"name": f"bench-{tag}-{n}"}}
            )

        def create(index: int) -> None:
            api_version, kind, resource, rule, namespace, name = jobs[index]
            group, _, version = api_version.rpartition("/")
            body = manifest(api_version, kind, rule, name, expired=index in expired, now=now)
            request_json(
                admin,
                "POST",
                resource_path(group=group, version=version, resource=resource, namespace=namespace),
                body=body,
            )

        def configuration(key: tuple[str, str]) -> None:
            namespace, name = key
            path = resource_path(
                group="serving.knative.dev",
                version="v1",
                resource="configurations",
                namespace=namespace,
            )
            body = {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Configuration",
                "metadata": {"name": name},
                "spec": {"template": {"spec": {"containers": [CONTAINER]}}},
            }
            request_json(admin, "POST", path, body=body)
            request_json(
                admin,
                "PATCH",
                f"{path}/{name}/status",
                body={"status": {"latestReadyRevisionName": f"{name}-00004"}},
                content_type="application/merge-patch+json",
            )

        with ThreadPoolExecutor(max_workers=24) as pool:
            list(pool.map(configuration, sorted(configurations)))
            list(pool.map(create, range(len(jobs))))
    return expired_count


CHILD = """
import json, sys, time
from datetime import UTC, datetime

from kaptain_warden.kube.client import load_api_client
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.kube.api import KubeApi
from kaptain_warden.sweeper.loop import Sweeper
from kaptain_warden.sweeper.settings import SweeperSettings

def high_water_kib():
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a child
    # would report its parent's peak (the benchmark's, after creating 10,000 objects).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

kubeconfig, budget = sys.argv[1], int(sys.argv[2])
rss_before = high_water_kib()
api = KubeApi(load_api_client(kubeconfig))
sweeper = Sweeper(api, policy=load_policy(), settings=SweeperSettings(max_deletes_per_cycle=budget))
started = time.perf_counter()
report = sweeper.run_once(now=datetime.now(UTC))
wall = time.perf_counter() - started
print(json.dumps({
    "wall": wall,
    "seen": len(report.entries),
    "due": len(report.to_delete),
    "deleted": report.deletion.deleted,
    "complete": report.complete,
    "errors": report.errors,
    "requests": api.counts,
    "rss_before_kib": rss_before,
    "rss_peak_kib": high_water_kib(),
}))
"""


def sweep_once(kubeconfig: Path, budget: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(kubeconfig), str(budget)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1000, 10000], help="objects per run"
    )
    args = parser.parse_args()
    for total in args.sizes:
        # A fresh control plane per size: the pass sees exactly the objects made for it.
        with ControlPlane(crds=True) as plane:
            tag = f"n{total}"
            began = time.perf_counter()
            expired = populate(plane, total, tag)
            created = time.perf_counter() - began
            # Every expired object may go in this one pass: the budget is not what is measured.
            figures = sweep_once(plane.kubeconfig_path, budget=total)
            requests = figures["requests"]
            pages = requests.get("GET", 0)
            print(
                f"{figures['seen']:>6} objects ({expired} expired; created in {created:.1f} s): "
                f"pass {figures['wall']:.2f} s, {figures['seen'] / figures['wall']:.0f} objects/s, "
                f"peak RSS {figures['rss_peak_kib'] / 1024:.0f} MiB "
                f"(before the pass {figures['rss_before_kib'] / 1024:.0f} MiB)"
            )
            print(
                f"        requests {sum(requests.values())}: GET (list pages and reads) {pages}, "
                f"DELETE {requests.get('DELETE', 0)}, POST (Events) {requests.get('POST', 0)}; "
                f"deleted {figures['deleted']}/{figures['due']}, complete={figures['complete']}"
            )
            if figures["errors"]:
                print(f"        errors: {figures['errors']}")


if __name__ == "__main__":
    main()
