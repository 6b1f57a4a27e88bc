"""Tier 2: concurrent large reviews stay under the chart's memory limit, with margin.

Eight concurrent 7.8 MiB reviews took the two workers to 440-540 MiB (the chart limits the
container to 320 Mi): every body was read and decoded at once. Now a worker holds at most
--body-bytes-in-flight of bodies (more wait, unread) and refuses, with 413 and before decoding,
a body that would take more than --decode-bytes-per-request once decoded.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest
import yaml
from warden_server import Server

from factories import review, secret

# Tens of seconds of 8 MiB bodies: make test runs it, make test-fast leaves it out.
pytestmark = pytest.mark.slow

CHART_VALUES = Path(__file__).resolve().parents[2] / "charts" / "kaptain-warden" / "values.yaml"
LIMIT = 8 * 1024 * 1024  # the default --max-body-bytes


def chart_memory_limit_mib() -> float:
    values = yaml.safe_load(CHART_VALUES.read_text())
    limit = values["webhook"]["resources"]["limits"]["memory"]
    assert limit.endswith("Mi")
    return float(limit.removesuffix("Mi"))


def pss_mib(pid: int) -> float:
    """Proportional set size of the arbiter and its workers (what a container is charged)."""
    pids = [
        pid,
        *map(
            int,
            subprocess.run(
                ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
            ).stdout.split(),
        ),
    ]
    total = 0
    for each in pids:
        try:
            for line in Path(f"/proc/{each}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def worst_cases() -> dict[str, tuple[bytes, int]]:
    """Bodies under the size limit that cost the most memory to decode, and their answer."""
    pairs = review(secret())
    pairs["request"]["object"]["data"] = {
        f"k{i:07d}": f"v{i:08d}" for i in range((LIMIT - 8192) // 24)
    }
    text = review(secret())
    text["request"]["object"]["data"] = {"x": "A" * (LIMIT - 4096)}
    lists = review(secret())
    lists["request"]["object"]["spec"] = [[] for _ in range((LIMIT - 4096) // 3)]
    return {
        "short pairs": (orjson.dumps(pairs), 200),  # decodes to ~4x its size: allowed
        "one long string": (orjson.dumps(text), 200),
        "empty lists": (orjson.dumps(lists), 413),  # would decode to ~20x its size
    }


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("shape", ["short pairs", "one long string", "empty lists"])
def test_eight_concurrent_worst_case_reviews_stay_under_the_charts_limit(make_server, shape):
    # The bodies queue for the body budget, four per worker; on a loaded machine the last may
    # wait longer than the default body deadline (the API server's timeout). This test is
    # about memory, so they may wait.
    server: Server = make_server("--workers", "2", "--threads", "4", "--body-timeout", "60")
    body, expected = worst_cases()[shape]
    assert len(body) <= LIMIT
    peak = [pss_mib(server.process.pid)]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], pss_mib(server.process.pid))
            time.sleep(0.005)

    answers: list[object] = []

    def send() -> None:
        with server.session() as session:
            try:
                answer = session.post(
                    server.url + "/validate",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=120,
                )
                answers.append(answer.status_code)
            except OSError as exc:
                answers.append(repr(exc))

    watcher = threading.Thread(target=watch)
    watcher.start()
    senders = [threading.Thread(target=send) for _ in range(8)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(180)
    stop.set()
    watcher.join()
    limit = chart_memory_limit_mib()
    print(
        f"\n{shape}: peak {peak[0]:.0f} MiB of the chart's {limit:.0f} Mi ({os.cpu_count()} CPUs)"
    )
    assert answers == [expected] * 8
    assert peak[0] < 0.9 * limit
    assert server.stop() == 0
