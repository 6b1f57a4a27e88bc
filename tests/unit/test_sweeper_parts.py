"""Tier 1: the sweeper's parts against a scripted API: paging, 410, budget, guard, outcomes."""

from __future__ import annotations

import gc
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import urllib3

from kaptain_warden.kube.errors import ApiError
from kaptain_warden.kube.listing import KindNotServedError, ListRequest, list_all
from kaptain_warden.policies.expiry import Decision
from kaptain_warden.policies.kinds import known_kind
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.sweeper.deleter import (
    Deleter,
    is_transient,
    is_unavailable,
    run_deletions,
)
from kaptain_warden.sweeper.events import SIMILAR_EVENTS
from kaptain_warden.sweeper.in_use import CLUSTER_WIDE_FROM, find_secret_holders
from kaptain_warden.sweeper.items import SweepItem
from kaptain_warden.sweeper.leader import LeaseSettings
from kaptain_warden.sweeper.loop import Sweeper
from kaptain_warden.sweeper.metrics import Heartbeat, MetricsServer, SweeperMetrics
from kaptain_warden.sweeper.report import ReportEntry, render_json, render_table
from kaptain_warden.sweeper.settings import SweeperSettings

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
SECRET = known_kind("v1", "Secret")
assert SECRET is not None


def api_error(status: int, message: str = "") -> ApiError:
    return ApiError.from_answer(
        status, "Reason", orjson.dumps({"message": message}).decode() if message else None
    )


class ScriptedApi:
    """Answers requests from a function; records every call. A streamed GET is recorded as
    method "WATCH", and its answer is the events (an iterable), or the ApiError it raises. It
    is an API server that does not stream lists unless `streams_lists` says it does."""

    def __init__(
        self, answer: Callable[[str, str, dict[str, Any]], Any], *, streams_lists: bool = False
    ) -> None:
        self.answer = answer
        self.streams_lists = streams_lists
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.closed = 0  # streams closed by their reader

    def request(self, method: str, path: str, **kw: Any) -> Any:
        self.calls.append((method, path, kw))
        return self.answer(method, path, kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def stream(self, path: str, **kw: Any) -> Any:
        self.calls.append(("WATCH", path, kw))

        def events() -> Any:
            try:
                yield from self.answer("WATCH", path, kw)
            finally:
                self.closed += 1

        return events()


def page(names: list[str], token: str = "") -> dict[str, Any]:
    return {
        "metadata": {"continue": token} if token else {},
        "items": [
            {
                "metadata": {"name": n, "namespace": "ns", "managedFields": [{"x": 1}]},
                "data": {"password": "c2VjcmV0"},
                "status": {"phase": "x"},
            }
            for n in names
        ],
    }


REQUEST = ListRequest(api_version="v1", kind="Secret", resource="secrets", label_selector="a=b")


# -- listing ---------------------------------------------------------------------------------


def test_lists_page_by_page_and_keeps_only_metadata():
    pages = {"": page(["a", "b"], "t1"), "t1": page(["c"])}

    def answer(method, path, kw):
        query = dict(kw["query"])
        assert query["labelSelector"] == "a=b"
        assert query["limit"] == 500
        assert kw["accept"].startswith("application/json;as=PartialObjectMetadataList")
        return pages[query.get("continue", "")]

    api = ScriptedApi(answer)
    items = list_all(api, REQUEST)  # type: ignore[arg-type]
    assert [i["metadata"]["name"] for i in items] == ["a", "b", "c"]
    assert len(api.calls) == 2
    assert items[0] == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "a", "namespace": "ns"},
    }


def test_an_expired_continue_token_restarts_the_list_from_scratch():
    calls = {"n": 0}

    def answer(method, path, kw):
        calls["n"] += 1
        token = dict(kw["query"]).get("continue")
        if token == "t1" and calls["n"] == 2:
            raise api_error(410, "The provided continue parameter is too old")
        return page(["a"], "t1") if not token else page(["b"])

    items = list_all(ScriptedApi(answer), REQUEST)  # type: ignore[arg-type]
    # The first page is not counted twice: the partial list was discarded.
    assert [i["metadata"]["name"] for i in items] == ["a", "b"]
    assert calls["n"] == 4


