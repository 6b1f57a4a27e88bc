"""Benchmark: what the warden's two webhooks add to creating a Secret through a real
kube-apiserver, with and without them interleaved request by request on the same etcd state.

    KUBEBUILDER_ASSETS=$(hack/test-assets | tail -n 1) .venv/bin/python bench/e2e_admission.py

One control plane, one `kaptain-warden serve` (2 workers x 4 threads, JSON logs at INFO, both
webhooks registered with failurePolicy Fail), and two namespaces alike in every way (the same
Kubeflow-profile RBAC, a notebook ServiceAccount each) but one: the webhook configurations'
namespaceSelector leaves `bench-plain` out, so the API server calls no webhook there and both
webhooks for every CREATE in `bench-warden`. A round creates --pairs pairs of Secrets, one in
each namespace back to back (which one goes first alternates pair by pair), as two notebook
identities on kept-alive connections; then it deletes them all, so every round starts from the
same etcd state. Per round: the median and p99 of each arm, the added median (the difference
of the two medians), and the median and p99 of the *paired* differences (each warden create
minus the plain create next to it: a p99 of the added time, not a difference of p99s).

A script, not a test: it prints figures and writes bench/results/e2e_admission.json. Loopback
only; it stops by itself and leaves nothing behind (the harness removes its directories).
"""

from __future__ import annotations

import argparse
import re
import ssl
import statistics
import time
import urllib.request
import uuid
from collections.abc import Iterable
from typing import Any

from kubernetes import client as k8s

from _rounds import Rounds, add_arguments, percentile
from kaptain_warden.kube.client import request_json
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.stack import WardenStack, create_profile_namespace, notebook_user

PLAIN = "bench-plain"
WARDEN = "bench-warden"
ARMS = ("without webhooks", "with webhooks")
NAMESPACE = dict(zip(ARMS, (PLAIN, WARDEN), strict=True))
LABEL = "bench.kaptain-warden/e2e"


class BenchStack(WardenStack):
    """The warden's stack with PLAIN left out of both webhooks' namespaceSelector."""

    def configurations(self) -> tuple[dict[str, Any], dict[str, Any]]:
        mutating, validating = super().configurations()
        for configuration in (mutating, validating):
            for webhook in configuration["webhooks"]:
                (expression,) = webhook["namespaceSelector"]["matchExpressions"]
                expression["values"] = sorted([*expression["values"], PLAIN])
        return mutating, validating


def body(tag: str) -> dict[str, Any]:
    """A registry Secret as the Kaptain SDK creates one (about 200 bytes)."""
    return {
        "metadata": {"name": f"{tag}-{uuid.uuid4().hex[:8]}", "labels": {LABEL: "true"}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "eyJhdXRocyI6e319"},
    }


def create(api: k8s.ApiClient, namespace: str, tag: str) -> float:
    """Create one Secret; its latency in ms, as the client sees it."""
    payload = body(tag)
    started = time.perf_counter()
    request_json(api, "POST", f"/api/v1/namespaces/{namespace}/secrets", body=payload)
    return (time.perf_counter() - started) * 1000


def clean(admin: k8s.ApiClient) -> None:
    """Delete every Secret this benchmark created, in both namespaces."""
    for namespace in NAMESPACE.values():
        request_json(
            admin,
            "DELETE",
            f"/api/v1/namespaces/{namespace}/secrets",
            query=[("labelSelector", LABEL)],
        )


