"""Tier 1: the Lease election's decisions (who may take a Lease, what a claim and a release
write), and its loop against a scripted API: standing down after the renew deadline, and
releasing the Lease promptly on stop. Tier 3 (tests/e2e/test_sweeper_leader.py) runs it
against a real API server."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from kaptain_warden.kube.errors import ApiError
from kaptain_warden.kube.leases import (
    Attempt,
    LeaseElection,
    claimed,
    may_take,
    micro_time,
    released,
)
from kaptain_warden.policies.timestamps import parse_time

NOW = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def held_by(holder: str | None, *, renewed: datetime = NOW, duration: int = 15) -> dict[str, Any]:
    return {
        "holderIdentity": holder,
        "leaseDurationSeconds": duration,
        "acquireTime": micro_time(renewed - timedelta(minutes=5)),
        "renewTime": micro_time(renewed),
        "leaseTransitions": 3,
    }


def test_micro_time_is_rfc3339_utc_with_microseconds():
    assert micro_time(NOW) == "2026-05-01T12:00:00.123456Z"
    assert parse_time(micro_time(NOW)) == NOW


@pytest.mark.parametrize(
    ("spec", "at", "may"),
    [
        ({}, NOW, True),  # nothing written yet
        (held_by(None), NOW, True),
        (held_by(""), NOW, True),  # released
        (held_by("me"), NOW, True),  # ours: a renewal
        (held_by("other"), NOW, False),
        (held_by("other"), NOW + timedelta(seconds=14.999), False),
        (held_by("other"), NOW + timedelta(seconds=15), True),  # expired
        (held_by("other", duration=1), NOW + timedelta(seconds=1), True),
        ({"holderIdentity": "other", "leaseDurationSeconds": 15}, NOW, True),  # no renewTime
        (held_by("other") | {"leaseDurationSeconds": "15"}, NOW, True),
    ],
)
def test_who_may_take_a_lease(spec, at, may):
    assert may_take(spec, "me", at) is may


def test_a_new_lease_is_claimed_with_zero_transitions():
    assert claimed(None, "me", 15, NOW) == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-05-01T12:00:00.123456Z",
        "renewTime": "2026-05-01T12:00:00.123456Z",
        "leaseTransitions": 0,
    }


def test_a_renewal_keeps_acquire_time_and_transitions():
    old = held_by("me")
    later = NOW + timedelta(seconds=2)
    assert claimed(old, "me", 15, later) == old | {"renewTime": micro_time(later)}


@pytest.mark.parametrize("previous", ["other", "", None])
def test_a_change_of_holder_counts_a_transition_and_restarts_acquire_time(previous):
    later = NOW + timedelta(seconds=20)
    spec = claimed(held_by(previous), "me", 15, later)
    assert spec["holderIdentity"] == "me"
    assert spec["leaseTransitions"] == 4
    assert spec["acquireTime"] == spec["renewTime"] == micro_time(later)


def test_a_release_clears_the_holder_for_a_second_and_keeps_the_count():
    assert released(held_by("me"), NOW) == {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": micro_time(NOW),
        "renewTime": micro_time(NOW),
        "leaseTransitions": 3,
    }
    assert may_take(released(held_by("me"), NOW), "other", NOW)


# -- the loop, against a scripted API ----------------------------------------------------------


class OneLeaseApi:
    """Just enough of `KubeApi` for one Lease: GET, POST, PUT with resourceVersion checks;
    `down` makes every request fail as an unreachable API server would."""

    timeout = 30.0

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down = False
        self.writes: list[dict[str, Any]] = []
        self.reads = 0
        self.lock = threading.Lock()

    def request(self, method: str, path: str, *, body: Any = None, timeout: float = 0) -> Any:
        with self.lock:
            if self.down:
                raise ApiError("ConnectionRefusedError: [Errno 111] Connection refused")
            if method == "GET":
                self.reads += 1
                if self.lease is None:
                    raise ApiError.from_answer(404, "Not Found", None)
                return orjson.loads(orjson.dumps(self.lease))
            if method == "POST" and self.lease is not None:
                raise ApiError.from_answer(409, "Conflict", None)
            if method == "PUT" and body["metadata"]["resourceVersion"] != str(self.version):
                raise ApiError.from_answer(409, "Conflict", None)
            self.version += 1
            self.lease = {
                **body,
                "metadata": {**body["metadata"], "resourceVersion": str(self.version)},
            }
            self.writes.append(self.lease["spec"])
            return self.lease


def election(api: Any, events: list[str], identity: str = "me") -> LeaseElection:
    return LeaseElection(
        api,
        namespace="ns",
        name="sweeper",
        identity=identity,
        lease_duration=3,
        renew_deadline=2,
        retry_period=1,
        on_started=lambda: events.append("started"),
        on_stopped=lambda: events.append("stopped"),
    )


def wait_for(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class RenewedBetweenReadAndWrite:
    """`api` as b sees it: its read answered, then a renews before b's write arrives."""

    timeout = 30.0

    def __init__(self, api: OneLeaseApi, renew: Any) -> None:
        self.api = api
        self.renew = renew

    def request(self, method: str, path: str, *, body: Any = None, timeout: float = 0) -> Any:
        answer = self.api.request(method, path, body=body, timeout=timeout)
        if method == "GET":
            self.renew()
        return answer


