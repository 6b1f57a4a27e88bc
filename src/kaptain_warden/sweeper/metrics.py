"""Prometheus metrics of the sweeper, served with `/healthz` by the one probe server."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from kaptain_warden.probes import Answer, ProbeServer, plain

__all__ = ["Heartbeat", "MetricsServer", "SweeperMetrics"]

_PREFIX = "kaptain_warden_sweeper"


class SweeperMetrics:
    """Every sweeper metric, in its own registry (so tests and two instances don't collide)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.seen = Gauge(
            f"{_PREFIX}_objects_seen",
            "Managed objects listed in the last completed pass.",
            ["group", "kind", "rule"],
            registry=r,
        )
        self.expired = Gauge(
            f"{_PREFIX}_objects_expired",
            "Objects decided `delete` in the last completed pass (before the budget).",
            ["group", "kind", "rule"],
            registry=r,
        )
        self.deleted = Counter(
            f"{_PREFIX}_objects_deleted",
            "Objects the API server accepted a delete for.",
            ["group", "kind", "rule"],
            registry=r,
        )
        self.delete_errors = Counter(
            f"{_PREFIX}_delete_errors",
            "Deletes that failed (not 404 and 409, which are expected, nor deferred ones).",
            ["group", "kind", "status"],
            registry=r,
        )
        self.deferred = Counter(
            f"{_PREFIX}_deletes_deferred",
            "Deletes not carried out because the API server was unavailable (no answer, 429, "
            "502, 503, 504), or not sent after backing off from it; the next pass redoes them.",
            ["group", "kind"],
            registry=r,
        )
        self.cycles = Counter(
            f"{_PREFIX}_cycles",
            "Passes by result: ok, incomplete (some kind or delete failed), skipped (not leader).",
            ["result"],
            registry=r,
        )
        self.cycle_duration = Histogram(
            f"{_PREFIX}_cycle_duration_seconds",
            "Duration of a pass.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300),
            registry=r,
        )
        self.last_success = Gauge(
            f"{_PREFIX}_last_success_timestamp_seconds",
            "Unix time at which the last complete pass ended.",
            registry=r,
        )
        self.leader = Gauge(
            f"{_PREFIX}_leader",
            "1 while this replica holds the sweeper Lease (or leader election is off), else 0.",
            registry=r,
        )
        self.failed_passes = Gauge(
            f"{_PREFIX}_consecutive_failed_passes",
            "Passes in a row that raised (0 after any pass that ran to its end).",
            registry=r,
        )
        self.budget_exhausted = Counter(
            f"{_PREFIX}_budget_exhausted",
            "Passes stopped by the per-cycle delete budget.",
            registry=r,
        )
        self.budget_streak = Gauge(
            f"{_PREFIX}_budget_exhausted_consecutive_passes",
            "Passes in a row stopped by the delete budget (0 after a pass that was not).",
            registry=r,
        )
        # Bounded cardinality: namespaces x rules x 4 states, never a label per object.
        self.objects = Gauge(
            f"{_PREFIX}_objects",
            "Governed objects in the last pass by namespace, rule and state: live, expiring "
            "(within the warning window), due, kept (keep honoured, protected or held).",
            ["namespace", "rule", "state"],
            registry=r,
        )
        self.warnings = Counter(
            f"{_PREFIX}_warnings",
            "ExpiringSoon warnings recorded (the warned-at annotation written and the Event sent).",
            ["rule"],
            registry=r,
        )
        self.warning_errors = Counter(
            f"{_PREFIX}_warning_errors",
            "Warnings that could not be recorded (patch refused or failed); retried next pass.",
            ["rule"],
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class MetricsServer(ProbeServer):
    """`GET /metrics` and `GET /healthz` on a daemon thread.

    `/healthz` answers 200 while `healthy()` holds (the loop is making progress, and passes
    do not keep failing) and 503 otherwise, with `status()` as the body, so a stuck sweeper
    is restarted by its liveness probe and a failing one is reported not ready.
    """

    def __init__(
        self,
        metrics: SweeperMetrics,
        *,
        address: str,
        port: int,
        healthy: Callable[[], bool] = lambda: True,
        status: Callable[[], str] = lambda: "stalled",
    ) -> None:
        def health() -> Answer:
            return plain(200, "ok") if healthy() else plain(503, status())

        super().__init__(
            {
                "/metrics": lambda: Answer(200, metrics.render(), CONTENT_TYPE_LATEST),
                "/healthz": health,
            },
            address=address,
            port=port,
            name="metrics",
        )


class Heartbeat:
    """Healthy while the loop has beaten within `allowance` seconds (monotonic clock) and
    fewer than `max_failed_passes` passes in a row have failed."""

    def __init__(
        self,
        allowance: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_failed_passes: int = 3,
    ) -> None:
        self._allowance = allowance
        self._clock = clock
        self._last = clock()
        self._max_failed = max_failed_passes
        self.failed_passes = 0

    def beat(self) -> None:
        """The loop made progress."""
        self._last = self._clock()

    def passed(self, ok: bool) -> None:
        """A pass ended: `ok` when it ran to its end, False when it raised."""
        self.failed_passes = 0 if ok else self.failed_passes + 1

    def healthy(self) -> bool:
        """True while the last beat is recent enough and passes do not keep failing."""
        recent = self._clock() - self._last <= self._allowance
        return recent and self.failed_passes < self._max_failed

    def status(self) -> str:
        """Why `healthy()` is false, for `/healthz`."""
        if self.failed_passes >= self._max_failed:
            return f"failing: the last {self.failed_passes} passes failed (see the logs)"
        return "stalled: no progress within the allowance"
