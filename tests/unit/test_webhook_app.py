"""The Flask app in-process: endpoints, error channels, internal errors, lookups, metrics, logs."""

from __future__ import annotations

import copy
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from factories import (
    KNATIVE,
    NAMESPACE,
    NOTEBOOK,
    P,
    annotations,
    config_map,
    job,
    labels,
    patch_ops,
    patched,
    review,
    revision,
    secret,
)
from kaptain_warden.policies.loader import load_policy, load_policy_text
from kaptain_warden.policies.provenance import CreatorPod, Provenance
from kaptain_warden.webhook.app import create_app
from kaptain_warden.webhook.settings import WebhookSettings

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
POLICY = load_policy()
JSON = "application/json"
APP_LOGGER = "kaptain_warden.webhook.app"


def make_app(settings: WebhookSettings | None = None, **kwargs: Any):
    kwargs.setdefault("policy", POLICY)
    kwargs.setdefault("clock", lambda: NOW)
    return create_app(settings or WebhookSettings(), **kwargs)


def post(app, path: str, doc: Any, content_type: str = JSON):
    data = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return app.test_client().post(path, data=data, content_type=content_type)


def ok(app, path: str, doc: dict[str, Any]) -> dict[str, Any]:
    response = post(app, path, doc)
    assert response.status_code == 200, response.data
    answer = response.get_json()
    assert answer["response"]["uid"] == doc["request"]["uid"]
    return answer


def sample(app, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample's value from /metrics (0 when it is not there yet)."""
    text = app.test_client().get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == (labels or {}):
                return float(found.value)
    return 0.0


@pytest.fixture
def app():
    return make_app()


def test_secret_is_stamped_with_expiry_from_the_injected_clock(app):
    obj = secret()
    result = patched(obj, ok(app, "/mutate", review(obj)))
    assert annotations(result)[f"{P}/created-at"] == "2026-05-01T12:00:00Z"
    assert annotations(result)[f"{P}/expires-at"] == "2026-05-02T12:00:00Z"
    assert labels(result)[f"{P}/managed"] == "true"


def test_stamped_object_validates_and_a_forged_one_does_not(app):
    obj = secret()
    stamped = patched(obj, ok(app, "/mutate", review(obj)))
    assert ok(app, "/validate", review(stamped))["response"]["allowed"] is True
    forged = copy.deepcopy(stamped)
    forged["metadata"]["annotations"][f"{P}/owner"] = "mallory"
    answer = ok(app, "/validate", review(forged))["response"]
    assert answer["allowed"] is False
    assert "mallory" in answer["status"]["message"]


# --- internal errors: never a 500, always the uid, answered as configured ---------------------


def exploding_clock() -> datetime:
    raise RuntimeError("clock exploded")


class ExplodingPolicy:
    """The real policy, except that deciding anything raises."""

    def __init__(self, policy):
        self.rules = policy.rules
        self.source = policy.source

    @property
    def settings(self):
        raise RuntimeError("policy exploded")


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"clock": exploding_clock}, id="clock"),
        pytest.param({"policy": ExplodingPolicy(POLICY)}, id="policy"),
    ],
)
def test_internal_error_in_mutate_admits_unchanged_and_is_counted(kwargs, caplog):
    app = make_app(**kwargs)
    doc = review(secret())
    with caplog.at_level(logging.INFO, logger=APP_LOGGER):
        answer = ok(app, "/mutate", doc)
    assert answer["response"] == {"uid": doc["request"]["uid"], "allowed": True}
    assert (
        sample(app, "kaptain_warden_admission_internal_errors_total", {"endpoint": "mutate"}) == 1
    )
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # logged once, with its traceback, as the review's own line
    assert errors[0].exc_info is not None
    assert errors[0].uid == doc["request"]["uid"]
    assert errors[0].verdict == "error"
    assert "exploded" in caplog.text


def test_internal_error_in_validate_denies_saying_so():
    app = make_app(clock=exploding_clock)
    doc = review(secret())
    answer = ok(app, "/validate", doc)["response"]
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 500
    assert "internal error" in answer["status"]["message"]
    assert doc["request"]["uid"] in answer["status"]["message"]


def test_error_answers_are_configurable():
    settings = WebhookSettings(mutate_admits_on_error=False, validate_admits_on_error=True)
    app = make_app(settings, clock=exploding_clock)
    mutated = ok(app, "/mutate", review(secret()))["response"]
    assert mutated["allowed"] is False and "internal error" in mutated["status"]["message"]
    assert ok(app, "/validate", review(secret()))["response"]["allowed"] is True


