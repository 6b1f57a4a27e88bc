"""Rounds, ranges and one result file: what every benchmark in bench/ shares.

A benchmark compares arms (A and B: without and with webhooks, the ceiling and the server, a
quiet and an attacked server) in the same run. Machine drift (other work, caches, a growing
etcd) then hits every arm alike if the arms alternate: `Rounds.order(n)` rotates them, so
round 0 runs A then B, round 1 B then A, and so on. Each round records named figures per arm;
the report gives min / median / max over the rounds of every figure and of every ratio
computed *within* a round (B's figure over A's from the same round), never a ratio of two
medians taken at different times.

Figures are of two kinds, and the report says which is which:

- ``absolute``: milliseconds, reviews/s, MiB. They depend on the machine and its load; they
  do not carry over to another machine.
- ``ratio``: one arm over another, measured side by side in the same round. Load and machine
  speed cancel out to a large degree: these carry over.

The result is printed (a table) and written as JSON (``bench/results/<benchmark>.json`` by
default) with the machine (CPUs, memory) and its load average before, during (at each round's
start) and after; `bench/figures.py` renders the documentation's Figures from those files
(`make bench` runs it).

    bench = Rounds("e2e_admission", title="...", arms=("without", "with"), rounds=5)
    bench.declare("median", "ms")
    for n in bench.rounds():
        for arm in bench.order(n):
            bench.record(n, arm, {"median": measure(arm)})
    bench.ratio("median", "with", "without")
    bench.finish()
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

RESULTS = Path(__file__).resolve().parent / "results"
MIN_ROUNDS = 5
Kind = Literal["absolute", "ratio"]


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (0.5 = the median's neighbour, 0.99 = p99) of `samples`."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = math.ceil(fraction * len(ordered)) - 1
    return ordered[min(len(ordered) - 1, max(rank, 0))]


def spread(values: Sequence[float]) -> dict[str, float]:
    """min / median / max of `values` (NaN for none)."""
    if not values:
        return {"min": math.nan, "median": math.nan, "max": math.nan}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPUs, memory, CPU model, kernel, Python."""
    memory_kib = 0
    model = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_kib / 2**20, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def add_arguments(parser: argparse.ArgumentParser, *, rounds: int = MIN_ROUNDS) -> None:
    """--rounds and --json, the same in every benchmark."""
    parser.add_argument(
        "--rounds",
        type=int,
        default=rounds,
        help=f"rounds, the arms alternating in each (default {rounds}; "
        f"fewer than {MIN_ROUNDS} is a trial run and writes no result unless --json says where)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="where to write the result (default bench/results/<benchmark>.json)",
    )


@dataclass
class _Figure:
    name: str
    unit: str
    kind: Kind
    arm: str | None  # None: a figure of the round itself (a paired difference, a ratio)
    values: dict[int, float] = field(default_factory=dict)


