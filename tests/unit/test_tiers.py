"""How the suite is cut (tests/conftest.py): tiers marked by directory, so `-m "not e2e"`
selects nothing of tier 3 (`make test-fast`); the Hypothesis profile chosen by CI=true."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

TESTS = Path(__file__).resolve().parents[1]


class _Item:
    """What the hook reads and writes of a collected test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.markers: list[str] = []

    def add_marker(self, marker: str) -> None:
        self.markers.append(marker)


def top_conftest(config: pytest.Config) -> Any:
    """tests/conftest.py as pytest loaded it (every conftest.py is a module named `conftest`)."""
    path = TESTS / "conftest.py"
    for plugin in config.pluginmanager.get_plugins():
        if Path(getattr(plugin, "__file__", "") or "").resolve() == path:
            return plugin
    raise AssertionError(f"pytest did not load {path}")


def test_each_test_is_marked_with_the_tier_of_its_directory(pytestconfig: pytest.Config) -> None:
    items = {
        name: _Item(TESTS / name)
        for name in (
            "e2e/test_up.py",  # carries no marker of its own: the directory marks it
            "unit/test_durations.py",
            "server/test_server_http.py",
            "chart/test_chart_render.py",
            "factories.py",  # a helper at the top: no tier
        )
    }
    top_conftest(pytestconfig).pytest_collection_modifyitems(list(items.values()))
    assert {name: item.markers for name, item in items.items()} == {
        "e2e/test_up.py": ["e2e"],
        "unit/test_durations.py": ["unit"],
        "server/test_server_http.py": ["server"],
        "chart/test_chart_render.py": ["chart"],
        "factories.py": [],
    }
    assert "pytestmark" not in (TESTS / "e2e" / "test_up.py").read_text()


def test_this_session_marked_this_test(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("e2e") is None


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