# --- malformed requests: 4xx with a JSON error body, logged once ------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        pytest.param(b"nope", JSON, 400, id="not-json"),
        pytest.param(b"[]", JSON, 400, id="not-an-object"),
        pytest.param(b"{}", "text/plain", 415, id="content-type"),
        pytest.param(b"x" * 2048, JSON, 413, id="too-large"),
    ],
)
def test_malformed_requests_get_a_json_4xx_logged_once(data, content_type, status, caplog):
    app = make_app(WebhookSettings(max_body_bytes=1024))
    with caplog.at_level(logging.INFO, logger=APP_LOGGER):
        response = post(app, "/mutate", data, content_type)
    assert response.status_code == status
    assert response.is_json and "error" in response.get_json()
    assert len([r for r in caplog.records if r.name == APP_LOGGER]) == 1
    code = {"endpoint": "mutate", "code": str(status)}
    assert sample(app, "kaptain_warden_admission_bad_requests_total", code) == 1


def test_unknown_paths_and_methods_get_json_errors(app):
    client = app.test_client()
    missing = client.get("/nope")
    assert missing.status_code == 404 and "error" in missing.get_json()
    wrong = client.get("/mutate")
    assert wrong.status_code == 405 and "error" in wrong.get_json()


# --- lookups: only when they can matter, and never blocking -----------------------------------


class RecordingParents:
    def __init__(self, owner: str | None = None, error: Exception | None = None):
        self.owner = owner
        self.error = error
        self.calls: list[tuple[str, str]] = []
        self.deadlines: list[float | None] = []

    def inherited_owner(self, *, namespace: str, obj: Any) -> str | None:
        self.calls.append((namespace, obj["metadata"].get("name", "")))
        if self.error is not None:
            raise self.error
        return self.owner

    def inherited(
        self, *, namespace: str, obj: Any, deadline: float | None = None
    ) -> tuple[str, dict[str, str]] | None:
        self.deadlines.append(deadline)
        owner = self.inherited_owner(namespace=namespace, obj=obj)
        return (owner, {}) if owner is not None else None


def test_revision_inherits_the_owner_of_its_parent():
    parents = RecordingParents(owner=NOTEBOOK)
    app = make_app(parents=parents)
    obj = revision()
    result = patched(obj, ok(app, "/mutate", review(obj, user=KNATIVE, groups=())))
    assert annotations(result)[f"{P}/owner"] == NOTEBOOK
    assert labels(result)[f"{P}/rule"] == "knative-revisions"
    verdict = ok(app, "/validate", review(result, user=KNATIVE, groups=()))
    assert verdict["response"]["allowed"] is True
    assert parents.calls == [("team-a", obj["metadata"]["name"])] * 2


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(review(secret()), id="no-parent-reference"),
        pytest.param(review(config_map() | {"metadata": revision()["metadata"]}), id="ungoverned"),
        pytest.param(review(revision(), operation="UPDATE", old=revision()), id="update"),
        pytest.param(review(None, operation="DELETE", old=revision()), id="delete"),
        pytest.param(review(revision(namespace="kube-system")), id="excluded-namespace"),
    ],
)
def test_parents_are_not_looked_up_when_they_cannot_matter(doc):
    parents = RecordingParents(owner=NOTEBOOK)
    app = make_app(parents=parents)
    ok(app, "/mutate", doc)
    ok(app, "/validate", doc)
    assert parents.calls == []


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(review(secret()), id="no-parent-reference"),
        pytest.param(review(config_map() | {"metadata": revision()["metadata"]}), id="ungoverned"),
        pytest.param(review(revision(), operation="UPDATE", old=revision()), id="update"),
        pytest.param(review(revision(namespace="kube-system")), id="excluded-namespace"),
    ],
)
def test_review_now_answers_what_needs_no_lookup_as_review_does(doc):
    parents = RecordingParents(owner=NOTEBOOK)
    handler = make_app(parents=parents).extensions["kaptain_warden"]
    body = orjson.dumps(doc)
    for endpoint in ("mutate", "validate"):
        now = handler.review_now(endpoint, body, JSON)
        later = handler.review(endpoint, body, JSON)
        assert now is not None and now.status == later.status == 200
        assert orjson.loads(now.body)["response"]["uid"] == doc["request"]["uid"]
    assert parents.calls == []


