"""`kaptain-warden ls` and `extend`: what the warden governs, for people with namespace rights."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kaptain_warden.commands.options import add_policy_option, env_default

if TYPE_CHECKING:
    from kaptain_warden.kube.api import KubeApi
    from kaptain_warden.policies.kinds import KnownKind
    from kaptain_warden.policies.model import Policy
    from kaptain_warden.sweeper.report import ReportEntry

#: Exit status when some kind could not be read (the listing shows the rest).
EXIT_INCOMPLETE = 3

LS_DESCRIPTION = """\
List what kaptain-warden governs in one namespace: each object's owner, its state (live,
expiring within its warning window, due, kept), when it expires and why, soonest first.
Needs only read rights in the namespace (a notebook's ServiceAccount has them); the
answer comes from the same decisions the sweeper makes, evaluated with --policy (default:
the built-in policy; pass the one your platform team installed for exact windows).
"""

LS_EPILOG = """\
examples:
  kaptain-warden ls                              # the current namespace
  kaptain-warden ls --owner me --expiring-within 24h
  kaptain-warden ls -n team-a --output json

exit status: 0 listed; 1 unusable policy, kubeconfig or credentials; 2 bad options;
3 some kind could not be read (the listing shows the rest).
"""

EXTEND_DESCRIPTION = """\
Set an object's warden.kaptain.io/ttl annotation (counted from creation), so it expires at
creation + DURATION. Refused here, with the admission webhook's own message, above the
rule's maxTtl; the webhook stays the authority.
"""


def _kube_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        default=env_default("kubeconfig", None),
        help="kubeconfig to use (default: in-cluster, as in a notebook Pod, then $KUBECONFIG "
        "or ~/.kube/config)",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        metavar="NAME",
        default=None,
        help="namespace (default: the kubeconfig context's, else the Pod's own)",
    )
    add_policy_option(parser)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `ls` and `extend`."""
    ls = subparsers.add_parser(
        "ls",
        help="list governed objects in a namespace: owner, state, expiry, reason",
        description=LS_DESCRIPTION,
        epilog=LS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _kube_options(ls)
    ls.add_argument(
        "--owner",
        metavar="NAME|me",
        default=None,
        help="only objects of this owner; `me` is whoever the credentials authenticate as",
    )
    ls.add_argument(
        "--expiring-within",
        metavar="DURATION",
        default=None,
        help="only objects due, or expiring within DURATION (90m, 36h, 7d)",
    )
    ls.add_argument(
        "--output",
        "-o",
        choices=("table", "json"),
        default="table",
        help="table, or one JSON array (default: %(default)s)",
    )
    ls.set_defaults(run=_run_ls, parser=ls)

    extend = subparsers.add_parser(
        "extend",
        help="set an object's ttl annotation, within its rule's maxTtl",
        description=EXTEND_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _kube_options(extend)
    extend.add_argument("target", metavar="KIND/NAME", help="e.g. secret/s3-creds, tfjob/mnist")
    extend.add_argument(
        "--ttl", metavar="DURATION", required=True, help="time to live counted from creation"
    )
    extend.set_defaults(run=_run_extend, parser=extend)


def _connect(args: argparse.Namespace) -> tuple[Policy, KubeApi, str] | int:
    from kaptain_warden.kube.api import KubeApi
    from kaptain_warden.kube.client import KubeConfigError, current_namespace, load_api_client
    from kaptain_warden.policies.loader import PolicyError, load_policy

    try:
        policy = load_policy(args.policy)
        api_client = load_api_client(args.kubeconfig)
    except (PolicyError, KubeConfigError) as exc:
        print(f"kaptain-warden {args.command}: {exc}", file=sys.stderr)
        return 1
    namespace = args.namespace or current_namespace(args.kubeconfig)
    return policy, KubeApi(api_client), namespace


def _whoami(api: KubeApi) -> str:
    """The username the API server gives these credentials (SelfSubjectReview)."""
    review = api.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    return str(review["status"]["userInfo"]["username"])


def _run_ls(args: argparse.Namespace) -> int:
    import logging

    from kaptain_warden.kube.errors import ApiError, describe_error
    from kaptain_warden.policies.durations import DurationError, parse_duration
    from kaptain_warden.policies.owner import owner_label_value
    from kaptain_warden.sweeper.loop import Sweeper
    from kaptain_warden.sweeper.settings import SweeperSettings

    within: timedelta | None = None
    if args.expiring_within is not None:
        try:
            within = parse_duration(args.expiring_within)
        except DurationError as exc:
            args.parser.error(f"--expiring-within: {exc}")
    connected = _connect(args)
    if isinstance(connected, int):
        return connected
    policy, api, namespace = connected
    # The sweeper's decisions, in dry run: nothing is written; its log lines are not output.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("kaptain_warden").setLevel(logging.ERROR)
    now = datetime.now(UTC)
    try:
        owner = _whoami(api) if args.owner == "me" else args.owner
        sweeper = Sweeper(
            api,
            policy=policy,
            settings=SweeperSettings(dry_run=True, namespaces=(namespace,)),
            resolve_owner=lambda _namespace, _obj: None,
        )
        report = sweeper.run_once(now=now)
    except ApiError as exc:
        print(f"kaptain-warden ls: {describe_error(exc)}", file=sys.stderr)
        return 1
    entries = report.entries
    if owner is not None:
        names = {owner, owner_label_value(owner)}
        entries = [e for e in entries if e.owner in names]
    if within is not None:
        horizon = now + within
        entries = [
            e
            for e in entries
            if e.state == "due"
            or (e.state != "kept" and e.expires_at is not None and e.expires_at <= horizon)
        ]
    entries.sort(key=lambda e: (e.expires_at is None, e.expires_at or now, e.kind, e.name))
    print(_render_json(entries) if args.output == "json" else _render_table(entries, now))
    for error in report.errors:
        print(f"kaptain-warden ls: {error}", file=sys.stderr)
    return EXIT_INCOMPLETE if report.errors else 0


def _render_json(entries: list[ReportEntry]) -> str:
    import orjson

    keys = (
        "apiVersion",
        "kind",
        "namespace",
        "name",
        "owner",
        "notebook",
        "profileOwner",
        "rule",
        "state",
        "expiresAt",
    )
    rows = []
    for entry in entries:
        full = entry.to_json()
        rows.append({**{k: full[k] for k in keys}, "reason": entry.reason})
    return orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode()


def _render_table(entries: list[ReportEntry], now: datetime) -> str:
    from kaptain_warden.policies.durations import describe_duration
    from kaptain_warden.policies.timestamps import format_time

    def when(entry: ReportEntry) -> str:
        if entry.expires_at is None:
            return "-"
        delta = entry.expires_at - now
        ago = delta < timedelta(0)
        span = describe_duration(abs(delta), largest_units=2)
        return (
            f"{format_time(entry.expires_at)} ({span} ago)"
            if ago
            else (f"{format_time(entry.expires_at)} (in {span})")
        )

    columns = ("KIND", "NAME", "OWNER", "NOTEBOOK", "PERSON", "RULE", "STATE", "EXPIRES", "REASON")
    rows = [
        (
            e.kind,
            e.name,
            e.owner or "-",
            e.notebook or "-",
            e.person or "-",
            e.rule or "-",
            e.state or "-",
            when(e),
            e.reason,
        )
        for e in entries
    ]
    if not rows:
        return "(nothing governed matches)"
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    lines = []
    for row in (columns, *rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("   ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _resolve_kind(policy: Policy, text: str) -> list[KnownKind]:
    """Governed kinds `text` names: a kind or resource (`secret`, `tfjobs`), optionally with
    its API group (`inferenceservice.serving.kserve.io`); case-insensitive."""
    name, _, group = text.lower().partition(".")
    return [
        k
        for k in policy.kinds
        if name in (k.kind.lower(), k.resource, k.resource.rstrip("s"))
        and (not group or k.group == group)
    ]


def _run_extend(args: argparse.Namespace) -> int:
    from kaptain_warden.kube.client import METADATA_ONLY, kind_path
    from kaptain_warden.kube.errors import ApiError, describe_error
    from kaptain_warden.policies.contract import duration_problems
    from kaptain_warden.policies.expiry import rule_id_of
    from kaptain_warden.policies.timestamps import format_time, parse_time

    kind_text, slash, name = args.target.partition("/")
    if not slash or not kind_text or not name:
        args.parser.error(f"{args.target!r}: use KIND/NAME, e.g. secret/s3-creds")
    connected = _connect(args)
    if isinstance(connected, int):
        return connected
    policy, api, namespace = connected
    kinds = _resolve_kind(policy, kind_text)
    if not kinds:
        known = ", ".join(sorted({k.kind.lower() for k in policy.kinds}))
        print(
            f"kaptain-warden extend: {kind_text!r} is not a governed kind ({known})",
            file=sys.stderr,
        )
        return 1
    found: list[tuple[KnownKind, dict[str, Any], str]] = []
    for kind in kinds:
        path = kind_path(kind, namespace=namespace, name=name)
        try:
            obj = api.get(path, accept=METADATA_ONLY)
        except ApiError as exc:
            if exc.status == 404:
                continue
            print(f"kaptain-warden extend: {describe_error(exc)}", file=sys.stderr)
            return 1
        found.append((kind, {"apiVersion": kind.api_version, "kind": kind.kind, **obj}, path))
    if len(found) != 1:
        what = "no" if not found else "more than one"
        print(
            f"kaptain-warden extend: {what} {kind_text} named {name} in namespace {namespace}"
            + ("; name the API group, e.g. inferenceservice.serving.kserve.io" if found else ""),
            file=sys.stderr,
        )
        return 1
    kind, obj, path = found[0]
    rule_id = rule_id_of(obj, policy)
    rule = policy.rule_by_id(rule_id) if rule_id else None
    if rule is None:
        print(
            f"kaptain-warden extend: {kind.kind} {namespace}/{name} is not governed by "
            "kaptain-warden (no rule label): it has no TTL to extend",
            file=sys.stderr,
        )
        return 1
    # The webhook's own check, so the refusal reads the same here and there.
    problems = duration_problems(policy.keys.ttl, args.ttl, rule)
    if problems:
        print(f"kaptain-warden extend: {'; '.join(problems)}", file=sys.stderr)
        return 1
    body = {"metadata": {"annotations": {policy.keys.ttl: args.ttl}}}
    try:
        patched = api.request("PATCH", path, body=body, content_type="application/merge-patch+json")
    except ApiError as exc:
        print(f"kaptain-warden extend: refused: {describe_error(exc)}", file=sys.stderr)
        return 1
    annotations = (patched.get("metadata") or {}).get("annotations") or {}
    expires = parse_time(annotations.get(policy.keys.expires_at))
    shown = format_time(expires) if expires else "(unknown)"
    print(f"{kind.kind.lower()}/{name}: {policy.keys.ttl}={args.ttl}, expires at {shown}")
    return 0
