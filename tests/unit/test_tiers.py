"""How the suite is cut (tests/conftest.py): tiers marked by directory, so `-m "not e2e"`
selects nothing of tier 3; the Hypothesis profile chosen by CI=true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from hypothesis import settings

TESTS = Path(__file__).resolve().parents[1]


def test_tier_3_is_marked_by_its_directory_and_not_e2e_selects_none_of_it() -> None:
    # a tier-3 module that carries no marker of its own, and one of tier 1 next to it
    e2e, unit = "tests/e2e/test_up.py", "tests/unit/test_durations.py"
    assert "pytestmark" not in (TESTS.parent / e2e).read_text()
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, "-m", "not e2e", e2e, unit],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    selected = [line for line in result.stdout.splitlines() if "::" in line]
    assert selected and all(item.startswith(unit + "::") for item in selected)
    deselected = re.search(r"\((\d+) deselected\)", result.stdout)
    assert deselected is not None and int(deselected[1]) > 0, result.stdout


def test_the_hypothesis_profile_follows_ci() -> None:
    chosen = os.environ.get("HYPOTHESIS_PROFILE") or (
        "ci" if os.environ.get("CI", "").lower() == "true" else "local"
    )
    loaded = settings.default
    assert loaded is not None
    assert loaded.max_examples == settings.get_profile(chosen).max_examples
    assert loaded.derandomize == settings.get_profile(chosen).derandomize
    ci, local = settings.get_profile("ci"), settings.get_profile("local")
    assert ci.max_examples > local.max_examples
    assert ci.derandomize and not local.derandomize
    assert ci.deadline is None and local.deadline is None