def test_a_list_that_keeps_expiring_gives_up():
    def answer(method, path, kw):
        if dict(kw["query"]).get("continue"):
            raise api_error(410)
        return page(["a"], "t1")

    with pytest.raises(ApiError) as raised:
        list_all(ScriptedApi(answer), REQUEST)  # type: ignore[arg-type]
    assert raised.value.status == 410


def test_a_missing_resource_is_not_served():
    def answer(method, path, kw):
        raise api_error(404, "the server could not find the requested resource")

    with pytest.raises(KindNotServedError):
        list_all(ScriptedApi(answer), REQUEST)  # type: ignore[arg-type]


TFJOBS = ListRequest(
    api_version="kubeflow.org/v1",
    kind="TFJob",
    resource="tfjobs",
    label_selector="a=b",
    excluded_namespaces=frozenset({"kube-system"}),
)


def added(name: str, namespace: str = "ns") -> dict[str, Any]:
    obj = {"metadata": {"name": name, "namespace": namespace, "managedFields": [{"x": 1}]}}
    return {"type": "ADDED", "object": {**obj, "spec": {"big": "x" * 10}}}


def bookmark(end: bool = True) -> dict[str, Any]:
    annotations = {"k8s.io/initial-events-end": "true"} if end else {}
    return {"type": "BOOKMARK", "object": {"metadata": {"annotations": annotations}}}


def test_only_custom_resources_are_asked_for_as_streaming_lists():
    assert TFJOBS.custom
    for api_version in ("serving.knative.dev/v1", "sparkoperator.k8s.io/v1beta2"):
        assert ListRequest(api_version=api_version, kind="K", resource="k").custom
    for api_version in ("v1", "batch/v1", "apps/v1"):
        assert not ListRequest(api_version=api_version, kind="K", resource="k").custom


def test_a_custom_resource_is_streamed_until_the_bookmark_that_ends_its_objects():
    def answer(method, path, kw):
        assert method == "WATCH" and path == "/apis/kubeflow.org/v1/tfjobs"
        query = dict(kw["query"])
        assert query == {
            "labelSelector": "a=b",
            "fieldSelector": "metadata.namespace!=kube-system",
            "watch": "true",
            "sendInitialEvents": "true",
            "resourceVersionMatch": "NotOlderThan",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": 600,
        }
        assert kw["accept"] == "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
        yield added("a")
        yield bookmark(end=False)  # a progress bookmark is not the end
        yield added("b")
        yield added("sneaky", "kube-system")
        yield bookmark()
        raise AssertionError("read past the end of the initial objects")

    api = ScriptedApi(answer, streams_lists=True)
    items = list_all(api, TFJOBS)  # type: ignore[arg-type]
    assert [i["metadata"]["name"] for i in items] == ["a", "b"]
    assert items[0] == {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "a", "namespace": "ns"},
    }
    assert len(api.calls) == 1 and api.closed == 1  # one request, closed by the reader
    assert api.streams_lists


@pytest.mark.parametrize(
    ("events", "status"),
    [
        ([added("a"), {"type": "ERROR", "object": {"code": 500, "reason": "InternalError"}}], 500),
        ([added("a")], None),  # ended before the bookmark (timeoutSeconds, a dropped stream)
        ([added("a"), {"type": "ADDED"}], None),
    ],
)
def test_a_stream_that_fails_or_ends_early_fails_the_list(events, status):
    api = ScriptedApi(lambda m, p, kw: iter(events), streams_lists=True)
    with pytest.raises(ApiError) as raised:
        list_all(api, TFJOBS)  # type: ignore[arg-type]
    assert raised.value.status == status
    assert [m for m, _, _ in api.calls] == ["WATCH"]  # no quiet retry in pages
    assert api.closed == 1


def refusing(status: int) -> Callable[[str, str, dict[str, Any]], Any]:
    def answer(method, path, kw):
        if method == "WATCH":
            raise api_error(status, "sendInitialEvents is forbidden")
        return page(["a"])

    return answer


def test_an_api_server_without_streaming_lists_is_asked_once_then_listed_in_pages():
    api = ScriptedApi(refusing(422), streams_lists=True)
    assert [i["metadata"]["name"] for i in list_all(api, TFJOBS)] == ["a"]  # type: ignore[arg-type]
    assert [m for m, _, _ in api.calls] == ["WATCH", "GET"]
    assert not api.streams_lists
    list_all(api, TFJOBS)  # type: ignore[arg-type]
    assert [m for m, _, _ in api.calls] == ["WATCH", "GET", "GET"]