def test_review_now_leaves_a_review_that_would_look_up_to_review(caplog):
    parents = RecordingParents(owner=NOTEBOOK)
    handler = make_app(parents=parents).extensions["kaptain_warden"]
    body = orjson.dumps(review(revision(), user=KNATIVE, groups=()))
    caplog.set_level(logging.INFO)
    for endpoint in ("mutate", "validate"):
        assert handler.review_now(endpoint, body, JSON) is None
    assert parents.calls == [] and caplog.records == []  # nothing decided, logged or counted
    assert handler.review("mutate", body, JSON).status == 200
    assert parents.calls == [("team-a", revision()["metadata"]["name"])]


def test_a_failing_parent_lookup_never_blocks_admission(caplog):
    parents = RecordingParents(error=TimeoutError("API server too slow"))
    app = make_app(parents=parents)
    obj = job()
    obj["metadata"]["ownerReferences"] = revision()["metadata"]["ownerReferences"]
    with caplog.at_level(logging.INFO, logger=APP_LOGGER):
        answer = ok(app, "/mutate", review(obj))
    assert annotations(patched(obj, answer))[f"{P}/owner"] == NOTEBOOK  # the requester
    assert "parent lookup failed" in caplog.text
    assert sample(app, "kaptain_warden_admission_lookup_errors_total", {"lookup": "parents"}) == 1
    assert (
        sample(app, "kaptain_warden_admission_internal_errors_total", {"endpoint": "mutate"}) == 0
    )


def test_a_failed_lookup_never_widens_what_the_requester_may_claim():
    """Issue: after a failed lookup the validator used to stop judging the owner."""
    failing = make_app(parents=RecordingParents(error=TimeoutError("API server too slow")))
    # A notebook's Job naming an unreadable parent and claiming another owner.
    obj = job()
    obj["metadata"]["ownerReferences"] = revision()["metadata"]["ownerReferences"]
    obj["metadata"]["annotations"] = {f"{P}/owner": "system:admin"}
    answer = ok(failing, "/mutate", review(obj))
    assert annotations(patched(obj, answer))[f"{P}/owner"] == NOTEBOOK  # the requester
    assert any("system:admin" in w for w in answer["response"]["warnings"])
    verdict = ok(failing, "/validate", review(obj))  # as if the mutator had not run
    assert verdict["response"]["allowed"] is False
    assert (
        f'annotation {P}/owner: "system:admin" must be "{NOTEBOOK}"'
        in (verdict["response"]["status"]["message"])
    )


def test_a_controller_object_whose_parents_cannot_be_read_inherits_nothing():
    stamping = make_app(parents=RecordingParents(owner=NOTEBOOK))
    obj = revision()
    result = patched(obj, ok(stamping, "/mutate", review(obj, user=KNATIVE, groups=())))
    assert annotations(result)[f"{P}/owner"] == NOTEBOOK
    failing = make_app(parents=RecordingParents(error=TimeoutError("API server too slow")))
    # The validator's own lookup fails: the Knative controller claims no one's ownership.
    refused = ok(failing, "/validate", review(result, user=KNATIVE, groups=()))
    assert refused["response"]["allowed"] is False
    assert "its parents could not be read" in refused["response"]["status"]["message"]
    # The mutator's lookup fails: no rule governs the controller's own object, no warden keys.
    stripped = patched(result, ok(failing, "/mutate", review(result, user=KNATIVE, groups=())))
    assert not any(k.startswith(P) for k in annotations(stripped))
    assert ok(failing, "/validate", review(stripped, user=KNATIVE, groups=()))["response"][
        "allowed"
    ]


class Namespaces:
    def __init__(self, labels: dict[str, str] | None = None, error: Exception | None = None):
        self.labels = labels
        self.error = error
        self.calls: list[str] = []

    def namespace_labels(self, *, namespace: str) -> dict[str, str] | None:
        self.calls.append(namespace)
        if self.error is not None:
            raise self.error
        return self.labels


SELECTOR_POLICY = load_policy_text(
    """
apiVersion: warden.kaptain.io/v1alpha1
kind: WardenPolicy
rules:
  - id: labelled-namespaces
    match:
      kinds: [{apiVersion: v1, kind: Secret}]
      namespaceSelector: {matchLabels: {kaptain: enabled}}
    ttl: 2h
"""
)


