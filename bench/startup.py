"""Benchmark: where the start-up of a one-shot `kaptain-warden sweep` goes, step by step.

    .venv/bin/python bench/startup.py

Each arm is a fresh interpreter that does one more step of what `kaptain-warden sweep
--dry-run` does before its first request, and exits: the interpreter alone, the HTTP, YAML
and JSON libraries any client needs, the Kubernetes client (our `kube/` door), the built-in
policy, the sweep's own modules, and the command line itself (`sweep --help`). The difference
between two neighbouring arms is what that step costs. Two libraries the sweep no longer
imports (the policy schema checker, the metrics client) are measured alone for reference.
Arms alternate in rounds; CPU is the child's user + system time (wait4), wall its lifetime.

No API server is needed: what follows the first request (listing, deciding, the report) is
`bench/sweep.py`'s `pass` figure. A script, not a test: it prints figures and writes
bench/results/startup.json (with --rounds 5 or more).

Bytecode: the measured interpreters read our package's compiled bytecode as an installed
package (the image runs `compileall`) does; the script compiles it first, so that a checkout
run with PYTHONDONTWRITEBYTECODE set does not count compiling the package as start-up.
"""

from __future__ import annotations

import argparse
import compileall
import os
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import kaptain_warden
from _rounds import Rounds, add_arguments

WARDEN = Path(sys.executable).with_name("kaptain-warden")
LIBRARIES = "import urllib3, yaml, orjson"
KUBE = LIBRARIES + "; import kaptain_warden.kube.api"
POLICY = KUBE + "; from kaptain_warden.policies.loader import load_policy; load_policy()"
SWEEP = POLICY + "; import kaptain_warden.sweeper.loop, kaptain_warden.sweeper.report"
# (arm, argv after the interpreter): each main arm one step more than the one before it.
STEPS = (
    ("interpreter", ["-c", "pass"]),
    ("+ libraries", ["-c", LIBRARIES]),
    ("+ kube client", ["-c", KUBE]),
    ("+ policy", ["-c", POLICY]),
    ("+ sweep modules", ["-c", SWEEP]),
    ("sweep --help", [str(WARDEN), "sweep", "--help"]),
    ("jsonschema alone", ["-c", "import jsonschema"]),
    ("prometheus_client alone", ["-c", "import prometheus_client"]),
)


def run(argv: list[str]) -> dict[str, float]:
    """One fresh process: its CPU (user + system) and wall time."""
    command = argv if argv[0] == str(WARDEN) else [sys.executable, *argv]
    began = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return {"cpu": usage.ru_utime + usage.ru_stime, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, rounds=10)
    args = parser.parse_args()
    compileall.compile_dir(Path(kaptain_warden.__file__).parent, quiet=1)
    steps = dict(STEPS)
    bench = Rounds.from_args(
        "startup",
        args,
        title="start-up of a one-shot sweep, step by step, each arm a fresh interpreter",
        arms=tuple(steps),
    )
    bench.declare("cpu", "s")
    bench.declare("wall", "s")
    main_arms = [arm for arm, _ in STEPS[:5]]
    for arm in main_arms[1:]:
        bench.declare(f"CPU of {arm[2:]}", "s")
    for n in bench.rounds():
        cpu = {}
        for arm in bench.order(n):
            figures = run(steps[arm])
            cpu[arm] = figures["cpu"]
            bench.record(n, arm, figures)
        # Each step's cost within the round: its arm less the arm before it.
        bench.record_round(
            n,
            {
                f"CPU of {after[2:]}": cpu[after] - cpu[before]
                for before, after in pairwise(main_arms)
            },
            kind="absolute",
        )
    bench.headline("cpu", "+ sweep modules")
    bench.headline("CPU of kube client")
    bench.note("CPU of a step: its arm's CPU less the arm's before it, in the same round")
    bench.note("absolute figures: this machine under its load at the time, not a property")
    bench.finish()


if __name__ == "__main__":
    main()
