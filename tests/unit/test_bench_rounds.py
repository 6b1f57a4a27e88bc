"""Tier 1: bench/_rounds.py, the helper every benchmark reports through (no timing here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import _rounds
import figures
from _rounds import Rounds, percentile


def test_arms_alternate_their_order_every_round() -> None:
    bench = Rounds("t", title="t", arms=("a", "b"), rounds=4, json_path=None)
    assert [bench.order(n) for n in range(4)] == [("a", "b"), ("b", "a")] * 2
    three = Rounds("t", title="t", arms=("a", "b", "c"), rounds=3)
    assert [three.order(n)[0] for n in range(3)] == ["a", "b", "c"]


def test_ratios_are_taken_within_a_round_and_ranges_over_rounds(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    bench = Rounds("t", title="t", arms=("base", "warden"), rounds=3, json_path=out)
    bench.declare("median", "ms")
    # Round 1 is slow for both arms (drift): its ratio stays 2.
    for n, (base, warden) in enumerate([(1.0, 2.0), (10.0, 20.0), (2.0, 3.0)]):
        for arm in bench.order(n):
            bench.record(n, arm, {"median": base if arm == "base" else warden})
    bench.record_round(0, {"added": 1.0}, kind="absolute")
    bench.ratio("median", "warden", "base")
    result = bench.finish()
    assert json.loads(out.read_text()) == result
    figures = {(f["arm"], f["name"]): f for f in result["figures"]}
    ratio = figures[(None, "median: warden / base")]
    assert ratio["kind"] == "ratio"
    assert ratio["values"] == [2.0, 2.0, 1.5]
    assert (ratio["min"], ratio["median"], ratio["max"]) == (1.5, 2.0, 2.0)
    base = figures[("base", "median")]
    assert (base["min"], base["median"], base["max"], base["unit"]) == (1.0, 2.0, 10.0, "ms")
    assert base["kind"] == "absolute"
    assert result["machine"]["cpus"] >= 1 and result["machine"]["memory_gib"] > 0
    assert len(result["load"]["before"]) == 3 and len(result["load"]["after"]) == 3


def test_a_trial_run_writes_no_result_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_rounds, "RESULTS", tmp_path)
    bench = Rounds("trial", title="t", arms=("a",), rounds=2)
    bench.record(0, "a", {"x": 1.0})
    bench.finish()
    assert not (tmp_path / "trial.json").exists()
    full = Rounds("full", title="t", arms=("a",), rounds=5)
    full.record(0, "a", {"x": 1.0})
    full.finish()
    assert (tmp_path / "full.json").exists()


def test_unknown_arm_is_refused() -> None:
    bench = Rounds("t", title="t", arms=("a", "b"), rounds=1)
    with pytest.raises(ValueError):
        bench.record(0, "c", {"x": 1.0})


def test_percentile_is_nearest_rank() -> None:
    samples = [float(x) for x in range(1, 101)]
    assert percentile(samples, 0.99) == 99.0
    assert percentile(samples, 0.5) == 50.0
    assert percentile([5.0], 0.99) == 5.0


def test_figures_state_the_machine_ranges_and_kinds(tmp_path: Path) -> None:
    bench = Rounds("e2e_admission", title="t", arms=("a", "b"), rounds=2, json_path=None)
    bench.declare("median", "ms")
    for n, (a, b) in enumerate([(1.0, 3.0), (2.0, 5.0)]):
        bench.record(n, "a", {"median": a})
        bench.record(n, "b", {"median": b})
    bench.ratio("median", "b", "a")
    bench.headline("median", "b")
    (tmp_path / "e2e_admission.json").write_text(json.dumps(bench.result()))
    results = figures.load(tmp_path)
    summary = figures.render_summary(results, "Shared with other work.")
    assert "2 CPUs" in summary or f"{results[0]['machine']['cpus']} CPUs" in summary
    assert "load average" in summary and "Shared with other work." in summary
    assert "| b: median | 3\u20135 ms, median 4 | absolute |" in summary
    page = figures.render_page(results, "")
    assert "| median: b / a | per round | 2.50 | 2.75 | 3.00 | \u00d7 | ratio |" in page
    assert "A **ratio** is one arm over another" in page
    text = (
        "x\n<!-- BEGIN GENERATED: figures (make bench) -->\nold\n<!-- END GENERATED: figures -->\n"
    )
    assert figures.replace_between(text, "figures", "new\n").count("new\n") == 1
    assert "old" not in figures.replace_between(text, "figures", "new\n")


def test_a_result_run_by_hand_keeps_its_own_date_and_not_the_headers(tmp_path: Path) -> None:
    """The 100,000-object sweep is run by hand, before `make bench`: its result stays in the
    Figures, labelled with its own date and load, and the header names the `make bench` run."""
    for name, started, setup in (
        ("sweep-100000", "2026-01-01T10:00:00+00:00", {"run": "by hand, not by make bench"}),
        ("sweep", "2026-01-02T12:00:00+00:00", {}),
    ):
        bench = Rounds(name, title="t", arms=("a",), rounds=1, setup=setup)
        bench.declare("wall", "s")
        bench.record(0, "a", {"wall": 1.0})
        result = bench.result() | {"started": started}
        (tmp_path / f"{name}.json").write_text(json.dumps(result))
    summary = figures.render_summary(figures.load(tmp_path), "")
    assert summary.startswith("From `make bench` (its benchmarks started 2026-01-02 12:00 UTC) on ")
    assert "| `sweep-100000` (by hand, 2026-01-01 10:00 UTC, load average " in summary


def test_the_header_spans_every_benchmarks_start_and_load(tmp_path: Path) -> None:
    """A benchmark run again on its own, later or earlier than the others: the header says
    when the first and the last started, and the load over all of them, not the first's."""
    for name, started, load in (
        ("sweep", "2026-01-02T12:40:00+00:00", 2.5),
        ("outage", "2026-01-02T12:05:00+00:00", 0.25),
        ("startup", "2026-01-02T12:30:00+00:00", 1.0),
    ):
        bench = Rounds(name, title="t", arms=("a",), rounds=1)
        bench.declare("wall", "s")
        bench.record(0, "a", {"wall": 1.0})
        stamp = {"before": [load, 0, 0], "during_max": [load], "after": [load, 0, 0]}
        result = bench.result() | {"started": started, "load": stamp}
        (tmp_path / f"{name}.json").write_text(json.dumps(result))
    summary = figures.render_summary(figures.load(tmp_path), "")
    assert summary.startswith(
        "From `make bench` (its benchmarks started 2026-01-02 12:05\u201312:40 UTC) on "
    )
    assert "load average (1 min) 0.25\u20132.5 while they ran" in summary


