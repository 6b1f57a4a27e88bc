"""The `kaptain-warden` command line: one subcommand per module in `kaptain_warden.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kaptain_warden import __version__

# Each module defines `register(subparsers)`; its parser's `run` default does the work and
# returns the exit code. Modules import their heavy dependencies inside `run`, so that
# `kaptain-warden policy check` starts fast.
COMMAND_MODULES = ("up", "serve", "policy", "webhook_config", "sweep", "certs", "user")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="kaptain-warden",
        description=(
            "Owner and TTL metadata, validation and cleanup for the Kubernetes objects the "
            "Kaptain ML SDK creates."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"kaptain_warden.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"kaptain_warden.commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