def test_a_refused_stream_of_one_kind_is_listed_in_pages_and_streaming_goes_on():
    api = ScriptedApi(refusing(403), streams_lists=True)  # RBAC without `watch` on it
    assert [i["metadata"]["name"] for i in list_all(api, TFJOBS)] == ["a"]  # type: ignore[arg-type]
    assert [m for m, _, _ in api.calls] == ["WATCH", "GET"]
    assert api.streams_lists


def test_a_stream_of_a_kind_not_served_is_not_served_and_a_busy_server_is_an_error():
    with pytest.raises(KindNotServedError):
        list_all(ScriptedApi(refusing(404), streams_lists=True), TFJOBS)  # type: ignore[arg-type]
    with pytest.raises(ApiError) as raised:
        list_all(ScriptedApi(refusing(429), streams_lists=True), TFJOBS)  # type: ignore[arg-type]
    assert raised.value.status == 429


def test_built_in_kinds_are_listed_in_pages_even_where_lists_stream():
    api = ScriptedApi(lambda m, p, kw: page(["a"]), streams_lists=True)
    list_all(api, REQUEST)  # type: ignore[arg-type]
    assert [m for m, _, _ in api.calls] == ["GET"]


def test_excluded_namespaces_are_filtered_by_the_server_and_again_here():
    def answer(method, path, kw):
        assert dict(kw["query"])["fieldSelector"] == (
            "type=Opaque,metadata.namespace!=kube-system,metadata.namespace!=warden"
        )
        items = page(["a"])
        items["items"].append({"metadata": {"name": "sneaky", "namespace": "kube-system"}})
        return items

    request = ListRequest(
        api_version="v1",
        kind="Secret",
        resource="secrets",
        field_selector="type=Opaque",
        excluded_namespaces=frozenset({"kube-system", "warden"}),
    )
    items = list_all(ScriptedApi(answer), request)  # type: ignore[arg-type]
    assert [i["metadata"]["name"] for i in items] == ["a"]


def test_named_namespaces_are_listed_one_by_one_except_excluded_ones():
    paths = []

    def answer(method, path, kw):
        paths.append(path)
        assert "fieldSelector" not in dict(kw["query"])
        return page([])

    request = ListRequest(
        api_version="batch/v1",
        kind="Job",
        resource="jobs",
        namespaces=("a", "kube-system", "b"),
        excluded_namespaces=frozenset({"kube-system"}),
        metadata_only=False,
        keep=("status",),
    )
    list_all(ScriptedApi(answer), request)  # type: ignore[arg-type]
    assert paths == ["/apis/batch/v1/namespaces/a/jobs", "/apis/batch/v1/namespaces/b/jobs"]


# -- deletion --------------------------------------------------------------------------------


def entry(name: str, uid: str = "") -> ReportEntry:
    return ReportEntry(
        api_version="v1",
        kind="Secret",
        namespace="ns",
        name=name,
        uid=uid or f"uid-{name}",
        rule="r",
        owner="alice",
        action="delete",
        reason="expired",
        expires_at=NOW,
    )


def candidates(n: int) -> list[SweepItem]:
    due = Decision("delete", "expired", NOW, "ttl")
    return [
        SweepItem(kind=SECRET, entry=entry(f"s{i}"), resource_version="1", decision=due)
        for i in range(n)
    ]


def deleter(api: ScriptedApi, *, dry_run: bool = False, metrics=None) -> Deleter:
    return Deleter(
        api,  # type: ignore[arg-type]
        propagation_policy="Background",
        dry_run=dry_run,
        reporting_instance="test",
        metrics=metrics,
    )


def test_every_delete_carries_the_uid_and_the_propagation_policy_and_records_an_event():
    api = ScriptedApi(lambda m, p, kw: {})
    summary = run_deletions(deleter(api), candidates(1), budget=10)
    assert summary.deleted == 1
    (method, path, kw), (event_method, event_path, event) = api.calls
    assert (method, path) == ("DELETE", "/api/v1/namespaces/ns/secrets/s0")
    assert kw["body"]["preconditions"] == {"uid": "uid-s0"}
    assert kw["body"]["propagationPolicy"] == "Background"
    assert (event_method, event_path) == ("POST", "/apis/events.k8s.io/v1/namespaces/ns/events")
    assert event["body"]["regarding"]["uid"] == "uid-s0"
    assert event["body"]["reason"] == "Expired"


