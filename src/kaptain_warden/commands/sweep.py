"""`kaptain-warden sweep` (one pass, a report) and `kaptain-warden sweeper` (passes forever)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kaptain_warden.commands.options import (
    add_log_options,
    add_policy_option,
    bounded,
    env_default,
    env_flag,
)

if TYPE_CHECKING:
    from kaptain_warden.kube.api import KubeApi
    from kaptain_warden.policies.model import Policy
    from kaptain_warden.sweeper.settings import SweeperSettings

#: Exit status when the API server cannot be reached or the pass could not read everything.
EXIT_INCOMPLETE = 3

SWEEP_DESCRIPTION = """\
Run one sweep pass and print a report: every governed object (label
warden.kaptain.io/managed=true) with its rule, owner, whether it stays or goes, why, and
when it will go. Deletes what is due unless --dry-run.

Every option with a value also reads KAPTAIN_WARDEN_<OPTION> from the environment
(e.g. KAPTAIN_WARDEN_POLICY=/etc/kaptain-warden/policy.yaml); a flag on the command line wins.
"""

SWEEP_EPILOG = """\
examples:
  # what would go now, and why (nothing is deleted)
  kaptain-warden sweep --dry-run
  # what will go by Monday morning, as JSON for other tools
  kaptain-warden sweep --dry-run --at 2025-06-02T08:00:00Z --output json
  kaptain-warden sweep --dry-run --at +72h --namespace team-a
  # what one notebook left behind, and when it goes
  kaptain-warden sweep --dry-run --notebook alice-nb --namespace team-a

exit status: 0 the pass completed; 1 the policy or the kubeconfig cannot be used; 2 bad
options; 3 the API server could not be reached (nothing deleted) or some kind could not be
listed or some delete failed (the report shows what was done).
"""

SWEEPER_DESCRIPTION = """\
Run sweep passes every --interval seconds until SIGTERM (which is honoured between passes).
With leader election (the default) only the replica holding the Lease sweeps, and it checks
that it still holds it before each batch of deletes; on SIGTERM the leader releases the Lease,
so another replica takes over within about --retry-period. /metrics and /healthz are served
on --metrics-port.

