"""Tier 2: concurrent large reviews stay under the README's formula and the chart's limit.

Eight concurrent 7.8 MiB reviews took the two workers to 440-540 MiB (the chart limits the
container to 320 Mi): every body was read and decoded at once. Now a worker holds at most
--body-bytes-in-flight of bodies (more wait, unread) and refuses, with 413 and before decoding,
a body that would take more than --decode-bytes-per-request once decoded. Sixteen concurrent
1.45 MiB reviews, each under that bound, from four addresses then still took 332 MiB: their
threads decoded several at once. Now the costly requests a worker decides at once add up to at
most --decode-bytes-per-request (the others wait, read).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest
import requests
import yaml
from requests.adapters import HTTPAdapter
from warden_server import Server

from factories import review, secret

# Tens of seconds of 8 MiB bodies: make test runs it, make test-fast leaves it out.
pytestmark = pytest.mark.slow

CHART_VALUES = Path(__file__).resolve().parents[2] / "charts" / "kaptain-warden" / "values.yaml"
LIMIT = 8 * 1024 * 1024  # the default --max-body-bytes
MIB = 1024 * 1024


DECODE = 40 * MIB  # the default --decode-bytes-per-request
RAISED = 64 * MIB


def formula_mib(workers: int = 2) -> float:
    """The README's peak: idle + workers x (body-bytes-in-flight + the 2 MiB small-body
    allowance + 2.2 x decode-bytes-per-request), with the defaults."""
    return 60 + workers * (8 + 2 + 2.2 * DECODE / MIB)


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


def worst_cases() -> dict[str, tuple[bytes, int, int]]:
    """Bodies under the size limit that cost the most memory to decode, their answer, and how
    many are sent at once. The worker estimates a body's decode cost as its bytes + 64 per
    `,` `:` `[` `{`."""
    pairs = review(secret())  # 24 bytes and 2 values a pair: the costliest to decide
    pairs["request"]["object"]["data"] = {
        f"k{i:07d}": f"v{i:08d}" for i in range((DECODE - 64 * 1024) // (24 + 2 * 64))
    }
    text = review(secret())
    text["request"]["object"]["data"] = {"x": "A" * (LIMIT - 4096)}
    lists = review(secret())
    lists["request"]["object"]["spec"] = [[] for _ in range((LIMIT - 4096) // 3)]
    # Just under a decode bound raised to 64 MiB (see the test), each 1.45 MiB: 5 fit the body
    # budget, and 4 threads decide at once.
    costly = review(secret())
    costly["request"]["object"]["spec"] = [[] for _ in range((RAISED - 64 * 1024) // (3 + 128))]
    return {
        "short pairs": (orjson.dumps(pairs), 200, 8),
        "one long string": (orjson.dumps(text), 200, 8),
        "empty lists": (orjson.dumps(lists), 413, 8),  # would decode to ~20x its size
        "many costly at once": (orjson.dumps(costly), 200, 16),
    }


class _From(HTTPAdapter):
    """Connections from a given loopback address (one client address holds at most half of
    the body budget)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def test_the_formula_leaves_a_margin_under_the_charts_limit():
    assert formula_mib() < 0.95 * chart_memory_limit_mib()


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    "shape", ["short pairs", "one long string", "empty lists", "many costly at once"]
)
def test_concurrent_worst_case_reviews_stay_under_the_formula_and_the_charts_limit(
    make_server, shape
):
    # The requests queue for the body and decode budgets and for the CPU; on a loaded machine
    # the last may wait longer than the default deadlines (the API server's timeout). This
    # test is about memory, so they may wait.
    raised = ["--decode-bytes-per-request", str(RAISED)] if shape == "many costly at once" else []
    server: Server = make_server(
        "--workers",
        "2",
        "--threads",
        "4",
        *("--handshake-timeout", "60", "--header-timeout", "60", "--body-timeout", "60"),
        *raised,
    )
    body, expected, count = worst_cases()[shape]
    assert len(body) <= LIMIT
    peak = [pss_mib(server.process.pid)]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], pss_mib(server.process.pid))
            time.sleep(0.005)

    answers: list[object] = []

    def send(number: int) -> None:
        with server.session() as session:
            session.mount("https://", _From(f"127.0.0.{1 + number % 4}"))
            try:
                answer = session.post(
                    server.url + "/validate",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=120,
                )
                answers.append(answer.status_code)
            except (OSError, requests.RequestException) as exc:
                answers.append(repr(exc))

    watcher = threading.Thread(target=watch)
    watcher.start()
    senders = [threading.Thread(target=send, args=(number,)) for number in range(count)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(180)
    stop.set()
    watcher.join()
    limit = chart_memory_limit_mib()
    print(
        f"\n{shape}: peak {peak[0]:.0f} MiB, formula {formula_mib():.0f} MiB, "
        f"the chart's limit {limit:.0f} Mi ({os.cpu_count()} CPUs)"
    )
    assert answers == [expected] * count
    # With the bound raised, these bodies decode to half their estimate each: one at a time
    # per worker they stay within the defaults' formula; stacked up four at a time (before
    # the decode budget) they reached 271-332 MiB.
    assert peak[0] < formula_mib() < limit
    assert server.stop() == 0
