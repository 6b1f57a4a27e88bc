"""Render the documentation's Figures from the benchmarks' JSON results (bench/results/).

    .venv/bin/python bench/figures.py            # print what would be written
    .venv/bin/python bench/figures.py --write    # rewrite the generated sections

Two sections are generated, each between its marker lines: the README's short summary
(`figures-summary`) and the full tables in docs/developers/benchmarks.md (`figures`). Both
state the machine and its load, show min / median / max over the rounds, and mark each figure
as a ratio (measured side by side in one round: carries across machines) or absolute (does
not). `make bench` runs every benchmark, then this with --write.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
PAGE = ROOT / "docs" / "developers" / "benchmarks.md"
# The order of the sections; a result not listed here follows, by name.
ORDER = ("admission", "slow_clients", "e2e_admission", "sweep", "outage")
DASH, TIMES = "\u2013", "\u00d7"  # the en dash of a range, the sign of a ratio


def load(results: Path = RESULTS) -> list[dict[str, Any]]:
    """Every result in `results`, in ORDER."""
    found = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}
    names = [n for n in ORDER if n in found] + sorted(n for n in found if n not in ORDER)
    return [found[n] for n in names]


def integral(figure: Mapping[str, Any]) -> bool:
    """Whether every round gave a whole number (a count): shown without decimals."""
    return all(float(v).is_integer() for v in figure["values"])


def number(value: float | None, whole: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    magnitude = abs(value)
    if magnitude >= 100 or (whole and float(value).is_integer()):
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def span(figure: Mapping[str, Any]) -> str:
    """`min-max unit, median m` (an en dash), or the value alone when every round agreed."""
    whole = integral(figure)
    low, mid, high = (number(figure[k], whole) for k in ("min", "median", "max"))
    unit = figure["unit"] if figure["unit"] not in ("", "x") else ""
    suffix = f" {unit}" if unit else (TIMES if figure["unit"] == "x" else "")
    if low == high:
        return f"{low}{suffix}"
    return f"{low}{DASH}{high}{suffix}, median {mid}"


def hardware(result: Mapping[str, Any]) -> str:
    machine = result["machine"]
    model = f" ({machine['cpu_model']})" if machine.get("cpu_model") else ""
    return f"{machine['cpus']} CPUs{model}, {machine['memory_gib']} GiB"


def machine_line(result: Mapping[str, Any]) -> str:
    load = result["load"]
    during = load.get("during_max") or []
    peak = f", highest at a round's start {during[0]}" if during else ""
    return (
        f"{hardware(result)}; load average (1, 5, 15 min) "
        f"{' / '.join(map(str, load['before']))} before{peak}, "
        f"{' / '.join(map(str, load['after']))} after"
    )


def one_minute_loads(result: Mapping[str, Any]) -> list[float]:
    """The 1-minute load averages a result saw: before, at each round's start, after."""
    load = result["load"]
    return [load["before"][0], *(load.get("during_max") or []), load["after"][0]]


def started(result: Mapping[str, Any]) -> str:
    return str(result["started"])[:16].replace("T", " ")


