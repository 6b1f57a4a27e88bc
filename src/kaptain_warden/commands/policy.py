"""`kaptain-warden policy check|show|schema`: validate and inspect policy files."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources

from kaptain_warden.policies.loader import (
    DEFAULT_POLICY_NAME,
    PolicyError,
    load_policy,
    policy_schema,
)


def _check(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            failed = True
            for error in exc.errors:
                print(f"{exc.source}: {error}", file=sys.stderr)
            continue
        print(f"{path}: valid ({len(policy.rules)} rules: {', '.join(r.id for r in policy.rules)})")
    return 1 if failed else 0


def _show_default(args: argparse.Namespace) -> int:
    sys.stdout.write(
        resources.files("kaptain_warden.policies").joinpath(DEFAULT_POLICY_NAME).read_text()
    )
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(policy_schema(), indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `policy` and its subcommands."""
    parser = subparsers.add_parser("policy", help="validate and inspect policy files")
    sub = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="validate policy files (exit 0 valid, 1 invalid; errors on stderr)",
        description="Validate policy files against the schema and the semantic checks.",
    )
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(run=_check)
    show = sub.add_parser("default", help="print the built-in default policy (a starting point)")
    show.set_defaults(run=_show_default)
    schema = sub.add_parser("schema", help="print the JSON Schema policy files are checked against")
    schema.set_defaults(run=_schema)
