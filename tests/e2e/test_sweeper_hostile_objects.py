"""Tier 3: no object a tenant can write stops a sweep pass; failing passes are reported."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest

from kaptain_warden.sweeper.loop import run_forever
from kaptain_warden.sweeper.metrics import Heartbeat, MetricsServer, SweeperMetrics
from sweeper_kit import HOUR, body, create, exists, now, policy_for_tests, set_status, sweeper

pytestmark = pytest.mark.e2e

POLICY = policy_for_tests()
REVISION = ("serving.knative.dev/v1", "Revision")
MODIFIED = "serving.knative.dev/routingStateModified"


def revision(name: str, modified: str) -> dict:
    return body(
        *REVISION,
        name,
        labels={
            "serving.knative.dev/configuration": "cfg",
            "serving.knative.dev/routingState": "reserve",
        },
        annotations={MODIFIED: modified},
    )


@pytest.mark.parametrize("modified", ["9999-12-31T23:59:59Z", "8999-12-31T23:59:59-23:59"])
def test_a_far_future_routing_state_keeps_that_revision_and_the_pass_goes_on(
    kube_admin, namespace, modified
):
    """`9999-12-31T23:59:59Z` plus a retention age overflowed datetime: every pass raised
    OverflowError before its first delete."""
    t = now()
    create(kube_admin, namespace, body("serving.knative.dev/v1", "Configuration", "cfg"))
    set_status(
        kube_admin,
        namespace,
        body("serving.knative.dev/v1", "Configuration", "cfg"),
        {"latestReadyRevisionName": "cfg-00009"},
    )
    hostile = create(kube_admin, namespace, revision("cfg-00001", modified))
    expired = create(kube_admin, namespace, body("v1", "Secret", "expired", expires=t - HOUR))

    report = sweeper(kube_admin, POLICY, namespace).run_once(now=t)

    reasons = {e.name: e.reason for e in report.entries}
    assert reasons["cfg-00001"].startswith("kept:") and MODIFIED in reasons["cfg-00001"]
    assert modified in reasons["cfg-00001"]
    assert exists(kube_admin, namespace, hostile) is not None
    assert exists(kube_admin, namespace, expired) is None  # the rest of the pass went on


def test_consecutive_failed_passes_turn_health_bad_and_are_counted(kube_admin, namespace):
    """A pass that raises every time used to leave /healthz at 200."""
    broken = sweeper(kube_admin, POLICY, namespace, metrics=SweeperMetrics())
    calls = []

    def explode(*, now, guard=None, after_decisions=None):
        calls.append(now)
        if len(calls) >= 5:
            stop.set()
        raise RuntimeError("a pass that cannot finish")

    broken.run_once = explode  # type: ignore[method-assign]
    heartbeat = Heartbeat(allowance=600, max_failed_passes=3)
    server = MetricsServer(
        broken.metrics,
        address="127.0.0.1",
        port=0,
        healthy=heartbeat.healthy,
        status=heartbeat.status,
    ).start()
    stop = threading.Event()
    healthz = f"http://127.0.0.1:{server.port}/healthz"
    try:
        with urllib.request.urlopen(healthz, timeout=5) as answer:
            assert answer.status == 200
        run_forever(
            broken, stop=stop, interval=0, heartbeat=heartbeat.beat, passed=heartbeat.passed
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(healthz, timeout=5)
        assert info.value.code == 503
        assert b"the last 5 passes failed" in info.value.read()
        text = broken.metrics.render().decode()
        assert "kaptain_warden_sweeper_consecutive_failed_passes 5.0" in text
        # One pass that runs to its end makes it healthy again.
        heartbeat.passed(True)
        with urllib.request.urlopen(healthz, timeout=5) as answer:
            assert answer.status == 200
    finally:
        server.stop()
