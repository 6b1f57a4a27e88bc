"""Benchmark: what the warden's two webhooks add to creating a Secret through a real
kube-apiserver, with and without them interleaved request by request on the same etcd state.

    KUBEBUILDER_ASSETS=$(hack/test-assets | tail -n 1) .venv/bin/python bench/e2e_admission.py

One control plane, one `kaptain-warden serve` (2 workers x 4 threads, JSON logs at INFO, both
webhooks registered with failurePolicy Fail), a trivial webhook pair (`_trivial_webhook.py`:
HTTPS, answers at once with the warden's patch, decides nothing), and three namespaces alike in
every way (the same Kubeflow-profile RBAC, a notebook ServiceAccount each) but one: the
webhook configurations' namespaceSelectors send the API server to no webhook in `bench-plain`,
to the trivial pair in `bench-floor` and to the warden's pair in `bench-warden`, for every
CREATE. A round creates --pairs triples of Secrets, one in each namespace back to back (which
one goes first rotates triple by triple), as three notebook identities on kept-alive
connections; then it deletes them all, so every round starts from the same etcd state. Per
round: the median and p99 of each arm, the added median (the difference of the medians with
the warden's webhooks and without any), and the median and p99 of the *paired* differences
(each warden create minus the plain create next to it: a p99 of the added time, not a
difference of p99s); the same against the trivial webhooks (the floor: what calling any two
webhooks costs on this machine) and the warden over the floor.

A script, not a test: it prints figures and writes bench/results/e2e_admission.json. Loopback
only; it stops by itself and leaves nothing behind (the harness removes its directories).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import re
import ssl
import statistics
import time
import urllib.request
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from kubernetes import client as k8s

from _rounds import Rounds, add_arguments, percentile
from _trivial_webhook import TrivialWebhook
from kaptain_warden.install.webhook_configurations import (
    NAMESPACE_NAME_LABEL,
    WebhookClient,
    webhook_configurations,
)
from kaptain_warden.kube.client import request_json
from kaptain_warden.kube.errors import ApiError
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.stack import WardenStack, create_profile_namespace, notebook_user

PLAIN = "bench-plain"
FLOOR = "bench-floor"
WARDEN = "bench-warden"
ARMS = ("without webhooks", "trivial webhooks", "with webhooks")
WITHOUT, TRIVIAL, WITH = ARMS
NAMESPACE = dict(zip(ARMS, (PLAIN, FLOOR, WARDEN), strict=True))
LABEL = "bench.kaptain-warden/e2e"


class BenchStack(WardenStack):
    """The warden's stack with PLAIN and FLOOR left out of both webhooks' namespaceSelector."""

    def configurations(self) -> tuple[dict[str, Any], dict[str, Any]]:
        mutating, validating = super().configurations()
        for configuration in (mutating, validating):
            for webhook in configuration["webhooks"]:
                (expression,) = webhook["namespaceSelector"]["matchExpressions"]
                expression["values"] = sorted([*expression["values"], PLAIN, FLOOR])
        return mutating, validating


def register_trivial(admin: k8s.ApiClient, stack: WardenStack, webhook: TrivialWebhook) -> None:
    """The warden's configurations (same rules, same failure policy), pointed at `webhook` and
    selecting FLOOR only."""
    configurations = webhook_configurations(
        policy=stack.policy,
        client=WebhookClient(url=webhook.url),
        ca_bundle=stack.ca_path.read_bytes(),
        name="bench-trivial",
        failure_policy="Fail",
        timeout_seconds=stack.timeout_seconds,
    )
    for configuration in configurations:
        for hook in configuration["webhooks"]:
            hook["name"] = hook["name"].replace("warden.kaptain.io", "trivial.bench")
            hook["namespaceSelector"] = {"matchLabels": {NAMESPACE_NAME_LABEL: FLOOR}}
        plural = configuration["kind"].lower() + "s"
        request_json(
            admin, "POST", f"/apis/admissionregistration.k8s.io/v1/{plural}", body=configuration
        )


def unregister_trivial(admin: k8s.ApiClient) -> None:
    for plural in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        with contextlib.suppress(ApiError):
            request_json(
                admin, "DELETE", f"/apis/admissionregistration.k8s.io/v1/{plural}/bench-trivial"
            )


def warden_patch(stack: WardenStack) -> bytes:
    """The JSON patch the warden answers for the benchmark's Secret (what the trivial
    webhook sends back for every create: the API server applies the same patch)."""
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "namespace": FLOOR,
            "operation": "CREATE",
            "userInfo": {
                "username": notebook_user(FLOOR),
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{FLOOR}"],
            },
            "object": {"apiVersion": "v1", "kind": "Secret", **body("patch")},
        },
    }
    context = ssl.create_default_context(cafile=str(stack.ca_path))
    request = urllib.request.Request(
        f"{stack.url}/mutate",
        data=orjson.dumps(review),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        patch = orjson.loads(answer.read())["response"]["patch"]
    return base64.b64decode(patch)


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
            "mutate call to the trivial webhook, API server's view": mean_ms(
                api_before, api_after, "mutate.trivial.bench"
            ),
            "validate call to the trivial webhook, API server's view": mean_ms(
                api_before, api_after, "validate.trivial.bench"
            ),
            "mutate review, in the warden": mean_ms(warden_before, warden_after, "mutate"),
            "validate review, in the warden": mean_ms(warden_before, warden_after, "validate"),
        }


def wait_until_called(api: k8s.ApiClient, webhook: TrivialWebhook, timeout: float = 30) -> None:
    """Create (dry run) in FLOOR until the API server calls both trivial webhooks: a webhook
    configuration takes effect a moment after it is created."""
    deadline = time.monotonic() + timeout
    while True:
        answered = webhook.answered
        request_json(
            api,
            "POST",
            f"/api/v1/namespaces/{FLOOR}/secrets",
            query=[("dryRun", "All")],
            body=body("probe"),
        )
        if webhook.answered - answered == 2:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the trivial webhooks were not called within {timeout:.0f} s")
        time.sleep(0.2)


def paired(samples: dict[str, list[float]], minuend: str, subtrahend: str) -> list[float]:
    """Each create of `minuend` minus the create of `subtrahend` next to it."""
    return [b - a for a, b in zip(samples[subtrahend], samples[minuend], strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=300,
        help="creates per arm and round, the arms interleaved one by one (default 300)",
    )
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured creates per arm first")
    add_arguments(parser)
    args = parser.parse_args()
    bench = Rounds.from_args(
        "e2e_admission",
        args,
        title="Secret CREATE through kube-apiserver, with and without the warden's webhooks",
        arms=ARMS,
        setup={
            "creates per arm and round": args.pairs,
            "server": "kaptain-warden serve, 2 workers x 4 threads, TLS, JSON logs at INFO",
            "webhooks": "mutating + validating, failurePolicy Fail",
            "trivial webhooks": "the same two registrations pointed at an HTTPS server in the "
            "benchmark's process that answers at once (the warden's patch on /mutate, allowed "
            "on /validate) and decides nothing: the floor of calling any two webhooks",
            "client": "one kept-alive connection per namespace, serial, impersonating the "
            "namespace's notebook ServiceAccount",
        },
    )
    for name in ("median", "p99"):
        bench.declare(name, "ms")
    for name in (
        "added median",
        "paired median",
        "paired p99",
        "floor: added median",
        "floor: paired median",
        "over the floor: added median",
        "over the floor: paired median",
    ):
        bench.declare(name, "ms")
    for name in ("mutate", "validate"):
        bench.declare(f"{name} call, API server's view", "ms (mean)")
        bench.declare(f"{name} call to the trivial webhook, API server's view", "ms (mean)")
        bench.declare(f"{name} review, in the warden", "ms (mean)")
    bench.declare("trivial webhook connections", "per round")
    with ControlPlane(crds=False) as plane, plane.api_client() as admin:
        for namespace in NAMESPACE.values():
            create_profile_namespace(admin, namespace)
        with BenchStack(plane, failure_policy="Fail", log_format="json") as stack:
            trivial = TrivialWebhook(
                stack.work_dir / "tls.crt", stack.work_dir / "tls.key", warden_patch(stack)
            )
            breakdown = Breakdown(admin, stack)
            clients = {
                arm: plane.impersonating_api_client(notebook_user(NAMESPACE[arm])) for arm in ARMS
            }
            try:
                trivial.__enter__()
                register_trivial(admin, stack, trivial)
                wait_until_called(clients[TRIVIAL], trivial)
                for _ in range(args.warmup):
                    for arm in ARMS:
                        create(clients[arm], NAMESPACE[arm], "warm")
                clean(admin)
                for n in bench.rounds():
                    samples: dict[str, list[float]] = {arm: [] for arm in ARMS}
                    before = breakdown.read()
                    connections = trivial.connections
                    for i in range(args.pairs):
                        for arm in bench.order(i):  # rotate which arm goes first
                            samples[arm].append(create(clients[arm], NAMESPACE[arm], f"r{n}"))
                    costs = breakdown.figures(before)
                    costs["trivial webhook connections"] = trivial.connections - connections
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
                    median = {arm: statistics.median(samples[arm]) for arm in ARMS}
                    warden = paired(samples, WITH, WITHOUT)
                    bench.record_round(
                        n,
                        {
                            "added median": median[WITH] - median[WITHOUT],
                            "paired median": statistics.median(warden),
                            "paired p99": percentile(warden, 0.99),
                            "floor: added median": median[TRIVIAL] - median[WITHOUT],
                            "floor: paired median": statistics.median(
                                paired(samples, TRIVIAL, WITHOUT)
                            ),
                            "over the floor: added median": median[WITH] - median[TRIVIAL],
                            "over the floor: paired median": statistics.median(
                                paired(samples, WITH, TRIVIAL)
                            ),
                        },
                        kind="absolute",
                    )
                    bench.record_round(n, costs, kind="absolute")
            finally:
                for api in clients.values():
                    api.close()
                unregister_trivial(admin)
                trivial.stop()
    bench.ratio("median", WITH, WITHOUT)
    bench.ratio("median", WITH, TRIVIAL)
    bench.note(
        "added median = median with webhooks - median without, in the same round; paired = "
        "each create with webhooks minus the create without next to it (target: added median "
        "<= 2 ms)"
    )
    bench.note(
        "floor: the same for the trivial webhooks (what the API server spends to call two "
        "webhooks that answer at once: encoding the review, HTTPS, decoding the answer, "
        "applying the patch); over the floor: with the warden's webhooks - with the trivial "
        "ones, what the warden itself adds"
    )
    bench.note(
        "call, API server's view: the mean time the API server spent per call of that webhook "
        "(its apiserver_admission_webhook_admission_duration_seconds); review, in the warden: "
        "the mean time the warden spent from the body received to the answer encoded; the "
        "difference is TLS, HTTP and the worker's hand-offs"
    )
    bench.headline("added median")
    bench.headline("floor: added median")
    bench.headline("over the floor: added median")
    bench.headline("paired p99")
    bench.headline(f"median: {WITH} / {WITHOUT}")
    bench.headline("mutate call, API server's view")
    bench.headline("mutate call to the trivial webhook, API server's view")
    bench.headline("mutate review, in the warden")
    bench.finish()


if __name__ == "__main__":
    main()