def test_the_targets_table_says_from_the_rounds_whether_each_target_was_met(
    tmp_path: Path,
) -> None:
    bench = Rounds("sweep", title="t", arms=("dry-run", "delete"), rounds=2)
    bench.declare("wall", "s")
    for n, (dry, delete) in enumerate([(0.9, 7.0), (1.2, 9.0)]):
        bench.record(n, "dry-run", {"wall": dry})
        bench.record(n, "delete", {"wall": delete})
    (tmp_path / "sweep.json").write_text(json.dumps(bench.result()))
    lines = figures.render_targets(figures.load(tmp_path))
    dry = next(line for line in lines if "`sweep --dry-run`" in line)
    delete = next(line for line in lines if "deleting 1,000" in line)
    assert dry.endswith("| 1.00 s | 0.900\u20131.20 s, median 1.05 | in some rounds only |")
    assert delete.endswith("| 8.00 s | 7\u20139 s, median 8 | in some rounds only |")
    bench = Rounds("sweep", title="t", arms=("dry-run", "delete"), rounds=1)
    bench.declare("wall", "s")
    bench.record(0, "dry-run", {"wall": 0.5})
    bench.record(0, "delete", {"wall": 9.5})
    (tmp_path / "sweep.json").write_text(json.dumps(bench.result()))
    lines = figures.render_targets(figures.load(tmp_path))
    assert any(line.endswith("| 0.500 s | yes, every round |") for line in lines)
    assert any(line.endswith("| 9.50 s | **no** |") for line in lines)
    # Targets whose benchmark has no result are left out; none at all: no table.
    assert len(lines) == 4
    (tmp_path / "sweep.json").unlink()
    assert figures.render_targets(figures.load(tmp_path)) == []
