"""Benchmark: good reviews while hostile clients hold connections and body budget, next to the
same client on a quiet server, alternating in rounds.

    .venv/bin/python bench/slow_clients.py            # starts its own server (2 x 4), stops it
    .venv/bin/python bench/slow_clients.py --rounds 5 --seconds 8

The attacker (its own process, asyncio) keeps 500 TCP connections from 127.0.0.2 that send
nothing, 500 TLS connections from 127.0.0.3 that send a request head one byte per second, and
16 TLS connections from 127.0.0.4 that announce a body of nearly 8 MiB (the size limit), send
half of it and stall; each one the server closes (deadline, revoked body budget, the
per-client bound) is reopened a second later. The good client (127.0.0.1) sends ~5 KB Secret
reviews to /mutate one after another on one kept-alive connection, and a fresh connection
every 50 reviews (a new handshake, as the API server makes when it scales). The two arms,
quiet and attacked, alternate (bench/_rounds.py); reported per arm: p50/p99 of the good
reviews, failures, how many attack connections were open; per round, attacked p99 / quiet p99.

A script, not a test: loopback only, bounded in time, it stops by itself and removes what it
wrote but its result (bench/results/slow_clients.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import signal
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _rounds import Rounds, add_arguments, percentile
from admission import Target, call, connect, start_server, stop_server
from factories import review, secret

HEAD = b"POST /mutate HTTP/1.1\r\nHost: warden\r\nContent-Type: application/json\r\n"
BIG_BODY = 8 * 1024 * 1024 - 100  # just under the default --max-body-bytes
KINDS = ("idle", "slow", "staller")


async def _idle(target: Target, opened: list[int]) -> None:
    while True:
        try:
            reader, writer = await asyncio.open_connection(
                target.host, target.port, local_addr=("127.0.0.2", 0)
            )
        except OSError:
            await asyncio.sleep(1)
            continue
        opened[0] += 1
        try:
            await reader.read()  # until the server closes it
        except OSError:
            pass
        finally:
            opened[0] -= 1
            writer.close()
        await asyncio.sleep(1)


async def _slow(target: Target, context: ssl.SSLContext, opened: list[int]) -> None:
    while True:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    target.host,
                    target.port,
                    ssl=context,
                    server_hostname="localhost",
                    local_addr=("127.0.0.3", 0),
                ),
                timeout=30,
            )
        except (OSError, TimeoutError, ssl.SSLError):
            await asyncio.sleep(1)
            continue
        opened[1] += 1
        try:
            for byte in HEAD * 100:
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1), timeout=1.0) == b"":
                        break  # closed by the server
                except TimeoutError:
                    continue
                break
        except (OSError, ssl.SSLError):
            pass
        finally:
            opened[1] -= 1
            writer.close()
        await asyncio.sleep(1)


async def _staller(
    target: Target, context: ssl.SSLContext, opened: list[int], stats: list[int]
) -> None:
    """Announce a body of nearly 8 MiB, send half of it, then nothing; `stats[0]` counts the
    connections the server closed."""
    length = BIG_BODY
    while True:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    target.host,
                    target.port,
                    ssl=context,
                    server_hostname="localhost",
                    local_addr=("127.0.0.4", 0),
                ),
                timeout=30,
            )
        except (OSError, TimeoutError, ssl.SSLError):
            await asyncio.sleep(1)
            continue
        opened[2] += 1
        try:
            try:
                writer.write(HEAD + b"Content-Length: %d\r\n\r\n" % length)
                writer.write(b"[" + b" " * (length // 2))
                await reader.read()  # until the server closes it (the kernel takes what it can)
            except (OSError, ssl.SSLError):
                pass  # closed with our bytes unread: a reset
            stats[0] += 1
        finally:
            opened[2] -= 1
            writer.close()
        await asyncio.sleep(1)


def _attacker(
    target: Target,
    counts: tuple[int, int, int],
    warmup: float,
    seconds: float,
    out: object,
) -> None:
    """Hold the connections; after `warmup`, sample how many are open every 0.25 s for
    `seconds`; put the mean and maximum of each kind, and the stallers cut, on `out`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    context = ssl.create_default_context(cafile=target.ca_file)
    idle, slow, stallers = counts

    async def main() -> None:
        opened = [0, 0, 0]
        stats = [0]
        tasks = [asyncio.create_task(_idle(target, opened)) for _ in range(idle)]
        tasks += [asyncio.create_task(_slow(target, context, opened)) for _ in range(slow)]
        tasks += [
            asyncio.create_task(_staller(target, context, opened, stats)) for _ in range(stallers)
        ]
        await asyncio.sleep(warmup)
        samples = []
        cut_before = stats[0]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            samples.append(tuple(opened))
            await asyncio.sleep(0.25)
        kinds = list(zip(*samples, strict=True)) if samples else [(0,), (0,), (0,)]
        out.put(  # type: ignore[attr-defined]
            {
                **{f"{n} open": statistics.mean(k) for n, k in zip(KINDS, kinds, strict=True)},
                "stallers cut": stats[0] - cut_before,
            }
        )
        # Cancelled connections with bytes still queued close untidily: nothing to report.
        asyncio.get_running_loop().set_exception_handler(lambda _loop, _context: None)
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=10)

    asyncio.run(main())


