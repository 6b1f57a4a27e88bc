"""hack/sdk-envs: where each SDK environment lives, and what makes it a new one.

Run with `--check` on a copy of the script and its requirements, so nothing is downloaded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kaptain_warden.testing.notebook import SDK_ENVIRONMENTS

HACK = Path(__file__).resolve().parents[2] / "hack"


@pytest.fixture
def hack(tmp_path: Path) -> Path:
    copy = tmp_path / "hack"
    copy.mkdir()
    shutil.copy2(HACK / "sdk-envs", copy / "sdk-envs")
    shutil.copytree(HACK / "sdk-requirements", copy / "sdk-requirements")
    return copy


def check(hack: Path, cache: Path, *envs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(hack / "sdk-envs"), "--check", *envs],
        env={
            "PATH": "/usr/bin:/bin",
            "KAPTAIN_WARDEN_CACHE": str(cache),
            "KW_SDK_PYTHON": shutil.which("python3") or "python3",
        },
        capture_output=True,
        text=True,
        check=False,
    )


def missing_dir(result: subprocess.CompletedProcess[str]) -> Path:
    assert result.returncode == 1, result.stderr
    match = re.search(r"is not built \((.+)\)", result.stderr)
    assert match, result.stderr
    return Path(match.group(1))


def test_every_environment_has_its_pinned_requirements() -> None:
    for env in SDK_ENVIRONMENTS:
        pins = [
            line
            for line in (HACK / "sdk-requirements" / f"{env}.txt").read_text().splitlines()
            if line and not line.startswith("#")
        ]
        assert pins and all(re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+-]+", p) for p in pins)


def test_a_changed_pin_is_a_new_environment_a_comment_is_not(hack: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = missing_dir(check(hack, cache, "training"))
    assert first.parent == cache / "sdk-envs" and first.name.startswith("training-")

    requirements = hack / "sdk-requirements" / "training.txt"
    requirements.write_text("# a new comment\n" + requirements.read_text())
    assert missing_dir(check(hack, cache, "training")) == first

    text = requirements.read_text()
    requirements.write_text(re.sub(r"^six==.*$", "six==1.16.0", text, flags=re.MULTILINE))
    assert missing_dir(check(hack, cache, "training")) != first


def test_only_a_completed_build_counts(hack: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    directory = missing_dir(check(hack, cache, "katib"))
    directory.mkdir(parents=True)  # an interrupted build
    assert missing_dir(check(hack, cache, "katib")) == directory
    (directory / ".complete").touch()
    result = check(hack, cache, "katib")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(directory)]


def test_an_unknown_environment_is_refused(hack: Path, tmp_path: Path) -> None:
    result = check(hack, tmp_path, "tensorflow")
    assert result.returncode == 2
    # The script and the harness name the same environments.
    known = " ".join(SDK_ENVIRONMENTS)
    assert f"unknown environment 'tensorflow' (known: {known})" in result.stderr
