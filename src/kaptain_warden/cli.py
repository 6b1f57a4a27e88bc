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
#: The module that registers each subcommand. A command line that names one builds only that
#: module's parsers: a one-shot `sweep` does not import and build the other eight.
COMMANDS = {
    "up": "up",
    "serve": "serve",
    "policy": "policy",
    "webhook-config": "webhook_config",
    "sweep": "sweep",
    "sweeper": "sweep",
    "certs": "certs",
    "ls": "user",
    "extend": "user",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered, or only the module that
    registers `command` when it is one (its usage and errors are the same either way)."""
    parser = argparse.ArgumentParser(
        prog="kaptain-warden",
        description=(
            "Owner and TTL metadata, validation and cleanup for the Kubernetes objects the "
            "Kaptain ML SDK creates."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    names = (COMMANDS[command],) if command in COMMANDS else COMMAND_MODULES
    for name in names:
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
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(words[0] if words else None)
    args = parser.parse_args(words)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