_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def histogram_sums(text: str, metric: str, by: str, **where: str) -> dict[str, list[float]]:
    """{label `by`: [sum, count]} of a Prometheus histogram, over the series matching `where`."""
    sums: dict[str, list[float]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match[1] not in (f"{metric}_sum", f"{metric}_count"):
            continue
        labels = dict(_LABEL.findall(match[2]))
        if any(labels.get(k) != v for k, v in where.items()):
            continue
        entry = sums.setdefault(labels.get(by, ""), [0.0, 0.0])
        entry[0 if match[1].endswith("_sum") else 1] += float(match[3])
    return sums


def mean_ms(before: dict[str, list[float]], after: dict[str, list[float]], key: str) -> float:
    """The mean, in ms, of what a histogram observed between two readings."""
    total = after.get(key, [0.0, 0.0])[0] - before.get(key, [0.0, 0.0])[0]
    count = after.get(key, [0.0, 0.0])[1] - before.get(key, [0.0, 0.0])[1]
    return 1000 * total / count if count else float("nan")


class Breakdown:
    """Per-call means from both sides: the API server's own view of each webhook call
    (`apiserver_admission_webhook_admission_duration_seconds`) and the warden's time per
    review from the body received to the answer encoded
    (`kaptain_warden_admission_duration_seconds`)."""

    def __init__(self, admin: k8s.ApiClient, stack: WardenStack) -> None:
        self._admin = admin
        self._url = f"{stack.url}/metrics"
        self._context = ssl.create_default_context(cafile=str(stack.ca_path))

    def read(self) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        api = self._admin.call_api(
            *self._admin.param_serialize(
                "GET", "/metrics", header_params={"Accept": "text/plain"}, auth_settings=[]
            )
        )
        apiserver = histogram_sums(
            api.read().decode(),
            "apiserver_admission_webhook_admission_duration_seconds",
            "name",
            operation="CREATE",
        )
        # Each worker answers for all: prometheus multiprocess mode sums their files.
        with urllib.request.urlopen(self._url, context=self._context, timeout=10) as answer:
            warden = histogram_sums(
                answer.read().decode(), "kaptain_warden_admission_duration_seconds", "endpoint"
            )
        return apiserver, warden

    def figures(self, before: Iterable[dict[str, list[float]]]) -> dict[str, float]:
        api_before, warden_before = before
        api_after, warden_after = self.read()
        return {
            "mutate call, API server's view": mean_ms(
                api_before, api_after, "mutate.warden.kaptain.io"
            ),
            "validate call, API server's view": mean_ms(
                api_before, api_after, "validate.warden.kaptain.io"
            ),
            "mutate review, in the warden": mean_ms(warden_before, warden_after, "mutate"),
            "validate review, in the warden": mean_ms(warden_before, warden_after, "validate"),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pairs", type=int, default=300, help="pairs of creates per round (default 300)"
    )
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured pairs first")
    add_arguments(parser)
    args = parser.parse_args()
    bench = Rounds.from_args(
        "e2e_admission",
        args,
        title="Secret CREATE through kube-apiserver, with and without the warden's webhooks",
        arms=ARMS,
        setup={
            "pairs per round": args.pairs,
            "server": "kaptain-warden serve, 2 workers x 4 threads, TLS, JSON logs at INFO",
            "webhooks": "mutating + validating, failurePolicy Fail",
            "client": "one kept-alive connection per namespace, serial, impersonating the "
            "namespace's notebook ServiceAccount",
        },
    )
    for name in ("median", "p99"):
        bench.declare(name, "ms")
    for name in ("added median", "paired median", "paired p99"):
        bench.declare(name, "ms")
    for name in ("mutate", "validate"):
        bench.declare(f"{name} call, API server's view", "ms (mean)")
        bench.declare(f"{name} review, in the warden", "ms (mean)")
    with ControlPlane(crds=False) as plane, plane.api_client() as admin:
        for namespace in NAMESPACE.values():
            create_profile_namespace(admin, namespace)
        with BenchStack(plane, failure_policy="Fail", log_format="json") as stack:
            breakdown = Breakdown(admin, stack)
            clients = {
                arm: plane.impersonating_api_client(notebook_user(NAMESPACE[arm])) for arm in ARMS
            }
            try:
                for _ in range(args.warmup):
                    for arm in ARMS:
                        create(clients[arm], NAMESPACE[arm], "warm")
                clean(admin)
                for n in bench.rounds():
                    samples: dict[str, list[float]] = {arm: [] for arm in ARMS}
                    before = breakdown.read()
                    for i in range(args.pairs):
                        for arm in bench.order(i):  # alternate which arm goes first
                            samples[arm].append(create(clients[arm], NAMESPACE[arm], f"r{n}"))
                    costs = breakdown.figures(before)
                    clean(admin)
                    for arm in bench.order(n):
                        bench.record(
                            n,
                            arm,
                            {
                                "median": statistics.median(samples[arm]),
                                "p99": percentile(samples[arm], 0.99),
                            },
                        )
                    paired = [
                        b - a for a, b in zip(samples[ARMS[0]], samples[ARMS[1]], strict=True)
                    ]
                    bench.record_round(
                        n,
                        {
                            "added median": statistics.median(samples[ARMS[1]])
                            - statistics.median(samples[ARMS[0]]),
                            "paired median": statistics.median(paired),
                            "paired p99": percentile(paired, 0.99),
                        },
                        kind="absolute",
                    )
                    bench.record_round(n, costs, kind="absolute")
            finally:
                for api in clients.values():
                    api.close()
    bench.ratio("median", ARMS[1], ARMS[0])
    bench.note(
        "added median = median with webhooks - median without, in the same round; paired = "
        "each create with webhooks minus the create without next to it (target: added median "
        "<= 2 ms)"
    )
    bench.note(
        "call, API server's view: the mean time the API server spent per call of that webhook "
        "(its apiserver_admission_webhook_admission_duration_seconds); review, in the warden: "
        "the mean time the warden spent from the body received to the answer encoded; the "
        "difference is TLS, HTTP and the worker's hand-offs"
    )
    bench.headline("added median")
    bench.headline("paired p99")
    bench.headline(f"median: {ARMS[1]} / {ARMS[0]}")
    bench.headline("mutate call, API server's view")
    bench.headline("mutate review, in the warden")
    bench.finish()


if __name__ == "__main__":
    main()
