"""Benchmark: good reviews while 500 idle and 500 slow connections are held open, next to the
same client on a quiet server, alternating in rounds.

    .venv/bin/python bench/slow_clients.py            # starts its own server (2 x 4), stops it
    .venv/bin/python bench/slow_clients.py --rounds 3 --seconds 8

The attacker (its own process, asyncio) keeps 500 TCP connections from 127.0.0.2 that send
nothing, and 500 TLS connections from 127.0.0.3 that send a request head one byte per second;
each one the server closes (deadline, or the per-client bound) is reopened a second later. The
good client (127.0.0.1) sends ~5 KB Secret reviews to /mutate one after another on one kept-alive
connection, and a fresh connection every 50 reviews (a new handshake, as the API server makes
when it scales). Printed per round: p50/p99 of the good reviews, failures, and how many attack
connections were open (mean and maximum over the round).

A script, not a test: loopback only, bounded in time, it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
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
from admission import Target, call, connect, start_server
from factories import review, secret

HEAD = b"POST /mutate HTTP/1.1\r\nHost: warden\r\nContent-Type: application/json\r\n"


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


def _attacker(
    target: Target, idle: int, slow: int, warmup: float, seconds: float, out: object
) -> None:
    """Hold the connections; after `warmup`, sample how many are open every 0.25 s for
    `seconds`; put (mean idle, mean slow, max idle, max slow) on `out`, then stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    context = ssl.create_default_context(cafile=target.ca_file)

    async def main() -> None:
        opened = [0, 0]
        tasks = [asyncio.create_task(_idle(target, opened)) for _ in range(idle)]
        tasks += [asyncio.create_task(_slow(target, context, opened)) for _ in range(slow)]
        await asyncio.sleep(warmup)
        samples = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            samples.append((opened[0], opened[1]))
            await asyncio.sleep(0.25)
        idle_open = [a for a, _ in samples] or [0]
        slow_open = [b for _, b in samples] or [0]
        out.put(  # type: ignore[attr-defined]
            (
                statistics.mean(idle_open),
                statistics.mean(slow_open),
                max(idle_open),
                max(slow_open),
            )
        )
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


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per round")
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--slow", type=int, default=500)
    args = parser.parse_args()

    log = Path(tempfile.mkdtemp(prefix="kaptain-warden-bench-")) / "serve.log"
    process, target = start_server(2, 4, log, [])
    warmup = 5.0  # the attacker opens its connections before the good client measures
    rows = []
    try:
        good_reviews(target, 1.0)
        for number in range(1, args.rounds + 1):
            quiet, quiet_failed = good_reviews(target, args.seconds)
            rows.append(("quiet", number, *percentiles(quiet), len(quiet), quiet_failed, "-"))
            queue: multiprocessing.Queue[tuple[float, float, int, int]] = multiprocessing.Queue()
            attacker = multiprocessing.Process(
                target=_attacker,
                args=(target, args.idle, args.slow, warmup, args.seconds, queue),
                daemon=True,
            )
            attacker.start()
            time.sleep(warmup)
            loud, loud_failed = good_reviews(target, args.seconds)
            held = queue.get(timeout=120)
            attacker.join(20)
            if attacker.is_alive():
                attacker.kill()
            rows.append(
                (
                    "500 idle + 500 slow",
                    number,
                    *percentiles(loud),
                    len(loud),
                    loud_failed,
                    f"open on average {held[0]:.0f} idle, {held[1]:.0f} slow "
                    f"(at most {held[2]}, {held[3]})",
                )
            )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except Exception:
            process.kill()
    print(f"kaptain-warden serve, 2 workers x 4 threads, {os.cpu_count()} CPUs, loopback")
    print(f"{'server':<22}{'round':>6}{'p50 ms':>9}{'p99 ms':>9}{'reviews':>9}{'failed':>8}  held")
    for name, number, p50, p99, count, failed, held in rows:
        print(f"{name:<22}{number:>6}{p50:>9.2f}{p99:>9.2f}{count:>9}{failed:>8}  {held}")


if __name__ == "__main__":
    main()