Every option with a value also reads KAPTAIN_WARDEN_<OPTION> from the environment.
"""


def _common(parser: argparse.ArgumentParser) -> None:
    from kaptain_warden.sweeper.settings import SweeperSettings

    defaults = SweeperSettings()
    add_policy_option(parser)
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        default=env_default("kubeconfig", None),
        help="kubeconfig to use (default: in-cluster, then $KUBECONFIG or ~/.kube/config)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=env_flag("dry_run"),
        help="report and log what would be deleted; delete, patch and record nothing",
    )
    parser.add_argument(
        "--max-deletes-per-cycle",
        metavar="N",
        type=bounded(int, 1),
        default=int(env_default("max_deletes_per_cycle", defaults.max_deletes_per_cycle)),
        help="stop a pass after N deletions; the next pass continues (default: %(default)s)",
    )
    parser.add_argument(
        "--namespace",
        metavar="NAME",
        action="append",
        dest="namespaces",
        default=None,
        help="sweep only this namespace; repeat for more (default: all but the excluded ones)",
    )
    parser.add_argument(
        "--backfill",
        action="store_true",
        default=env_flag("backfill"),
        help="also stamp governed objects that have no warden metadata (made before the "
        "install or while the webhook was down), owner attributed from a managed parent, "
        "the creator the object records, the namespace's owner (Kubeflow Profile), or "
        "`unknown`",
    )
    parser.add_argument(
        "--backfill-since-webhook",
        metavar="NAME",
        default=env_default("backfill_since_webhook", None),
        help="backfill only objects created after this MutatingWebhookConfiguration was: "
        "those the webhook missed, not those that predate the install (the chart sets it)",
    )
    parser.add_argument(
        "--page-size",
        metavar="N",
        type=bounded(int, 1),
        default=int(env_default("page_size", defaults.page_size)),
        help="items per list request (default: %(default)s)",
    )
    parser.add_argument(
        "--request-timeout",
        metavar="SECONDS",
        type=bounded(float, 0.1),
        default=float(env_default("request_timeout", defaults.request_timeout)),
        help="seconds one API request may take (default: %(default)s)",
    )
    add_log_options(
        parser,
        level_help="(default: %(default)s)",
        formats=("json", "text"),
        format_default="json",
        format_help="JSON lines (for log collectors) or text (default: %(default)s)",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `sweep` and `sweeper`."""
    sweep = subparsers.add_parser(
        "sweep",
        help="run one sweep pass and print what stays, what goes and why",
        description=SWEEP_DESCRIPTION,
        epilog=SWEEP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(sweep)
    sweep.add_argument(
        "--output",
        "-o",
        choices=("table", "json"),
        default=env_default("output", "table"),
        help="report format; json is one array of objects (default: %(default)s)",
    )
    sweep.add_argument(
        "--at",
        metavar="TIME",
        default=None,
        help="with --dry-run: evaluate as if the clock read TIME, an RFC 3339 instant "
        "(2025-06-02T08:00:00Z) or a duration from now (+72h)",
    )
    sweep.add_argument(
        "--notebook",
        metavar="NAME",
        default=None,
        help="report only the objects made from this Kubeflow notebook (their "
        "warden.kaptain.io/notebook); the pass itself is unchanged, so pair it with --dry-run "
        "to preview one notebook's objects",
    )
    sweep.set_defaults(run=_run_sweep, parser=sweep)

    sweeper = subparsers.add_parser(
        "sweeper",
        help="run sweep passes forever (the in-cluster Deployment), with leader election",
        description=SWEEPER_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(sweeper)
    sweeper.add_argument(
        "--interval",
        metavar="SECONDS",
        type=bounded(float, 0.1),
        default=float(env_default("interval", 60.0)),
        help="seconds from the start of one pass to the start of the next (default: %(default)s)",
    )
    election = sweeper.add_argument_group("leader election (coordination.k8s.io/v1 Lease)")
    election.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=str(env_default("leader_election", "true")).lower() not in ("0", "false", "no"),
        help="only the replica holding the Lease sweeps (default: on)",
    )
    election.add_argument(
        "--lease-namespace",
        metavar="NAME",
        default=env_default("lease_namespace", os.environ.get("POD_NAMESPACE")),
        help="namespace of the Lease (default: $POD_NAMESPACE, else the policy's wardenNamespace)",
    )
    election.add_argument(
        "--lease-name",
        metavar="NAME",
        default=env_default("lease_name", "kaptain-warden-sweeper"),
        help="(default: %(default)s)",
    )
    election.add_argument(
        "--lease-duration",
        metavar="SECONDS",
        type=bounded(int, 2),
        default=int(env_default("lease_duration", 15)),
        help="how long a Lease is valid without renewal; a dead leader is replaced after it "
        "(default: %(default)s)",
    )
    election.add_argument(
        "--renew-deadline",
        metavar="SECONDS",
        type=bounded(int, 1),
        default=int(env_default("renew_deadline", 10)),
        help="how long the leader keeps trying to renew before it stands down "
        "(default: %(default)s)",
    )
    election.add_argument(
        "--retry-period",
        metavar="SECONDS",
        type=bounded(int, 1),
        default=int(env_default("retry_period", 2)),
        help="seconds between attempts to acquire or renew (default: %(default)s)",
    )
    election.add_argument(
        "--identity",
        default=env_default("identity", None),
        help="this replica's name in the Lease (default: $HOSTNAME plus a random suffix)",
    )
    serving = sweeper.add_argument_group("metrics and health")
    serving.add_argument(
        "--metrics-port",
        type=bounded(int, 0),
        default=int(env_default("metrics_port", 8080)),
        help="port for GET /metrics and /healthz; 0 turns them off (default: %(default)s)",
    )
    serving.add_argument(
        "--metrics-address",
        default=env_default("metrics_address", "0.0.0.0"),
        help="address to listen on (default: %(default)s)",
    )
    serving.add_argument(
        "--max-failed-passes",
        type=bounded(int, 1),
        default=int(env_default("max_failed_passes", 3)),
        help="after this many passes in a row fail, /healthz answers 503 saying so "
        "(default: %(default)s)",
    )
    sweeper.set_defaults(run=_run_sweeper, parser=sweeper)


# -- shared start-up ---------------------------------------------------------------------------


def _parse_at(text: str, now: datetime) -> datetime:
    from kaptain_warden.policies.durations import DurationError, parse_duration
    from kaptain_warden.policies.timestamps import parse_time

    if text.startswith("+"):
        try:
            return now + parse_duration(text[1:])
        except DurationError as exc:
            raise ValueError(f"--at {text}: {exc}") from None
    moment = parse_time(text)
    if moment is None:
        raise ValueError(
            f"--at {text!r}: use an RFC 3339 instant such as 2025-06-02T08:00:00Z, or a "
            "duration from now such as +72h"
        )
    return moment


def _prepare(
    args: argparse.Namespace, *, identity: str, at: datetime | None = None, interval: float = 60.0
) -> tuple[Policy, SweeperSettings, Any] | int:
    """Logging, policy, settings and API client; an exit code when something is unusable."""
    from kaptain_warden.kube.client import KubeConfigError, load_api_client
    from kaptain_warden.logs import configure_logging
    from kaptain_warden.policies.loader import PolicyError, load_policy
    from kaptain_warden.sweeper.settings import SweeperSettings

    configure_logging(args.log_level, json=args.log_format == "json")
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        for error in exc.errors:
            print(f"kaptain-warden {args.command}: {exc.source}: {error}", file=sys.stderr)
        return 1
    settings = SweeperSettings(
        dry_run=args.dry_run or policy.settings.dry_run,
        max_deletes_per_cycle=args.max_deletes_per_cycle,
        namespaces=tuple(dict.fromkeys(args.namespaces or ())),
        backfill=args.backfill or policy.settings.backfill,
        backfill_since_webhook=args.backfill_since_webhook,
        interval=interval,
        page_size=args.page_size,
        request_timeout=args.request_timeout,
        at=at,
        identity=identity,
    )
    try:
        api_client = load_api_client(args.kubeconfig)
    except (KubeConfigError, OSError, ValueError) as exc:
        print(f"kaptain-warden {args.command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the client's ConfigException for a malformed kubeconfig
        print(f"kaptain-warden {args.command}: cannot use the kubeconfig: {exc}", file=sys.stderr)
        return 1
    return policy, settings, api_client


def _sweeper(policy: Policy, settings: SweeperSettings, api: KubeApi, metrics: Any = None) -> Any:
    from kaptain_warden.sweeper.loop import Sweeper

    return Sweeper(api, policy=policy, settings=settings, metrics=metrics)


# -- sweep ---------------------------------------------------------------------------------------


def _run_sweep(args: argparse.Namespace) -> int:
    import logging

    from kaptain_warden.kube.api import KubeApi
    from kaptain_warden.kube.errors import ApiError, describe_error
    from kaptain_warden.sweeper.report import render_json, render_table

    now = datetime.now(UTC)
    at = None
    if args.at is not None:
        if not args.dry_run:
            args.parser.error(
                "--at needs --dry-run: a sweep evaluated at another time only previews"
            )
        try:
            at = _parse_at(args.at, now)
        except ValueError as exc:
            args.parser.error(str(exc))
    prepared = _prepare(args, identity=f"kaptain-warden-sweep@{_hostname()}", at=at)
    if isinstance(prepared, int):
        return prepared
    policy, settings, api_client = prepared
    with api_client:
        api = KubeApi(api_client, timeout=settings.request_timeout)
        try:
            api.get("/version")
        except ApiError as exc:
            print(
                f"kaptain-warden sweep: cannot reach the Kubernetes API server at {api.host}: "
                f"{describe_error(exc)}; nothing was deleted",
                file=sys.stderr,
            )
            return EXIT_INCOMPLETE
        logging.getLogger(__name__).info(
            "sweep starting", extra={"policy": policy.source, **settings.summary()}
        )
        report = _sweeper(policy, settings, api).run_once(now=at or now)
    render = render_json if args.output == "json" else render_table
    entries = report.entries
    if args.notebook is not None:
        entries = [e for e in entries if e.notebook == args.notebook]
    print(render(entries, evaluated_at=at))
    if report.deletion.stopped:
        print(f"kaptain-warden sweep: stopped early: {report.deletion.stopped}", file=sys.stderr)
    if not report.complete:
        for error in report.errors:
            print(f"kaptain-warden sweep: {error}", file=sys.stderr)
        if report.deletion.errors:
            print(
                f"kaptain-warden sweep: {report.deletion.errors} deletes failed (see the log)",
                file=sys.stderr,
            )
        if report.deletion.deferred:
            print(
                f"kaptain-warden sweep: {report.deletion.deferred} deletes deferred: the API "
                "server was unavailable; the next pass sends them again",
                file=sys.stderr,
            )
        return EXIT_INCOMPLETE
    return 0


# -- sweeper -------------------------------------------------------------------------------------


def _run_sweeper(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading
    import uuid

    from kaptain_warden.kube.api import KubeApi
    from kaptain_warden.sweeper.leader import LeaderElector, LeaseSettings
    from kaptain_warden.sweeper.loop import run_forever
    from kaptain_warden.sweeper.metrics import Heartbeat, MetricsServer, SweeperMetrics

    logger = logging.getLogger(__name__)
    identity = args.identity or f"{_hostname()}_{uuid.uuid4().hex[:8]}"
    prepared = _prepare(args, identity=identity, interval=args.interval)
    if isinstance(prepared, int):
        return prepared
    policy, settings, api_client = prepared
    lease: LeaseSettings | None = None
    if args.leader_election:
        try:
            lease = LeaseSettings(
                namespace=args.lease_namespace or policy.settings.warden_namespace,
                name=args.lease_name,
                identity=identity,
                lease_duration=args.lease_duration,
                renew_deadline=args.renew_deadline,
                retry_period=args.retry_period,
            )
        except ValueError as exc:
            args.parser.error(str(exc))

    metrics = SweeperMetrics()
    api = KubeApi(api_client, timeout=settings.request_timeout)
    heartbeat = Heartbeat(
        allowance=3 * settings.interval + 600, max_failed_passes=args.max_failed_passes
    )
    server = None
    if args.metrics_port:
        try:
            server = MetricsServer(
                metrics,
                address=args.metrics_address,
                port=args.metrics_port,
                healthy=heartbeat.healthy,
                status=heartbeat.status,
            ).start()
        except OSError as exc:
            print(
                f"kaptain-warden sweeper: cannot listen on "
                f"{args.metrics_address}:{args.metrics_port}: {exc}",
                file=sys.stderr,
            )
            return 1
    elector = None
    if lease is not None:
        elector = LeaderElector(api, lease, metrics=metrics).start()
    else:
        metrics.leader.set(1)

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logger.info("received %s; stopping after the current pass", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logger.info(
        "sweeper starting",
        extra={
            "policy": policy.source,
            "leaderElection": lease is not None,
            "lease": f"{lease.namespace}/{lease.name}" if lease else None,
            "metricsPort": server.port if server else None,
            **settings.summary(),
        },
    )
    sweeper = _sweeper(policy, settings, api, metrics)
    try:
        run_forever(
            sweeper,
            stop=stop,
            interval=settings.interval,
            may_sweep=elector.is_leader if elector else (lambda: True),
            guard=elector.check if elector else None,
            heartbeat=heartbeat.beat,
            passed=heartbeat.passed,
        )
    finally:
        # Every thread this process started ends here, before the interpreter finalizes: a
        # daemon thread still writing to stderr then aborts the process (SIGABRT, not exit 0).
        # The elector releases the Lease when it leads, so another replica sweeps at its next
        # retry instead of after a whole lease duration.
        if elector is not None and not elector.stop():
            logger.warning(
                "leader election did not stop in time; exiting without it",
                extra={"lease": f"{lease.namespace}/{lease.name}" if lease else None},
            )
            # Its thread is stuck in a request to the API server: let it write nothing more.
            logging.disable(logging.CRITICAL)
        if server is not None:
            server.stop()
        api_client.close()
    return 0


def _hostname() -> str:
    import socket

    return os.environ.get("HOSTNAME") or socket.gethostname()
