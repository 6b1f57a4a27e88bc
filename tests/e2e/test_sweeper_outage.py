"""Tier 3: the API server stops in the middle of a pass; the sweeper logs, survives, recovers."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from kaptain_warden.kube.api import KubeApi
from kaptain_warden.sweeper.loop import CycleReport, Sweeper, run_forever
from kaptain_warden.sweeper.settings import SweeperSettings
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.errors import ControlPlaneError
from polling import eventually
from sweeper_kit import HOUR, body, create, exists, now, policy_for_tests

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def own_control_plane() -> Iterator[ControlPlane]:
    """A control plane of our own: the session's must not be paused under other tests."""
    plane = ControlPlane(crds=True)
    try:
        plane.start()
    except ControlPlaneError as error:
        pytest.fail(f"could not start a control plane: {error}", pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


class RecordingSweeper(Sweeper):
    """Keeps every pass's report, for the test to watch."""

    reports: list[CycleReport]

    def run_once(self, **kw) -> CycleReport:  # type: ignore[override]
        report = super().run_once(**kw)
        self.reports.append(report)
        return report


def test_the_api_server_stopped_mid_cycle(own_control_plane, caplog):
    plane = own_control_plane
    (apiserver,) = [p for p in plane.processes if p.name == "kube-apiserver"]
    configuration = plane.client_configuration()
    configuration.retries = 0  # urllib3 would retry each request 3 times: slow, not different
    namespace = "outage"
    with k8s.ApiClient(plane.client_configuration()) as admin:
        k8s.CoreV1Api(admin).create_namespace({"metadata": {"name": namespace}})
        objects = [
            create(admin, namespace, body("v1", "Secret", f"s{i}", expires=now() - HOUR))
            for i in range(3)
        ]

    paused = threading.Event()

    def stop_the_api_server(entries) -> None:
        """Between decisions and deletes of the first pass: SIGSTOP, as a hung server."""
        if not paused.is_set():
            assert sum(e.action == "delete" for e in entries) == 3
            os.killpg(apiserver.pid, signal.SIGSTOP)
            paused.set()

    stop = threading.Event()
    with k8s.ApiClient(configuration) as api_client:
        sweeper = RecordingSweeper(
            KubeApi(api_client, timeout=0.5),
            policy=policy_for_tests(),
            settings=SweeperSettings(
                namespaces=(namespace,), delete_workers=2, delete_batch_size=2
            ),
        )
        sweeper.reports = []
        loop = threading.Thread(
            target=run_forever,
            kwargs={
                "sweeper": sweeper,
                "stop": stop,
                "interval": 0.2,
                "after_decisions": stop_the_api_server,
            },
            daemon=True,
        )
        try:
            with caplog.at_level("INFO"):
                loop.start()
                # The interrupted pass: its deletes time out, it stops deleting and says why.
                eventually(lambda: sweeper.reports, "the interrupted pass to end", timeout=60)
                interrupted = sweeper.reports[0]
                assert not interrupted.complete
                assert interrupted.deletion.deleted < 3
                assert "backing off" in (interrupted.deletion.stopped or "")
                # Not sent, or sent to a server that did not answer: deferred, not errors.
                assert interrupted.deletion.errors == 0
                assert interrupted.deletion.deferred == 3 - interrupted.deletion.deleted
                assert {e.outcome for e in interrupted.to_delete} <= {"deleted", "deferred"}
                # One more pass while it is down: nothing can be listed, nothing is deleted.
                eventually(
                    lambda: len(sweeper.reports) >= 2, "a pass during the outage", timeout=60
                )
                assert sweeper.reports[1].errors and not sweeper.reports[1].entries
                assert loop.is_alive()
                os.killpg(apiserver.pid, signal.SIGCONT)
                # Back: a pass completes and deletes what the interrupted one could not. Not an
                # exact count: a delete in flight when the server was stopped may still land
                # after SIGCONT, though its client gave up (the objects are checked below).
                resumed_at = len(sweeper.reports)
                eventually(
                    lambda: any(r.complete for r in sweeper.reports[resumed_at:]),
                    "a complete pass once the API server is back",
                    timeout=60,
                )
        finally:
            os.killpg(apiserver.pid, signal.SIGCONT)
            stop.set()
            loop.join(timeout=60)
        assert not loop.is_alive()
    with k8s.ApiClient(plane.client_configuration()) as admin:
        assert all(exists(admin, namespace, obj) is None for obj in objects)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("not deleted Secret outage/") for m in messages)
    assert any(m.startswith("cannot list secrets") for m in messages)
    assert any(m.startswith("sweep pass INCOMPLETE") for m in messages)
    assert not any(m.startswith("sweep pass failed") for m in messages)  # no crash, no traceback