def test_namespace_labels_are_read_only_when_a_rule_selects_by_them():
    namespaces = Namespaces({"kaptain": "enabled"})
    # The default policy selects no namespace by label.
    ok(make_app(namespaces=namespaces), "/mutate", review(secret()))
    assert namespaces.calls == []
    app = make_app(policy=SELECTOR_POLICY, namespaces=namespaces)
    result = patched(secret(), ok(app, "/mutate", review(secret())))
    assert labels(result)[f"{P}/rule"] == "labelled-namespaces"
    assert namespaces.calls == ["team-a"]


def test_a_failing_namespace_lookup_means_no_selector_matches():
    namespaces = Namespaces(error=ConnectionError("down"))
    app = make_app(policy=SELECTOR_POLICY, namespaces=namespaces)
    assert patch_ops(ok(app, "/mutate", review(secret()))) == []
    assert (
        sample(app, "kaptain_warden_admission_lookup_errors_total", {"lookup": "namespace_labels"})
        == 1
    )


# --- probes, metrics, logs, the bench endpoint -----------------------------------------------


def test_probes(app):
    client = app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready" and ready["rules"] == len(POLICY.rules)


def test_metrics_count_reviews_by_endpoint_operation_and_verdict(app):
    ok(app, "/mutate", review(secret()))
    ok(app, "/mutate", review(config_map()))
    ok(app, "/validate", review(None, operation="DELETE", old=secret()))
    name = "kaptain_warden_admission_requests_total"
    assert (
        sample(app, name, {"endpoint": "mutate", "operation": "CREATE", "verdict": "patched"}) == 1
    )
    assert (
        sample(app, name, {"endpoint": "mutate", "operation": "CREATE", "verdict": "allowed"}) == 1
    )
    assert (
        sample(app, name, {"endpoint": "validate", "operation": "DELETE", "verdict": "allowed"})
        == 1
    )
    hist = "kaptain_warden_admission_duration_seconds_count"
    assert sample(app, hist, {"endpoint": "mutate"}) == 2
    response = app.test_client().get("/metrics")
    assert response.content_type.startswith("text/plain")


def test_each_review_logs_one_line_with_its_facts(app, caplog):
    obj = secret(name=None, generate_name="creds-")
    doc = review(obj, dry_run=True)
    with caplog.at_level(logging.INFO, logger=APP_LOGGER):
        ok(app, "/mutate", doc)
    (record,) = [r for r in caplog.records if r.name == APP_LOGGER]
    assert record.uid == doc["request"]["uid"]
    assert record.user == doc["request"]["userInfo"]["username"]
    assert (record.kind, record.api_version) == ("Secret", "v1")
    assert (record.namespace, record.object) == ("team-a", "team-a/creds-*")
    assert (record.operation, record.verdict, record.rule) == (
        "CREATE",
        "patched",
        "credentials-secrets",
    )
    assert record.dry_run is True and record.duration_ms >= 0


def test_bench_endpoint_is_off_by_default():
    assert post(make_app(), "/_bench/constant", review(secret())).status_code == 404
    on = post(make_app(WebhookSettings(enable_bench_endpoint=True)), "/_bench/constant", b"{}")
    assert on.status_code == 200
    assert on.get_json()["response"]["allowed"] is True


def test_policy_defaults_to_the_settings_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "apiVersion: warden.kaptain.io/v1alpha1\nkind: WardenPolicy\nrules:\n"
        "  - id: only-jobs\n    match: {kinds: [{apiVersion: batch/v1, kind: Job}]}\n"
        "    ttlAfterFinished: 2h\n"
    )
    app = create_app(WebhookSettings(policy_file=str(path)))
    assert app.test_client().get("/readyz").get_json()["policy"] == str(path)
    result = patched(job(), ok(app, "/mutate", review(job())))
    assert result["spec"]["ttlSecondsAfterFinished"] == timedelta(hours=2).total_seconds()


# -- provenance ---------------------------------------------------------------------------------

POD_UID = "6f1c2f4e-3f7a-4b8e-9c1d-0a1b2c3d4e5f"