def summary_rows(result: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    """The figures a result names as its headline, else its ratios."""
    wanted = result.get("headline") or []
    figures = result["figures"]
    if wanted:
        for name, arm in wanted:
            yield from (f for f in figures if f["name"] == name and f["arm"] == arm)
    elif any(f["kind"] == "ratio" for f in figures):
        yield from (f for f in figures if f["kind"] == "ratio")
    else:  # no ratio: each arm's first figure
        yield from {f["arm"]: f for f in reversed(figures)}.values()


def by_hand(result: Mapping[str, Any]) -> bool:
    """A result `make bench` does not regenerate (its set-up says it was run by hand)."""
    return str(result.get("setup", {}).get("run", "")).startswith("by hand")


def label(figure: Mapping[str, Any]) -> str:
    return f"{figure['arm']}: {figure['name']}" if figure["arm"] else figure["name"]


# What issue-level targets the figures are held to: (benchmark, figure, arm, at most, what).
# The table says, from the stored results, whether every round met it, only some, or none.
TARGETS: tuple[tuple[str, str, str | None, float, str], ...] = (
    ("sweep", "wall", "dry-run", 1.0, "`sweep --dry-run` over 1,000 objects, whole process"),
    ("sweep", "wall", "delete", 8.0, "`sweep` deleting 1,000 expired Secrets, whole process"),
    ("sweep-100000", "wall", "pass", 30.0, "one dry-run pass over 100,000 objects"),
    ("sweep-100000", "peak RSS", "pass", 300.0, "that pass's peak memory"),
    ("e2e_admission", "added median", None, 2.0, "added per create at the median (two webhooks)"),
    ("slow_clients", "p99: attacked / quiet", None, 2.0, "honest reviews' p99 under attack"),
)


def render_targets(results: list[dict[str, Any]]) -> list[str]:
    """The TARGETS table: each target, the measured range, and whether the rounds met it."""
    found = {(r["benchmark"], f["name"], f["arm"]): f for r in results for f in r["figures"]}
    lines = ["| target | at most | measured | met |", "|---|---|---|---|"]
    for benchmark, name, arm, limit, what in TARGETS:
        figure = found.get((benchmark, name, arm))
        if figure is None:
            continue
        if figure["max"] <= limit:
            met = "yes, every round"
        elif figure["min"] <= limit:
            met = "in some rounds only"
        else:
            met = "**no**"
        unit = TIMES if figure["unit"] == "x" else f" {figure['unit']}"
        lines.append(f"| {what} | {number(limit)}{unit} | {span(figure)} | {met} |")
    return lines if len(lines) > 2 else []


def render_summary(results: list[dict[str, Any]], note: str) -> str:
    if not results:
        return "No benchmark results yet: run `make bench`.\n"
    # A result run by hand (the 100,000-object sweep: too long for `make bench`) keeps its
    # own machine line in its section; the header describes the `make bench` run.
    ran = sorted((r for r in results if not by_hand(r)), key=lambda r: r["started"]) or results
    first, last = started(ran[0]), started(ran[-1])
    # A benchmark run again on its own makes the span longer than one run: the span says so.
    when = (
        first if first == last else f"{first}{DASH}{last[11:] if last[:10] == first[:10] else last}"
    )
    loads = [load for r in ran for load in one_minute_loads(r)]
    lines = [
        f"From `make bench` (its benchmarks started {when} UTC) on {hardware(ran[0])}; load "
        f"average (1 min) {min(loads)}{DASH}{max(loads)} while they ran (each benchmark's own "
        f"in its section).{(' ' + note) if note else ''} Ranges are min{DASH}max over the "
        f"rounds (A and B alternated in each). **Ratios** carry across machines; **absolute** "
        "figures (ms, reviews/s) hold for this machine and its load only.",
        "",
        "| benchmark | figure | range | kind |",
        "|---|---|---|---|",
    ]
    for result in results:
        name = f"`{result['benchmark']}`"
        if by_hand(result):
            seen = one_minute_loads(result)
            name += f" (by hand, {started(result)} UTC, load average {min(seen)}{DASH}{max(seen)})"
        for figure in summary_rows(result):
            lines.append(f"| {name} | {label(figure)} | {span(figure)} | {figure['kind']} |")
    targets = render_targets(results)
    if targets:
        lines += ["", "Held to the targets the project set itself:", "", *targets]
    return "\n".join(lines) + "\n"


def render_page(results: list[dict[str, Any]], note: str) -> str:
    if not results:
        return "No benchmark results yet: run `make bench`.\n"
    lines = [
        "Written by `make bench` from `bench/results/*.json`. Each benchmark alternates its arms "
        "round by round; every figure is given as min / median / max over the rounds. A "
        "**ratio** is one arm over another measured side by side in the same round, so the "
        "machine's speed and load largely cancel: ratios carry across machines. An "
        "**absolute** figure (ms, reviews/s, seconds) holds for this machine under this load "
        f"only.{(' ' + note) if note else ''}",
        "",
    ]
    ran = {r["benchmark"] for r in results}
    missing = [n for n in ORDER if n not in ran and (ROOT / "bench" / f"{n}.py").exists()]
    if missing:
        lines += [
            "No result in this run from: "
            + ", ".join(f"`bench/{n}.py`" for n in missing)
            + " (it writes none yet, or did not finish).",
            "",
        ]
    for result in results:
        lines += [
            f"### {result['benchmark']}: {result['title']}",
            "",
            f"`{result['command']}`: {result['rounds']} rounds in {result['seconds']:g} s, "
            f"started {started(result)} UTC. Machine: "
            f"{machine_line(result)}. Arms: {', '.join(result['arms'])}.",
            "",
        ]
        lines += [f"- {key}: {value}" for key, value in result["setup"].items()]
        lines += [
            "",
            "| figure | arm | min | median | max | unit | kind |",
            "|---|---|---|---|---|---|---|",
        ]
        for figure in result["figures"]:
            whole = integral(figure)
            low, mid, high = (number(figure[k], whole) for k in ("min", "median", "max"))
            lines.append(
                f"| {figure['name']} | {figure['arm'] or 'per round'} | {low} | {mid} | {high} | "
                f"{TIMES if figure['unit'] == 'x' else figure['unit']} | {figure['kind']} |"
            )
        if result["notes"]:
            lines.append("")
            lines += [f"- {n}" for n in result["notes"]]
        lines.append("")
    return "\n".join(lines)


def replace_between(text: str, marker: str, body: str) -> str:
    """`text` with what lies between `marker`'s BEGIN and END lines replaced by `body`."""
    pattern = re.compile(
        rf"(<!-- BEGIN GENERATED: {re.escape(marker)} \(make bench\) -->\n)"
        rf"(.*?)"
        rf"(<!-- END GENERATED: {re.escape(marker)} -->)",
        re.DOTALL,
    )
    if not pattern.search(text):
        raise SystemExit(f"no GENERATED: {marker} markers found")
    return pattern.sub(lambda m: m[1] + body + m[3], text, count=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the generated sections")
    parser.add_argument(
        "--note", default="", help="a sentence on the machine's state, e.g. who shared it"
    )
    args = parser.parse_args()
    results = load()
    summary = render_summary(results, args.note)
    page = render_page(results, args.note)
    if not args.write:
        sys.stdout.write(summary + "\n" + page)
        return
    README.write_text(replace_between(README.read_text(), "figures-summary", summary))
    PAGE.write_text(replace_between(PAGE.read_text(), "figures", page))
    print(f"wrote {README.relative_to(ROOT)} and {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