def test_past_ten_similar_deletions_their_events_are_combined_into_one():
    # Like Kubernetes' event recorder: 10 Events per namespace, kind and reason in a phase,
    # then one combined Event naming the rest. Every delete is still sent and logged.
    api = ScriptedApi(lambda m, p, kw: {})
    items = candidates(25)
    other = SweepItem(
        kind=SECRET,
        entry=entry("elsewhere"),
        resource_version="1",
        decision=items[0].decision,
    )
    one = deleter(api)
    summary = run_deletions(one, items, budget=100)
    assert summary.deleted == 25
    deletes = [p for m, p, _ in api.calls if m == "DELETE"]
    events = [kw["body"] for m, _, kw in api.calls if m == "POST"]
    assert len(deletes) == 25
    single, (combined,) = events[:-1], events[-1:]
    assert len(single) == SIMILAR_EVENTS
    assert all(e["note"].startswith("kaptain-warden deleted this Secret") for e in single)
    assert combined["note"].startswith("kaptain-warden deleted 15 more Secret objects in ns")
    named = {e["regarding"]["name"] for e in single} | set(
        combined["note"].split("similar events: ")[1].split(", ")
    )
    assert named == {f"s{i}" for i in range(25)}
    assert combined["regarding"]["name"] in named
    # A new phase counts again from zero.
    api.calls.clear()
    run_deletions(one, [other], budget=10)
    assert [m for m, _, _ in api.calls] == ["DELETE", "POST"]


def test_dry_run_sends_nothing():
    api = ScriptedApi(lambda m, p, kw: pytest.fail("a dry run sent a request"))
    items = candidates(3)
    summary = run_deletions(deleter(api, dry_run=True), items, budget=10)
    assert summary.deleted == 0
    assert [c.entry.outcome for c in items] == ["would-delete"] * 3


@pytest.mark.parametrize(
    ("status", "outcome", "counted"),
    [(404, "gone", False), (409, "conflict", False), (403, "error", True)],
)
def test_expected_and_unexpected_refusals(status, outcome, counted):
    def answer(method, path, kw):
        if method == "DELETE":
            raise api_error(status)
        return {}

    metrics = SweeperMetrics()
    items = candidates(2)
    summary = run_deletions(deleter(ScriptedApi(answer), metrics=metrics), items, budget=10)
    assert [c.entry.outcome for c in items] == [outcome, outcome]
    # A 403 concerns one object: the others are still tried.
    assert summary.stopped is None
    errors = metrics.registry.get_sample_value(
        "kaptain_warden_sweeper_delete_errors_total",
        {"group": "", "kind": "Secret", "status": "403"},
    )
    assert (errors or 0) == (2 if counted else 0)


@pytest.mark.parametrize(
    "error",
    [
        api_error(429),
        api_error(503),
        # What the door raises when the connection fails (no answer, no status).
        ApiError.from_exception(urllib3.exceptions.MaxRetryError(None, "/", None)),
    ],
)
def test_a_struggling_api_server_stops_the_phase_until_next_cycle(error):
    def answer(method, path, kw):
        if method == "DELETE":
            raise error
        return {}

    metrics = SweeperMetrics()
    items = candidates(120)
    summary = run_deletions(
        deleter(ScriptedApi(answer), metrics=metrics), items, budget=500, batch_size=50
    )
    assert summary.stopped is not None and "backing off" in summary.stopped
    assert summary.attempted == 50
    # Unavailable is not an error: every delete, sent or not, is deferred to the next pass.
    assert [c.entry.outcome for c in items] == ["deferred"] * 120
    assert (summary.deferred, summary.errors) == (120, 0)
    sample = {"group": "", "kind": "Secret"}
    assert (
        metrics.registry.get_sample_value("kaptain_warden_sweeper_deletes_deferred_total", sample)
        == 120
    )
    assert (
        metrics.registry.get_sample_value(
            "kaptain_warden_sweeper_delete_errors_total", sample | {"status": "None"}
        )
        is None
    )


def test_a_server_error_is_an_error_and_still_backs_off():
    def answer(method, path, kw):
        if method == "DELETE":
            raise api_error(500)
        return {}

    items = candidates(60)
    summary = run_deletions(deleter(ScriptedApi(answer)), items, budget=500, batch_size=50)
    assert summary.stopped is not None and "backing off" in summary.stopped
    assert (summary.errors, summary.deferred) == (50, 0)
    assert [c.entry.outcome for c in items[50:]] == ["not-attempted"] * 10


