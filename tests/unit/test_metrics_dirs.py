"""Tier 1: a killed admission server's metrics directory is removed by the next server."""

from __future__ import annotations

import os
import subprocess
import sys

from kaptain_warden.webhook.metrics import (
    METRICS_DIR_PREFIX,
    new_metrics_dir,
    remove_stale_metrics_dirs,
)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_the_directories_of_dead_servers_are_removed(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / f"{METRICS_DIR_PREFIX}{dead_pid()}-abc"
        mine = tmp_path / f"{METRICS_DIR_PREFIX}{os.getpid()}-old"  # a restart as the same pid
        live = tmp_path / f"{METRICS_DIR_PREFIX}{sleeper.pid}-xyz"  # another server, running
        unrelated = tmp_path / f"{METRICS_DIR_PREFIX}notapid"
        other = tmp_path / "something-else-1"
        for path in (dead, mine, live, unrelated, other):
            path.mkdir()
            (path / "counter_1.db").write_bytes(b"\0" * 16)
        linked = tmp_path / f"{METRICS_DIR_PREFIX}1-link"
        linked.symlink_to(other)

        removed = remove_stale_metrics_dirs(str(tmp_path))

        assert sorted(removed) == sorted([str(dead), str(mine)])
        assert not dead.exists() and not mine.exists()
        for path in (live, unrelated, other, linked):
            assert path.exists(), path
        assert (other / "counter_1.db").exists()  # a symlink is never followed
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_new_directory_names_its_process_and_replaces_a_stale_one(tmp_path):
    stale = tmp_path / f"{METRICS_DIR_PREFIX}{dead_pid()}-abc"
    stale.mkdir()
    fresh = new_metrics_dir(str(tmp_path))
    assert os.path.basename(fresh).startswith(f"{METRICS_DIR_PREFIX}{os.getpid()}-")
    assert os.path.isdir(fresh)
    assert not stale.exists()
    assert [p.name for p in tmp_path.iterdir()] == [os.path.basename(fresh)]