class Rounds:
    """Figures per round and arm, their ranges and the ratios between arms; see the module."""

    def __init__(
        self,
        benchmark: str,
        *,
        title: str,
        arms: Sequence[str],
        rounds: int,
        setup: Mapping[str, Any] | None = None,
        json_path: Path | None = None,
    ) -> None:
        if rounds < 1:
            raise SystemExit("--rounds must be at least 1")
        if len(set(arms)) != len(arms) or not arms:
            raise ValueError(f"arms must be distinct and at least one: {arms}")
        self.benchmark = benchmark
        self.title = title
        self.arms = tuple(arms)
        self.count = rounds
        self.setup = dict(setup or {})
        self.notes: list[str] = []
        self._headline: list[tuple[str, str | None]] = []
        self._json_path = json_path
        self._units: dict[str, str] = {}
        self._figures: dict[tuple[str | None, str], _Figure] = {}
        self._load_at_round: dict[int, list[float]] = {}
        self._started = datetime.now(UTC)
        self._monotonic = time.monotonic()
        self._machine = machine()
        self._load_before = loadavg()
        cpus = self._machine["cpus"]
        print(
            f"{benchmark}: {title}\n"
            f"machine: {cpus} CPUs, {self._machine['memory_gib']} GiB; "
            f"load average before: {' '.join(map(str, self._load_before))}; "
            f"{rounds} rounds, arms alternating: {' / '.join(self.arms)}",
            flush=True,
        )
        if rounds < MIN_ROUNDS:
            print(f"(a trial run: fewer than {MIN_ROUNDS} rounds)", flush=True)

    @classmethod
    def from_args(
        cls,
        benchmark: str,
        args: argparse.Namespace,
        *,
        title: str,
        arms: Sequence[str],
        setup: Mapping[str, Any] | None = None,
    ) -> Rounds:
        """A Rounds for the --rounds and --json of `add_arguments`."""
        return cls(
            benchmark, title=title, arms=arms, rounds=args.rounds, setup=setup, json_path=args.json
        )

    def declare(self, name: str, unit: str) -> None:
        """A figure's unit (declare before recording; the report keeps declaration order)."""
        self._units[name] = unit

    def rounds(self) -> Iterator[int]:
        """0 .. rounds-1, noting the load average at each round's start."""
        for n in range(self.count):
            self._load_at_round[n] = loadavg()
            yield n

    def order(self, n: int) -> tuple[str, ...]:
        """The arms in round `n`'s order: rotated by one each round (A B, B A, ...)."""
        k = n % len(self.arms)
        return self.arms[k:] + self.arms[:k]

    def record(self, n: int, arm: str, figures: Mapping[str, float]) -> None:
        """Round `n`'s figures for `arm` (absolute: measured on this machine)."""
        if arm not in self.arms:
            raise ValueError(f"unknown arm {arm!r}; arms: {self.arms}")
        for name, value in figures.items():
            self._figure(arm, name, "absolute").values[n] = float(value)
        print(f"  round {n + 1} {arm}: {_row(figures, self._units)}", flush=True)

    def record_round(self, n: int, figures: Mapping[str, float], *, kind: Kind) -> None:
        """Figures of round `n` itself, computed from its arms side by side (a paired
        difference is ``absolute``, a quotient is a ``ratio``)."""
        for name, value in figures.items():
            self._figure(None, name, kind).values[n] = float(value)
        print(f"  round {n + 1}: {_row(figures, self._units)}", flush=True)

    def ratio(self, name: str, numerator: str, denominator: str) -> None:
        """`numerator`'s figure `name` over `denominator`'s, per round (rounds missing either
        are left out)."""
        top = self._figures[(numerator, name)].values
        bottom = self._figures[(denominator, name)].values
        ratio = _Figure(f"{name}: {numerator} / {denominator}", "x", "ratio", None)
        for n in sorted(top.keys() & bottom.keys()):
            if bottom[n]:
                ratio.values[n] = top[n] / bottom[n]
        self._figures[(None, ratio.name)] = ratio

    def headline(self, name: str, arm: str | None = None) -> None:
        """Name a figure (of `arm`, or of the round) for the README's short summary; without
        any, the summary shows the ratios."""
        self._headline.append((name, arm))

    def note(self, text: str) -> None:
        """A sentence the report carries (a caveat, what a figure means)."""
        self.notes.append(text)

    def result(self) -> dict[str, Any]:
        """The JSON document: machine, load, set-up, and every figure with its range."""
        figures = []
        for figure in self._figures.values():
            values = [figure.values[n] for n in sorted(figure.values)]
            figures.append(
                {
                    "name": figure.name,
                    "arm": figure.arm,
                    "unit": figure.unit,
                    "kind": figure.kind,
                    "values": values,
                    **{k: None if math.isnan(v) else v for k, v in spread(values).items()},
                }
            )
        during = list(self._load_at_round.values())
        return {
            "benchmark": self.benchmark,
            "title": self.title,
            "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "started": self._started.isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - self._monotonic, 1),
            "machine": self._machine,
            "load": {
                "before": self._load_before,
                "during_max": [max(x[0] for x in during)] if during else [],
                "after": loadavg(),
            },
            "rounds": self.count,
            "arms": list(self.arms),
            "setup": self.setup,
            "figures": figures,
            "headline": [list(h) for h in self._headline],
            "notes": self.notes,
        }

    def finish(self) -> dict[str, Any]:
        """Print the ranges and write the JSON result; returns it."""
        result = self.result()
        print(render_text(result), flush=True)
        path = self._json_path
        if path is None and self.count >= MIN_ROUNDS:
            path = RESULTS / f"{self.benchmark}.json"
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=1, allow_nan=False, default=str) + "\n")
            print(f"result: {path}", flush=True)
        return result

    def _figure(self, arm: str | None, name: str, kind: Kind) -> _Figure:
        key = (arm, name)
        if key not in self._figures:
            self._figures[key] = _Figure(name, self._units.get(name, ""), kind, arm)
        return self._figures[key]


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _row(figures: Mapping[str, float], units: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {_number(v)} {units.get(k, '')}".rstrip() for k, v in figures.items())


def render_text(result: Mapping[str, Any]) -> str:
    """The ranges as a plain-text table: figure, arm, min, median, max, unit, kind."""
    rows = [("figure", "arm", "min", "median", "max", "unit", "kind")]
    for figure in result["figures"]:
        rows.append(
            (
                figure["name"],
                figure["arm"] or "(per round)",
                _number(figure["min"]),
                _number(figure["median"]),
                _number(figure["max"]),
                figure["unit"],
                figure["kind"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "",
        f"{result['benchmark']}: {result['rounds']} rounds; load average before "
        f"{' '.join(map(str, result['load']['before']))}, after "
        f"{' '.join(map(str, result['load']['after']))}",
    ]
    for i, row in enumerate(rows):
        cells = [
            cell.ljust(width) if j < 2 or j > 4 else cell.rjust(width)
            for j, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)