def test_only_one_of_two_electors_takes_a_lease_and_a_stale_write_conflicts():
    api = OneLeaseApi()
    first, second = election(api, [], "a"), election(api, [], "b")
    assert first.try_acquire_or_renew(NOW) is Attempt.HELD
    assert second.try_acquire_or_renew(NOW) is Attempt.TAKEN
    # b reads the Lease once it has expired, but a renews it before b writes: b's write
    # carries the resourceVersion it read, and is refused.
    later = NOW + timedelta(seconds=10)
    racing = election(
        RenewedBetweenReadAndWrite(api, lambda: first.try_acquire_or_renew(later)),
        [],
        "b",
    )
    assert racing.try_acquire_or_renew(later) is Attempt.TAKEN
    assert api.lease is not None
    assert api.lease["spec"]["holderIdentity"] == "a"
    assert api.lease["spec"]["renewTime"] == micro_time(later)


def test_the_leader_stands_down_after_the_renew_deadline_and_releases_on_stop():
    api = OneLeaseApi()
    events: list[str] = []
    elector = election(api, events)
    stop = threading.Event()
    thread = threading.Thread(target=elector.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: events == ["started"])
        api.down = True  # renewals fail: within renew_deadline (2 s) + a retry it stops leading
        wait_for(lambda: events == ["started", "stopped"], timeout=2 + 1 + 2)
        api.down = False
        wait_for(lambda: events == ["started", "stopped", "started"])
    finally:
        stopped_at = time.monotonic()
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - stopped_at < 1  # not a retry period, not a lease duration
    assert events == ["started", "stopped", "started", "stopped"]
    assert api.lease is not None
    assert api.lease["spec"]["holderIdentity"] == ""
    assert api.lease["spec"]["leaseDurationSeconds"] == 1


def test_a_follower_says_once_who_leads_and_stops_without_writing(caplog):
    api = OneLeaseApi()
    election(api, [], "other").try_acquire_or_renew(datetime.now(UTC))
    writes = len(api.writes)
    events: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=election(api, events).run, args=(stop,))
    with caplog.at_level(logging.INFO, logger="kaptain_warden.kube.leases"):
        thread.start()
        wait_for(lambda: api.reads >= 3)  # it has read the Lease, held by "other", 3 times
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert events == []
    assert len(api.writes) == writes
    assert [r.getMessage() for r in caplog.records] == [
        "Lease ns/sweeper is held by other; following"
    ]