def test_the_budget_stops_the_cycle_and_says_so():
    api = ScriptedApi(lambda m, p, kw: {})
    items = candidates(7)
    summary = run_deletions(deleter(api), items, budget=5, batch_size=2)
    assert (summary.attempted, summary.deleted) == (5, 5)
    assert summary.stopped is not None and "budget of 5" in summary.stopped
    assert "2 left" in summary.stopped
    assert [c.entry.outcome for c in items[5:]] == ["not-attempted"] * 2


def test_the_guard_is_asked_before_each_batch():
    api = ScriptedApi(lambda m, p, kw: {})
    answers = iter([None, None, "Lease held by other"])
    items = candidates(10)
    summary = run_deletions(
        deleter(api), items, budget=100, batch_size=3, guard=lambda: next(answers)
    )
    assert summary.deleted == 6
    assert summary.stopped == "Lease held by other"
    assert {c.entry.outcome for c in items[6:]} == {"not-attempted"}


def test_a_failed_event_does_not_fail_the_deletion():
    def answer(method, path, kw):
        if method == "POST":
            raise api_error(403)
        return {}

    items = candidates(1)
    assert run_deletions(deleter(ScriptedApi(answer)), items, budget=1).deleted == 1
    assert items[0].entry.outcome == "deleted"


def test_transient_means_not_now():
    assert is_transient(api_error(500))
    refused = ApiError.from_exception(OSError("connection refused"))
    assert is_transient(refused)
    assert is_unavailable(refused) and is_unavailable(api_error(503))
    assert not is_unavailable(api_error(500)) and not is_unavailable(api_error(403))
    assert not is_transient(api_error(403))
    assert not is_transient(api_error(422))


# -- report ----------------------------------------------------------------------------------


def test_the_json_report_keeps_its_contract():
    kept = entry("a")
    kept.action, kept.expires_at = "keep", None
    done = entry("b")
    done.outcome = "deleted"
    document = orjson.loads(render_json([kept, done], evaluated_at=NOW))
    assert isinstance(document, list)
    for item in document:
        assert {
            "apiVersion",
            "kind",
            "namespace",
            "name",
            "uid",
            "rule",
            "owner",
            "action",
            "reason",
            "expiresAt",
            "evaluatedAt",
        } <= item.keys()
    assert document[0]["expiresAt"] is None
    assert document[1]["expiresAt"] == "2024-06-01T12:00:00Z"
    assert document[1]["evaluatedAt"] == "2024-06-01T12:00:00Z"
    assert "evaluatedAt" not in orjson.loads(render_json([kept]))[0]


def test_the_table_has_a_header_and_the_evaluation_time_when_chosen():
    table = render_table([entry("a")], evaluated_at=NOW).splitlines()
    assert table[0] == "Evaluated at 2024-06-01T12:00:00Z"
    assert table[1].split() == [
        "NAMESPACE",
        "KIND",
        "NAME",
        "RULE",
        "OWNER",
        "NOTEBOOK",
        "PERSON",
        "ACTION",
        "EXPIRES",
        "REASON",
    ]
    assert table[2].split()[:3] == ["ns", "Secret", "a"]
    assert render_table([]).splitlines()[-1] == "(no governed objects)"


# -- metrics and health ----------------------------------------------------------------------


def test_metrics_and_healthz_are_served():
    clock = {"t": 0.0}
    heartbeat = Heartbeat(allowance=10, clock=lambda: clock["t"])
    metrics = SweeperMetrics()
    metrics.leader.set(1)
    server = MetricsServer(metrics, address="127.0.0.1", port=0, healthy=heartbeat.healthy).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        with urllib.request.urlopen(f"{base}/metrics") as response:
            assert b"kaptain_warden_sweeper_leader 1.0" in response.read()
        with urllib.request.urlopen(f"{base}/healthz") as response:
            assert response.status == 200
        clock["t"] = 11.0  # the loop stopped beating: a liveness probe should restart it
        with pytest.raises(urllib.error.HTTPError) as stalled:
            urllib.request.urlopen(f"{base}/healthz")
        assert stalled.value.code == 503
        heartbeat.beat()
        with urllib.request.urlopen(f"{base}/healthz") as response:
            assert response.status == 200
    finally:
        server.stop()