class RecordingProvenance:
    def __init__(self, answer: Any = None, error: Exception | None = None):
        self.answer = answer
        self.error = error
        self.calls: list[tuple[str, str, float | None]] = []

    def provenance(self, *, namespace: str, pod: Any, deadline: float | None = None) -> Any:
        self.calls.append((namespace, pod.uid, deadline))
        if self.error is not None:
            raise self.error
        return self.answer


def pod_bound(doc: dict[str, Any]) -> dict[str, Any]:
    doc["request"]["userInfo"]["extra"] = {
        "authentication.kubernetes.io/pod-name": ["alice-nb-0"],
        "authentication.kubernetes.io/pod-uid": [POD_UID],
    }
    return doc


def test_provenance_is_looked_up_once_per_review_for_pod_bound_creates_only():

    found = Provenance(pod=CreatorPod("alice-nb-0", POD_UID), notebook="alice-nb")
    lookup = RecordingProvenance(answer=found)
    app = make_app(provenance=lookup)
    obj = secret()
    answer = ok(app, "/mutate", pod_bound(review(obj)))
    stamped = annotations(patched(obj, answer))
    assert stamped[f"{P}/created-by-pod-uid"] == POD_UID
    assert stamped[f"{P}/notebook"] == "alice-nb"
    assert [c[:2] for c in lookup.calls] == [(NAMESPACE, POD_UID)]
    assert lookup.calls[0][2] is not None  # the review's deadline
    ok(app, "/mutate", review(secret()))  # no Pod binding: nothing to look up
    assert len(lookup.calls) == 1


def test_parent_and_provenance_lookups_share_one_deadline_per_review():
    parents = RecordingParents(owner=NOTEBOOK)
    lookup = RecordingProvenance(answer=Provenance(pod=CreatorPod("alice-nb-0", POD_UID)))
    app = make_app(parents=parents, provenance=lookup)
    before = time.monotonic()
    ok(app, "/mutate", pod_bound(review(revision(), user=NOTEBOOK)))
    after = time.monotonic()
    (deadline,) = parents.deadlines
    assert deadline is not None
    assert lookup.calls[0][2] == deadline
    assert before + 1.0 <= deadline <= after + 1.0  # settings.lookup_budget_seconds


def test_a_failed_provenance_lookup_leaves_the_keys_out_and_is_counted(caplog):

    keys = load_policy().keys
    unresolved = Provenance(
        pod=CreatorPod("alice-nb-0", POD_UID), unresolved=frozenset({keys.notebook})
    )
    app = make_app(provenance=RecordingProvenance(answer=unresolved))
    obj = secret()
    stamped = annotations(patched(obj, ok(app, "/mutate", pod_bound(review(obj)))))
    assert f"{P}/notebook" not in stamped
    assert stamped[f"{P}/created-by-pod"] == "alice-nb-0"
    assert (
        sample(app, "kaptain_warden_admission_lookup_errors_total", {"lookup": "provenance"}) == 1
    )
    raising = make_app(provenance=RecordingProvenance(error=RuntimeError("boom")))
    with caplog.at_level(logging.INFO, logger=APP_LOGGER):
        stamped = annotations(patched(obj, ok(raising, "/mutate", pod_bound(review(obj)))))
    assert stamped[f"{P}/created-by-pod-uid"] == POD_UID
    assert f"{P}/notebook" not in stamped
    assert "provenance lookup failed" in caplog.text


def test_a_review_route_leaves_its_log_line_and_metrics_to_after_the_answer(caplog):
    """The server's routes (`answer_first`) answer first: the review's log line and metrics
    come when the server calls `record`, once the answer is sent, with the duration taken
    when the answer was ready."""
    app = make_app()
    handler = app.extensions["kaptain_warden"]
    labels = {"endpoint": "mutate", "operation": "CREATE", "verdict": "patched"}
    before = sample(app, "kaptain_warden_admission_requests_total", labels)
    caplog.set_level(logging.INFO, logger=APP_LOGGER)
    doc = review(secret())
    answer = handler.answer_first("mutate", orjson.dumps(doc), JSON, may_wait=False)
    assert answer is not None and answer.status == 200
    assert caplog.records == []
    assert sample(app, "kaptain_warden_admission_requests_total", labels) == before
    time.sleep(0.05)  # the time between the answer and its record is not the review's
    answer.record()
    (line,) = caplog.records
    assert line.uid == doc["request"]["uid"] and line.verdict == "patched"
    assert line.duration_ms < 50
    assert sample(app, "kaptain_warden_admission_requests_total", labels) == before + 1
