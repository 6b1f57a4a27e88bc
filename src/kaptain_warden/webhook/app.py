"""The Flask app: decode an AdmissionReview, ask `policies` for a decision, encode the answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

from kaptain_warden.policies.evaluate import (
    governs_kind,
    is_excluded_namespace,
    needs_namespace_labels,
)
from kaptain_warden.policies.inheritance import parent_refs
from kaptain_warden.policies.loader import load_policy
from kaptain_warden.policies.model import Policy
from kaptain_warden.policies.provenance import NO_PROVENANCE, Provenance, inherited_provenance
from kaptain_warden.policies.requests import AdmissionRequest
from kaptain_warden.policies.stamping import plan_mutation
from kaptain_warden.policies.validation import check_admission
from kaptain_warden.webhook import responses
from kaptain_warden.webhook.metrics import CONTENT_TYPE, AdmissionMetrics
from kaptain_warden.webhook.parents import NamespaceLabels, ParentResolver, ProvenanceLookup
from kaptain_warden.webhook.reviews import (
    BadReview,
    ResponseReview,
    admission_request,
    read_envelope,
)
from kaptain_warden.webhook.settings import WebhookSettings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

Endpoint = Literal["mutate", "validate"]
Verdict = Literal["allowed", "patched", "denied", "error"]
JSON = "application/json"
# The bench endpoint's answer: a realistic review with nothing computed per request.
_CONSTANT_REVIEW = responses.encode(responses.allowed("00000000-0000-0000-0000-000000000000"))


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _nothing_left() -> None:
    return None


@dataclass(frozen=True)
class Answer:
    """What an endpoint sends back: an HTTP status and a JSON body; and, from a review route,
    what is left to do once the body is sent (`record`: the review's log line and metrics)."""

    status: int
    body: bytes
    # Called once by whoever sends the answer, after sending it (or failing to): the API
    # server waits for the answer, not for the log line (see `AdmissionHandler.answer_first`).
    record: Callable[[], None] = field(default=_nothing_left, compare=False, repr=False)


@dataclass
class _Outcome:
    """One review's result, gathered for the answer, the log line and the metrics."""

    review: ResponseReview
    verdict: Verdict
    rule: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class _Lookups:
    """Which lookups in the cluster deciding one review makes (only a governed CREATE makes
    any)."""

    governed: bool = False
    parents: bool = False
    provenance: bool = False
    namespace_labels: bool = False

    @property
    def any(self) -> bool:
        return self.parents or self.provenance or self.namespace_labels


_NO_LOOKUPS = _Lookups()


class AdmissionHandler:
    """The review logic behind /mutate and /validate, independent of the web framework."""

    def __init__(
        self,
        *,
        settings: WebhookSettings,
        policy: Policy,
        metrics: AdmissionMetrics,
        parents: ParentResolver | None = None,
        namespaces: NamespaceLabels | None = None,
        provenance: ProvenanceLookup | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.metrics = metrics
        self._parents = parents
        # Decided once: the policy never changes while the server runs.
        self._namespaces = namespaces if needs_namespace_labels(policy) else None
        self._provenance_lookup = provenance
        self._clock = clock

    def review(self, endpoint: Endpoint, body: bytes, content_type: str | None) -> Answer:
        """Answer one request to `endpoint`: an AdmissionReview, or a 4xx when it is unusable;
        logged and counted when this returns."""
        answer = self.answer_first(endpoint, body, content_type, may_wait=True)
        assert answer is not None  # only a review that may not wait is left unanswered
        answer.record()
        return answer

    def review_now(
        self, endpoint: Endpoint, body: bytes, content_type: str | None
    ) -> Answer | None:
        """As `review`, or None (nothing logged or counted) when deciding would wait on a
        lookup in the cluster: the caller cannot wait (the worker's loop, see
        `worker.DeadlineWorker._answer_now`) and asks `review` from a thread instead."""
        answer = self.answer_first(endpoint, body, content_type, may_wait=False)
        if answer is not None:
            answer.record()
        return answer

    def answer_first(
        self, endpoint: Endpoint, body: bytes, content_type: str | None, *, may_wait: bool
    ) -> Answer | None:
        """As `review` (`review_now` without `may_wait`), but the log line and the metrics are
        left to the answer's `record`, for the caller to call once the answer is sent: the
        API server waits for the answer, and recording (a log record, a histogram and a
        counter) is about a fifth of a review's time. The metric's duration is taken here,
        when the answer is ready."""
        start = time.perf_counter()
        try:
            envelope = read_envelope(
                body, content_type, max_body_bytes=self.settings.max_body_bytes
            )
        except BadReview as exc:
            return self.reject(endpoint, exc)  # logged and counted at once: rare, and cheap
        # From here on the uid is known: whatever happens, the answer is an AdmissionReview.
        decoded: AdmissionRequest | None = None
        try:
            decoded = admission_request(envelope)
            lookups = self._lookups(decoded)
            if not may_wait and lookups.any:
                return None
            outcome = self._decide(endpoint, decoded, lookups)
            encoded = responses.encode(outcome.review)
        except BadReview as exc:
            return self.reject(endpoint, exc)
        except Exception:
            outcome = self._fallback(endpoint, envelope.uid)
            # Now, not later: the traceback is the one being handled.
            elapsed = time.perf_counter() - start
            self._record(endpoint, envelope.uid, decoded, outcome, elapsed, failed=True)
            return Answer(200, responses.encode(outcome.review))
        elapsed = time.perf_counter() - start
        return Answer(
            200,
            encoded,
            partial(self._record, endpoint, envelope.uid, decoded, outcome, elapsed, failed=False),
        )

    def reject(self, endpoint: str, error: BadReview) -> Answer:
        """A 4xx answer with a JSON error body, logged and counted once."""
        logger.warning(
            "refused a request that is not a usable AdmissionReview: %s",
            error.message,
            extra={"endpoint": endpoint, "http_status": error.http_status},
        )
        self.metrics.bad_requests.labels(endpoint, str(error.http_status)).inc()
        return Answer(error.http_status, responses.error_body(error.message))

    def _decide(self, endpoint: Endpoint, req: AdmissionRequest, lookups: _Lookups) -> _Outcome:
        now = self._clock()
        # One deadline for all of this review's lookups together.
        deadline = time.monotonic() + self.settings.lookup_budget_seconds
        inherited, parent_provenance, lookup_failed = self._inherited_owner(req, lookups, deadline)
        namespace_labels = self._namespace_labels(req, lookups)
        provenance = self._provenance(req, lookups, deadline)
        if endpoint == "mutate":
            mutation = plan_mutation(
                policy=self.policy,
                request=req,
                now=now,
                inherited_owner=inherited,
                namespace_labels=namespace_labels,
                provenance=provenance,
                inherited_provenance=parent_provenance,
            )
            return _Outcome(
                responses.patched(req.uid, mutation.patch, warnings=mutation.warnings),
                "patched" if mutation.patch else "allowed",
                mutation.rule.id if mutation.rule is not None else None,
                mutation.reason,
            )
        verdict = check_admission(
            policy=self.policy,
            request=req,
            now=now,
            inherited_owner=inherited,
            namespace_labels=namespace_labels,
            parent_lookup_failed=lookup_failed,
            provenance=provenance,
            inherited_provenance=parent_provenance,
        )
        rule = verdict.rule.id if verdict.rule is not None else None
        if verdict.allowed:
            return _Outcome(
                responses.allowed(req.uid, warnings=verdict.warnings),
                "allowed",
                rule,
                verdict.message,
            )
        return _Outcome(
            responses.denied(req.uid, verdict.message, warnings=verdict.warnings),
            "denied",
            rule,
            verdict.message,
        )

    def _fallback(self, endpoint: Endpoint, uid: str) -> _Outcome:
        """The configured answer when deciding failed: never a 500, always the uid."""
        admit = (
            self.settings.mutate_admits_on_error
            if endpoint == "mutate"
            else self.settings.validate_admits_on_error
        )
        if admit:
            return _Outcome(responses.allowed(uid), "error", reason="internal error, admitted")
        message = (
            f"kaptain-warden could not {endpoint} this request because of an internal error; "
            f"retry, and report it with request uid {uid} if it persists"
        )
        return _Outcome(responses.errored(uid, message), "error", reason=message)

    def _governed_create(self, req: AdmissionRequest) -> bool:
        """Only a CREATE of a governed kind outside excluded namespaces needs a lookup."""
        return (
            req.operation == "CREATE"
            and not req.sub_resource
            and isinstance(req.obj, Mapping)
            and not is_excluded_namespace(self.policy, req.namespace)
            and governs_kind(self.policy, req.api_version, req.kind)
        )

    def _lookups(self, req: AdmissionRequest) -> _Lookups:
        """What deciding `req` asks the cluster: the one place that says it, for the lookups
        themselves and for the worker's loop, which answers only reviews that ask nothing."""
        if not self._governed_create(req):
            return _NO_LOOKUPS
        assert req.obj is not None  # checked by _governed_create
        return _Lookups(
            governed=True,
            parents=self._parents is not None and bool(parent_refs(req.obj)),
            provenance=req.pod is not None and self._provenance_lookup is not None,
            namespace_labels=self._namespaces is not None,
        )

    def _inherited_owner(
        self, req: AdmissionRequest, lookups: _Lookups, deadline: float
    ) -> tuple[str | None, Provenance | None, bool]:
        """(the inherited owner or None, the parent's provenance, whether the parents could
        not be read).

        Only CREATE looks parents up: on UPDATE the owner is carried over from the old object.
        """
        if not lookups.parents:
            return None, None, False
        assert self._parents is not None and req.obj is not None  # as lookups.parents says
        try:
            found = self._parents.inherited(namespace=req.namespace, obj=req.obj, deadline=deadline)
            if found is None:
                return None, None, False
            owner, annotations = found
            return owner, inherited_provenance(annotations, self.policy.keys), False
        except Exception:
            # A failed or refused lookup never widens what the requester may claim: the
            # object inherits nothing and its owner is the requester.
            logger.warning(
                "parent lookup failed; the owner is the requester",
                exc_info=True,
                extra={"uid": req.uid, "object": _object_name(req)},
            )
            self.metrics.lookup_errors.labels("parents").inc()
            return None, None, True

    def _provenance(self, req: AdmissionRequest, lookups: _Lookups, deadline: float) -> Provenance:
        """Where a new object comes from: the request's Pod, and what lookups say about it.

        Nothing without a Pod-bound identity; without lookups, the notebook and the Profile
        owner stay unresolved (left out, and not judged by the validator).
        """
        if req.pod is None or not lookups.governed:
            return NO_PROVENANCE
        keys = self.policy.keys
        if not lookups.provenance or self._provenance_lookup is None:
            return Provenance(
                pod=req.pod, unresolved=frozenset({keys.notebook, keys.profile_owner})
            )
        try:
            found = self._provenance_lookup.provenance(
                namespace=req.namespace,
                pod=req.pod,
                deadline=deadline,
            )
            if found.unresolved:
                self.metrics.lookup_errors.labels("provenance").inc()
            return found
        except Exception:
            # Lookups never raise by contract; if one does, the object goes without them.
            logger.warning(
                "provenance lookup failed; the object goes without notebook and profile owner",
                exc_info=True,
                extra={"uid": req.uid, "object": _object_name(req)},
            )
            self.metrics.lookup_errors.labels("provenance").inc()
            return Provenance(
                pod=req.pod, unresolved=frozenset({keys.notebook, keys.profile_owner})
            )

    def _namespace_labels(
        self, req: AdmissionRequest, lookups: _Lookups
    ) -> Mapping[str, str] | None:
        if not lookups.namespace_labels or self._namespaces is None:
            return None
        try:
            return self._namespaces.namespace_labels(namespace=req.namespace)
        except Exception:
            logger.warning(
                "namespace label lookup failed; deciding without them",
                exc_info=True,
                extra={"uid": req.uid, "namespace": req.namespace},
            )
            self.metrics.lookup_errors.labels("namespace_labels").inc()
            return None

    def _record(
        self,
        endpoint: Endpoint,
        uid: str,
        req: AdmissionRequest | None,
        outcome: _Outcome,
        elapsed: float,
        *,
        failed: bool,
    ) -> None:
        """One log line and the metrics of a review (`elapsed`: seconds from the body read to
        the answer encoded); with the traceback when it failed."""
        try:
            self._log_and_count(endpoint, uid, req, outcome, elapsed, failed=failed)
        except Exception:
            # The answer is ready: losing its log line must not turn it into an HTTP 500.
            logger.exception("could not record the %s review %s", endpoint, uid)

    def _log_and_count(
        self,
        endpoint: Endpoint,
        uid: str,
        req: AdmissionRequest | None,
        outcome: _Outcome,
        elapsed: float,
        *,
        failed: bool,
    ) -> None:
        if failed:
            self.metrics.internal_errors.labels(endpoint).inc()
        if req is None:
            self.metrics.review_answered(endpoint, "UNKNOWN", outcome.verdict, elapsed)
            fields: dict[str, Any] = {"endpoint": endpoint, "uid": uid}
        else:
            self.metrics.review_answered(endpoint, req.operation, outcome.verdict, elapsed)
            fields = {
                "endpoint": endpoint,
                "uid": uid,
                "user": req.username,
                "kind": req.kind,
                "api_version": req.api_version,
                "namespace": req.namespace,
                # "name" is taken by LogRecord; namespace/name is what kubectl users read.
                "object": _object_name(req),
                "operation": req.operation,
                "dry_run": req.dry_run,
            }
        fields["verdict"] = outcome.verdict
        fields["rule"] = outcome.rule
        fields["duration_ms"] = round(elapsed * 1000, 3)
        if failed:
            logger.error(
                "%s: internal error: %s", endpoint, outcome.reason, exc_info=True, extra=fields
            )
        else:
            logger.info("%s: %s", endpoint, outcome.reason, extra=fields)


def _object_name(req: AdmissionRequest) -> str:
    """`namespace/name`; `prefix*` for an object created with generateName (no name yet)."""
    name = req.name
    if not name:
        metadata = req.obj.get("metadata") if isinstance(req.obj, Mapping) else None
        prefix = metadata.get("generateName") if isinstance(metadata, Mapping) else None
        name = f"{prefix}*" if isinstance(prefix, str) and prefix else ""
    return f"{req.namespace}/{name}" if req.namespace else name


def _discard_body(stream: Any, limit: int) -> None:
    """Read and drop an unwanted body, up to `limit` bytes.

    gunicorn answers "Connection: keep-alive" and then closes the connection when a body was
    left unread, so a client reusing it would fail its next request. A body a little over the
    limit is drained so the connection stays usable; a huge one is not worth reading.
    """
    remaining = limit
    while remaining > 0 and (chunk := stream.read(min(remaining, 1 << 16))):
        remaining -= len(chunk)


def _route(
    handler: AdmissionHandler,
    endpoint: Endpoint,
    body: bytes,
    content_type: str | None,
    may_wait: bool,
) -> Answer | None:
    return handler.answer_first(endpoint, body, content_type, may_wait=may_wait)


def _constant_review(_body: bytes, _content_type: str | None, _may_wait: bool) -> Answer:
    """The bench ceiling: the body is read (by the server) but nothing is decided."""
    return Answer(200, _CONSTANT_REVIEW)


def _json(answer: Answer) -> Response:
    return Response(answer.body, status=answer.status, mimetype=JSON)


# Where create_app keeps its review routes (see `review_routes`).
_ROUTES = "kaptain_warden.review_routes"

ReviewRoute = Callable[[bytes, "str | None", bool], "Answer | None"]
"""A review's answer from its body and Content-Type alone; with False (may not wait), None
when deciding it would wait on a lookup in the cluster. Whoever sends the answer calls its
`record` once, after sending it or failing to."""


def review_routes(app: object) -> Mapping[str, ReviewRoute]:
    """The paths `app` answers from a POST's body alone (/mutate, /validate, and the bench
    ceiling when enabled), for a server that reads requests itself (`worker.DeadlineWorker`
    answers these without WSGI); empty for any other app."""
    extensions = getattr(app, "extensions", None)
    routes = extensions.get(_ROUTES) if isinstance(extensions, dict) else None
    return routes if isinstance(routes, dict) else {}


def _reviews_first(
    flask_app: WSGIApplication, routes: Mapping[str, ReviewRoute], max_body_bytes: int
) -> WSGIApplication:
    """Reviews straight to the handler, everything else through Flask.

    A POST to /mutate or /validate (or the bench ceiling) with a Content-Length within the
    limit is answered without Flask's request context, routing and response object, which
    cost about as much as deciding a review. What is not that exact case (another path or
    method, a chunked body, a missing or oversized Content-Length) goes to Flask, which
    refuses it as before. The worker has read the whole body before the app runs.
    """

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route = routes.get(environ.get("PATH_INFO", ""))
        length = environ.get("CONTENT_LENGTH") or ""
        if (
            route is not None
            and environ.get("REQUEST_METHOD") == "POST"
            and "HTTP_TRANSFER_ENCODING" not in environ
            and length.isdigit()
            and int(length) <= max_body_bytes
        ):
            answer = route(
                environ["wsgi.input"].read(int(length)), environ.get("CONTENT_TYPE"), True
            )
            assert answer is not None  # a route that may wait always answers
            start_response(
                f"{answer.status} {HTTP_STATUS_CODES.get(answer.status, '')}",
                [("Content-Type", JSON), ("Content-Length", str(len(answer.body)))],
            )
            answer.record()  # a rare path (the worker answers plain reviews): not worth later
            return [answer.body]
        return flask_app(environ, start_response)

    return app


def create_app(
    settings: WebhookSettings,
    *,
    policy: Policy | None = None,
    parents: ParentResolver | None = None,
    namespaces: NamespaceLabels | None = None,
    provenance: ProvenanceLookup | None = None,
    clock: Callable[[], datetime] = _utc_now,
) -> Flask:
    """The admission server's WSGI app (the Flask application factory).

    `policy` defaults to `settings.policy_file` (or the built-in policy), loaded here, once;
    `parents` and `namespaces` answer the cluster questions some rules need (no lookups
    when absent); `clock` is injected for tests.
    """
    app = Flask(__name__)
    # Werkzeug refuses a larger body before reading it (also for chunked bodies).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    handler = AdmissionHandler(
        settings=settings,
        policy=policy if policy is not None else load_policy(settings.policy_file),
        metrics=AdmissionMetrics(certificate_file=settings.tls_cert_file),
        parents=parents,
        namespaces=namespaces,
        provenance=provenance,
        clock=clock,
    )
    app.extensions["kaptain_warden"] = handler
    ready = orjson.dumps(
        {"status": "ready", "policy": handler.policy.source, "rules": len(handler.policy.rules)}
    )

    def review(endpoint: Endpoint) -> Response:
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            size = f"of {request.content_length} bytes " if request.content_length else ""
            message = f"body {size}is over the limit of {settings.max_body_bytes} bytes"
            _discard_body(request.environ["wsgi.input"], settings.max_body_bytes * 2)
            return _json(handler.reject(endpoint, BadReview(413, message)))
        return _json(handler.review(endpoint, body, request.environ.get("CONTENT_TYPE")))

    @app.post("/mutate")
    def mutate() -> Response:
        return review("mutate")

    @app.post("/validate")
    def validate() -> Response:
        return review("validate")

    @app.get("/healthz")
    def healthz() -> Response:
        return _json(Answer(200, b'{"status":"ok"}'))

    @app.get("/readyz")
    def readyz() -> Response:
        # The factory loads the policy before the first request can arrive, so a worker that
        # answers is ready; the body says which policy it serves.
        return _json(Answer(200, ready))

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(handler.metrics.exposition(), content_type=CONTENT_TYPE)

    if settings.enable_bench_endpoint:

        @app.post("/_bench/constant")
        def bench_constant() -> Response:
            # Read the body as /mutate does, so the ceiling includes receiving it.
            request.get_data(cache=False)
            return Response(_CONSTANT_REVIEW, mimetype=JSON)

    routes: dict[str, ReviewRoute] = {
        "/mutate": partial(_route, handler, "mutate"),
        "/validate": partial(_route, handler, "validate"),
    }
    if settings.enable_bench_endpoint:
        routes["/_bench/constant"] = _constant_review
    app.extensions[_ROUTES] = routes
    app.wsgi_app = _reviews_first(app.wsgi_app, routes, settings.max_body_bytes)  # type: ignore[method-assign,assignment]

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        # Unknown paths, wrong methods: JSON like every other refusal, logged once.
        code = exc.code or 500
        logger.warning(
            "answered %s %s with %s",
            request.method,
            request.path,
            exc.name,
            extra={"http_status": code},
        )
        return _json(Answer(code, responses.error_body(f"{exc.name}: {exc.description}")))

    return app