def good_reviews(target: Target, seconds: float) -> tuple[list[float], int]:
    """Latencies (ms) of serial /mutate reviews for `seconds`, and the failures."""
    body = orjson.dumps(review(secret(payload_bytes=2400)))
    samples: list[float] = []
    failures = 0
    connection = connect(target)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if len(samples) % 50 == 0:
            connection.close()
            connection = connect(target)
        started = time.perf_counter()
        try:
            call(connection, "/mutate", body)
        except (OSError, RuntimeError, ValueError):
            failures += 1
            connection.close()
            connection = connect(target)
            continue
        samples.append((time.perf_counter() - started) * 1000)
    connection.close()
    return samples, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per arm")
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--stallers", type=int, default=16)
    add_arguments(parser)
    args = parser.parse_args()
    counts = (args.idle, args.slow, args.stallers)
    warmup = 5.0  # the attacker opens its connections before the good client measures
    attack = f"{args.idle} idle + {args.slow} slow + {args.stallers} stallers"

    with tempfile.TemporaryDirectory(prefix="kaptain-warden-bench-") as work:
        process, target = start_server(2, 4, Path(work) / "serve.log", [])
        try:
            bench = Rounds.from_args(
                "slow_clients",
                args,
                title="good reviews on a quiet server and while hostile clients hold "
                "connections and body budget",
                arms=("quiet", "attacked"),
                setup={
                    "server": "kaptain-warden serve, 2 workers x 4 threads, default deadlines "
                    "(5/5/10 s), 128 connections per client address and worker, 8 MiB body "
                    "budget",
                    "good client": "one keep-alive client, ~5 KB Secret reviews to /mutate "
                    f"one after another for {args.seconds:g} s, a new connection every 50",
                    "attack": f"{attack}: idle TCP from 127.0.0.2, request heads one byte a "
                    "second from 127.0.0.3, bodies of nearly 8 MiB announced, half sent, then "
                    "silence from 127.0.0.4; every closed one reopened a second later; its "
                    "own process on the same cores",
                },
            )
            for figure, unit in (
                ("p50", "ms"),
                ("p99", "ms"),
                ("failed", "reviews"),
                ("reviews", "reviews"),
                *((f"{kind} open", "connections") for kind in KINDS),
                ("stallers cut", "connections"),
            ):
                bench.declare(figure, unit)
            good_reviews(target, 1.0)  # warm up
            for n in bench.rounds():
                for arm in bench.order(n):
                    attacker = None
                    queue: multiprocessing.Queue[dict[str, float]] = multiprocessing.Queue()
                    if arm == "attacked":
                        attacker = multiprocessing.Process(
                            target=_attacker,
                            args=(target, counts, warmup, args.seconds, queue),
                            daemon=True,
                        )
                        attacker.start()
                        time.sleep(warmup)
                    try:
                        samples, failed = good_reviews(target, args.seconds)
                        figures = {
                            "p50": percentile(samples, 0.5),
                            "p99": percentile(samples, 0.99),
                            "failed": failed,
                            "reviews": len(samples),
                        }
                        if attacker is not None:
                            held = queue.get(timeout=120)
                            figures.update(held)
                    finally:
                        if attacker is not None:
                            attacker.join(20)
                            if attacker.is_alive():
                                attacker.kill()
                                attacker.join()
                        queue.close()
                    bench.record(n, arm, figures)
                    if arm == "attacked":
                        time.sleep(2)  # the server sees the attacker's connections close
        finally:
            stop_server(process)
    bench.ratio("p99", "attacked", "quiet")
    bench.ratio("p50", "attacked", "quiet")
    bench.note(
        "stallers cut: big-body connections the server closed during the measured time "
        "(revoked when another client's body waited, or at their body deadline)"
    )
    bench.note(
        "the attacker's own TLS handshakes and reconnections run on the same cores as the "
        "server, so part of the p99 ratio is the attacker's CPU"
    )
    bench.headline("p99: attacked / quiet")
    bench.headline("failed", "attacked")
    bench.finish()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
