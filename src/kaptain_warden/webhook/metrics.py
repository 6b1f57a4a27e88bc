"""The admission server's Prometheus metrics, aggregated across gunicorn worker processes."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# prometheus_client picks its storage when it is imported: with this variable set (by
# `kaptain-warden serve`, before gunicorn forks) every worker writes its samples to mmap files
# in that directory and any worker's /metrics sums them all.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# A server's samples directory: <prefix><arbiter pid>-<random>, so a later server can tell
# whose it was.
METRICS_DIR_PREFIX = "kaptain-warden-metrics-"

logger = logging.getLogger(__name__)

# Reviews take about a millisecond; the API server gives up after timeoutSeconds (default 10).
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale_metrics_dirs(parent: str | None = None) -> list[str]:
    """Remove the samples directories that servers which died without cleaning up left in
    `parent` (default: the temporary directory); returns what was removed.

    A killed server (SIGKILL, OOM) never runs its cleanup, and in a container its memory-backed
    /tmp outlives the restart: left alone, every restart would add one more directory until the
    volume's size limit evicts the pod. Only our own directories whose process is gone are
    removed; a pid equal to ours is stale too (a restarted container runs as the same pid).
    """
    removed = []
    base = Path(parent or tempfile.gettempdir())
    for path in base.glob(f"{METRICS_DIR_PREFIX}*"):
        pid_text = path.name.removeprefix(METRICS_DIR_PREFIX).split("-", 1)[0]
        try:
            if not pid_text.isdigit() or path.is_symlink() or not path.is_dir():
                continue
            if path.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        pid = int(pid_text)
        if pid != os.getpid() and _is_alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    if removed:
        logger.info(
            "removed %d metrics directories left by servers that died",
            len(removed),
            extra={"removed": removed},
        )
    return removed


def new_metrics_dir(parent: str | None = None) -> str:
    """A fresh samples directory for this server, after removing the stale ones."""
    remove_stale_metrics_dirs(parent)
    return tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-", dir=parent)


CERTIFICATE_EXPIRY = "kaptain_warden_serving_certificate_expiry_timestamp_seconds"


class CertificateExpiry(Collector):
    """The serving certificate's notAfter, read from its file at scrape time.

    Read on every scrape (a few hundred microseconds): the file is renewed in place while
    the server runs, and the gauge must show the certificate new connections get.
    Unreadable: no sample (the dashboard's panel shows no data).
    """

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._cache: tuple[bytes, float] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            CERTIFICATE_EXPIRY,
            "Unix time at which the serving certificate (the file's first one) expires.",
        )
        try:
            pem = self._path.read_bytes()
            if self._cache is None or self._cache[0] != pem:
                not_after = x509.load_pem_x509_certificate(pem).not_valid_after_utc
                self._cache = (pem, not_after.timestamp())
            family.add_metric([], self._cache[1])
        except (OSError, ValueError):
            pass
        yield family


class AdmissionMetrics:
    """Counters and the latency histogram of one admission server."""

    def __init__(self, *, certificate_file: str | None = None) -> None:
        self._multiprocess_dir = os.environ.get(MULTIPROCESS_ENV)
        # In one process the metrics live in a registry of their own, so that several apps
        # (tests) never collide in the global one; across processes the files are the registry.
        self._registry = CollectorRegistry() if self._multiprocess_dir is None else None
        self._certificate = (
            CertificateExpiry(certificate_file) if certificate_file is not None else None
        )
        if self._registry is not None and self._certificate is not None:
            self._registry.register(self._certificate)
        self.requests = Counter(
            "kaptain_warden_admission_requests",
            "AdmissionReviews answered, by endpoint, operation and verdict "
            "(allowed, patched, denied, error).",
            ["endpoint", "operation", "verdict"],
            registry=self._registry,
        )
        self.duration = Histogram(
            "kaptain_warden_admission_duration_seconds",
            "Time from receiving a review's body to having its answer encoded.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self._registry,
        )
        self.internal_errors = Counter(
            "kaptain_warden_admission_internal_errors",
            "Unexpected exceptions while deciding a review (answered per the *_on_error settings).",
            ["endpoint"],
            registry=self._registry,
        )
        self.bad_requests = Counter(
            "kaptain_warden_admission_bad_requests",
            "Requests refused with an HTTP 4xx because they are not usable AdmissionReviews.",
            ["endpoint", "code"],
            registry=self._registry,
        )
        self.lookup_errors = Counter(
            "kaptain_warden_admission_lookup_errors",
            "Failed parent, namespace-label or provenance lookups (the review went on).",
            ["lookup"],
            registry=self._registry,
        )

        # Label children, looked up once: `labels()` costs more than the increment itself.
        self._answered: dict[tuple[str, str, str], Any] = {}
        self._durations: dict[str, Any] = {}

    @property
    def registry(self) -> CollectorRegistry | None:
        """The registry of a single-process server (None in multiprocess mode: the files are)."""
        return self._registry

    def review_answered(self, endpoint: str, operation: str, verdict: str, seconds: float) -> None:
        """Count one answered review and observe how long it took."""
        key = (endpoint, operation, verdict)
        counter = self._answered.get(key)
        if counter is None:
            counter = self._answered[key] = self.requests.labels(*key)
        counter.inc()
        histogram = self._durations.get(endpoint)
        if histogram is None:
            histogram = self._durations[endpoint] = self.duration.labels(endpoint)
        histogram.observe(seconds)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (of every worker in multiprocess mode)."""
        if self._registry is not None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        if self._certificate is not None:
            registry.register(self._certificate)
        return generate_latest(registry)
