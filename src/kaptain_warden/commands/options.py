"""Command-line conventions every long-running subcommand shares: environment fallbacks,
bounded numbers, the policy option and the logging options."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, TypeVar

#: Every option with a value also reads KAPTAIN_WARDEN_<OPTION> (a flag on the command line wins).
ENV_PREFIX = "KAPTAIN_WARDEN_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

Number = TypeVar("Number", int, float)


def env_default(dest: str, default: Any) -> Any:
    """The value of KAPTAIN_WARDEN_<DEST> in the environment, else `default`."""
    return os.environ.get(ENV_PREFIX + dest.upper(), default)


def env_flag(dest: str) -> bool:
    """True when KAPTAIN_WARDEN_<DEST> is 1, true or yes."""
    return str(env_default(dest, "")).lower() in ("1", "true", "yes")


def bounded(
    kind: Callable[[str], Number], low: Number, high: Number | None = None
) -> Callable[[str], Number]:
    """An argparse `type` for a number of `kind` within [low, high], with a clear error."""

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < low or (high is not None and value > high):
            limit = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: use a value {limit}")
        return value

    return parse


def add_policy_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--policy FILE`, defaulting to the built-in policy."""
    parser.add_argument(
        "--policy",
        metavar="FILE",
        default=env_default("policy", None),
        help="policy YAML file (default: the built-in one, `kaptain-warden policy default`)",
    )


def add_log_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    level_help: str,
    formats: tuple[str, ...],
    format_default: str,
    format_help: str,
) -> None:
    """`--log-level` (default INFO) and `--log-format` among `formats`."""
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=str(env_default("log_level", "INFO")).upper(),
        help=level_help,
    )
    parser.add_argument(
        "--log-format",
        choices=formats,
        default=env_default("log_format", format_default),
        help=format_help,
    )
