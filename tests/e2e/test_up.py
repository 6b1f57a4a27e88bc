"""Tier 3: `kaptain-warden up`, the README's first command, used the way a newcomer would."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from kaptain_warden.policies.timestamps import parse_time


def read_until(process: subprocess.Popen[str], marker: str, timeout: float = 120.0) -> str:
    """The output of `process` up to (and including) the line holding `marker`."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return "".join(lines)
    pytest.fail(f"`kaptain-warden up` did not print {marker!r}; it printed:\n{''.join(lines)}")


def run_printed(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one of the printed shell lines exactly as a user pasting it would."""
    return subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def descendants(root: int) -> set[int]:
    """Every process below `root` (its children run in sessions of their own, so no pgrep -s)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split(") ")[-1][:1] != "Z"


def test_up_prints_lines_that_show_a_stamp_an_extension_and_a_refusal_and_ctrl_c_stops_all():
    process = subprocess.Popen(
        [sys.executable, "-m", "kaptain_warden.cli", "up", "--no-controller-manager"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = read_until(process, "Ctrl-C stops everything")
        kubeconfig = re.search(r"export KUBECONFIG=(\S+)", output).group(1)
        commands = [line.strip() for line in output.splitlines() if "kubectl -n team-a" in line]
        assert len(commands) == 4, output
        env = dict(os.environ, KUBECONFIG=kubeconfig)
        env.pop("KUBERNETES_SERVICE_HOST", None)

        created = run_printed(commands[0], env)
        assert created.returncode == 0, created.stderr
        stamp = run_printed(commands[1], env)
        assert "warden.kaptain.io/managed" in stamp.stdout
        assert "warden.kaptain.io/expires-at" in stamp.stdout
        assert "system:serviceaccount:team-a:default-editor" in stamp.stdout
        created_at = re.search(r"warden.kaptain.io/created-at: \"?([0-9TZ:-]+)", stamp.stdout)
        extended = run_printed(commands[2], env)
        assert extended.returncode == 0, extended.stderr
        expires_at = re.search(r"warden.kaptain.io/expires-at: \"?([0-9TZ:-]+)", extended.stdout)
        assert parse_time(expires_at.group(1)) == parse_time(created_at.group(1)) + timedelta(
            days=7
        )
        refused = run_printed(commands[3], env)
        assert refused.returncode != 0
        assert (
            'denied the request: annotation warden.kaptain.io/ttl: "90d" is above the maximum '
            'of 30d that rule "credentials-secrets" allows'
        ) in refused.stderr

        sweep_line = next(line.strip() for line in output.splitlines() if "sweep --dry-run" in line)
        argv = shlex.split(sweep_line)
        report = subprocess.run(
            [sys.executable, "-m", "kaptain_warden.cli", *argv[1:]],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert report.returncode == 0, report.stderr
        assert re.search(r"team-a\s+Secret\s+s3-creds\s+credentials-secrets", report.stdout)

        children = descendants(process.pid)
        names = {
            Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].rsplit(b"/", 1)[-1]
            for pid in children
        }
        assert {b"etcd", b"kube-apiserver"} <= names, names
        work_dirs = [Path(kubeconfig).parent]
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "stopped" in rest
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if alive(pid)]
    assert not any(path.exists() for path in work_dirs)
