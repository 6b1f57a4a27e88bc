"""Benchmark: latency of creating Secrets through a real kube-apiserver, with and without the
warden's webhooks registered (same run, same API server), and the milliseconds they add.

    KUBEBUILDER_ASSETS=$(hack/test-assets | tail -n 1) .venv/bin/python bench/e2e_admission.py

A script, not a test: it prints figures. Loopback only; it stops by itself.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from kaptain_warden.kube.client import request_json
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.stack import WardenStack, create_profile_namespace, notebook_user

NAMESPACE = "bench"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def create_secrets(plane: ControlPlane, count: int, tag: str) -> list[float]:
    """Serially create `count` Secrets as the notebook identity; latency of each in ms."""
    latencies = []
    path = f"/api/v1/namespaces/{NAMESPACE}/secrets"
    with plane.impersonating_api_client(notebook_user(NAMESPACE)) as api:
        for i in range(count):
            body = {
                "metadata": {"name": f"{tag}-{i}-{uuid.uuid4().hex[:6]}"},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": "eyJhdXRocyI6e319"},
            }
            started = time.perf_counter()
            request_json(api, "POST", path, body=body)
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def report(label: str, samples: list[float]) -> tuple[float, float]:
    median, p99 = statistics.median(samples), percentile(samples, 0.99)
    print(f"{label:<26} n={len(samples):>5}  median {median:6.2f} ms  p99 {p99:6.2f} ms")
    return median, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="Secrets per phase (default 1000)")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured creates per phase")
    args = parser.parse_args()
    with ControlPlane() as plane:
        with plane.api_client() as admin:
            create_profile_namespace(admin, NAMESPACE)
        create_secrets(plane, args.warmup, "warm-plain")
        plain = create_secrets(plane, args.count, "plain")
        with WardenStack(plane, failure_policy="Fail", log_format="json"):
            create_secrets(plane, args.warmup, "warm-warden")
            warden = create_secrets(plane, args.count, "warden")
    print(f"creating {args.count} Secrets through kube-apiserver, one client, keep-alive")
    base_median, base_p99 = report("without webhooks", plain)
    median, p99 = report("with both warden webhooks", warden)
    print(
        f"{'added by the webhooks':<26}          median {median - base_median:6.2f} ms  "
        f"p99 {p99 - base_p99:6.2f} ms   (target: <= 3 ms at the median)"
    )


if __name__ == "__main__":
    main()