# -- leader election -------------------------------------------------------------------------


def test_lease_settings_are_checked_with_messages_naming_the_options():
    LeaseSettings(
        namespace="ns", name="l", identity="me", lease_duration=4, renew_deadline=3, retry_period=1
    )
    for bad, message in (
        ({"retry_period": 0}, "at least 1"),
        ({"renew_deadline": 1, "retry_period": 1}, "1.2 x"),
        ({"lease_duration": 3, "renew_deadline": 3}, "more than --renew-deadline"),
    ):
        values = {"lease_duration": 15, "renew_deadline": 10, "retry_period": 2} | bad
        with pytest.raises(ValueError, match=message):
            LeaseSettings(namespace="ns", name="l", identity="me", **values)


# -- in-use holders ----------------------------------------------------------------------------


def test_holders_are_listed_across_namespaces_and_per_namespace_when_that_is_refused():
    """From CLUSTER_WIDE_FROM namespaces on, one list per holder kind; a refused cluster-wide
    list (an identity confined to some namespaces) falls back to one per namespace, with the
    same answer."""
    wanted = [f"ns{i}" for i in range(CLUSTER_WIDE_FROM)]

    def pod(namespace: str, secret: str) -> dict[str, Any]:
        env = [{"name": "X", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]
        return {
            "metadata": {"name": f"p-{secret}", "namespace": namespace},
            "spec": {"containers": [{"name": "c", "env": env}]},
        }

    pods = [pod(n, f"used-{n}") for n in wanted] + [pod("elsewhere", "used-elsewhere")]

    def answer(refuse_across: bool):
        def respond(method, path, kw):
            if path == "/api/v1/pods":
                if refuse_across:
                    raise ApiError("HTTP 403 Forbidden", status=403)
                return {"metadata": {}, "items": pods}
            if path.startswith("/api/v1/namespaces/") and path.endswith("/pods"):
                namespace = path.split("/")[4]
                return {
                    "metadata": {},
                    "items": [p for p in pods if p["metadata"]["namespace"] == namespace],
                }
            return {"metadata": {}, "items": []}

        return respond

    for refuse in (False, True):
        api = ScriptedApi(answer(refuse))
        holders = find_secret_holders(api, namespaces=wanted)  # type: ignore[arg-type]
        assert holders.unreadable == {}
        for n in wanted:
            assert holders.of(n, f"used-{n}") == [f"Pod/p-used-{n}"]
        assert holders.of("ns0", "used-ns1") == []
        assert "elsewhere" not in holders.holders
        pod_paths = [p for m, p, _ in api.calls if p.endswith("/pods")]
        if refuse:
            assert pod_paths == ["/api/v1/pods", *(f"/api/v1/namespaces/{n}/pods" for n in wanted)]
        else:
            assert pod_paths == ["/api/v1/pods"]
            # Every holder kind is listed once, across the cluster.
            assert not any("/namespaces/" in p for m, p, _ in api.calls)


def test_fewer_namespaces_are_read_one_by_one():
    api = ScriptedApi(lambda m, p, kw: {"metadata": {}, "items": []})
    find_secret_holders(api, namespaces=["a"])  # type: ignore[arg-type]
    namespaced = [p for m, p, _ in api.calls if p != "/api/v1/persistentvolumes"]
    assert namespaced
    assert all("/namespaces/a/" in p for p in namespaced)


# -- the pass and the garbage collector --------------------------------------------------------


def test_a_pass_runs_without_the_cyclic_collector_and_gives_it_back():
    during: list[bool] = []

    def answer(method, path, kw):
        during.append(gc.isenabled())
        return {"metadata": {}, "items": []}

    api = ScriptedApi(answer)
    api.total = 0  # type: ignore[attr-defined]  # the pass's summary line reads it
    sweeper = Sweeper(
        api,  # type: ignore[arg-type]
        policy=load_policy(),
        settings=SweeperSettings(dry_run=True),
    )
    assert gc.isenabled()
    sweeper.run_once(now=NOW)
    assert during and not any(during)  # paused for the whole pass
    assert gc.isenabled()  # and on again after it
    gc.disable()  # a program that turned it off itself keeps it off
    try:
        sweeper.run_once(now=NOW)
        assert not gc.isenabled()
    finally:
        gc.enable()
