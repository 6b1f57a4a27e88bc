"""Benchmark: the admission server over HTTPS with keep-alive clients on loopback, next to the
same stack's ceiling (a constant AdmissionReview from POST /_bench/constant), in the same run.

    .venv/bin/python bench/admission.py                 # starts its own server, stops it
    .venv/bin/python bench/admission.py --url https://127.0.0.1:8443 --ca-file ca.crt

Arms: for each payload (a ~5 KB Secret review, a ~20 KB TFJob review) the ceiling, /mutate and
/validate, their order rotating from round to round (--rounds, default 5). Per arm and round:
the reviews/s that 16 concurrent keep-alive clients get, the server's CPU per review, and p50/p99
latency of one serial client; then per round the ratio of /mutate and /validate to the ceiling
measured beside them. /mutate reviews the CREATE of an unstamped object (a patch is built);
/validate reviews the CREATE of a stamped one (every check runs). The clients run in their own
processes (the server's workers must not share a GIL with them) on the same cores as the
server, so the absolute figures understate the server; the ratios to the ceiling are what to
compare. The server's certificate, CA and log live in one temporary directory, removed at the
end.

A script, not a test: loopback only, bounded in time, it stops by itself.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import ipaddress
import multiprocessing
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import orjson

from _rounds import Rounds, add_arguments

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from factories import patched, review, secret, tfjob

HEADERS = {"Content-Type": "application/json"}
CONSTANT = "/_bench/constant"


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    ca_file: str


def connect(target: Target) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=target.ca_file)
    return http.client.HTTPSConnection(target.host, target.port, context=context, timeout=30)


def call(connection: http.client.HTTPSConnection, path: str, body: bytes) -> bytes:
    connection.request("POST", path, body=body, headers=HEADERS)
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}: {data[:200]!r}")
    return data


def _client_process(
    target: Target, path: str, body: bytes, threads: int, start: float, stop: float, out: object
) -> None:
    """`threads` keep-alive clients; counts the answers completed between start and stop."""
    counts = [0] * threads
    errors = [0] * threads

    def run(index: int) -> None:
        connection = connect(target)
        call(connection, path, body)  # handshake and first request before the window
        while time.time() < start:
            time.sleep(0.001)
        while (now := time.time()) < stop:
            try:
                call(connection, path, body)
            except (OSError, RuntimeError, http.client.HTTPException):
                errors[index] += 1
                connection.close()
                connection = connect(target)
                continue
            if now >= start:
                counts[index] += 1
        connection.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put((sum(counts), sum(errors)))  # type: ignore[attr-defined]


def server_cpu_seconds(pid: int | None) -> float:
    """CPU time used so far by the server's processes (arbiter and workers), from /proc."""
    if pid is None:
        return 0.0
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(child) for child in (task / "children").read_text().split()]
    ticks = 0
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a worker that just exited
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def throughput(
    target: Target,
    path: str,
    body: bytes,
    *,
    clients: int,
    processes: int,
    seconds: float,
    server_pid: int | None,
) -> tuple[float, int, float]:
    """Reviews/s with `clients` concurrent keep-alive connections, the error count, and the
    server's CPU microseconds per review (0 when its pid is unknown)."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start = time.time() + 1.0  # every connection is open and warm before the window
    stop = start + seconds
    per_process = [clients // processes + (i < clients % processes) for i in range(processes)]
    children = [
        context.Process(target=_client_process, args=(target, path, body, n, start, stop, results))
        for n in per_process
        if n
    ]
    for child in children:
        child.start()
    time.sleep(max(start - time.time(), 0))
    cpu_start = server_cpu_seconds(server_pid)
    time.sleep(max(stop - time.time(), 0))
    cpu_used = server_cpu_seconds(server_pid) - cpu_start
    totals = [results.get(timeout=seconds + 60) for _ in children]
    for child in children:
        child.join()
    answered = sum(t[0] for t in totals)
    return answered / seconds, sum(t[1] for t in totals), 1e6 * cpu_used / max(answered, 1)


def serial_latency(
    target: Target, path: str, body: bytes, *, count: int, seconds: float
) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, samples) of one client sending reviews one after another."""
    connection = connect(target)
    for _ in range(50):
        call(connection, path, body)
    samples = []
    deadline = time.monotonic() + seconds
    while len(samples) < count and time.monotonic() < deadline:
        started = time.perf_counter()
        call(connection, path, body)
        samples.append((time.perf_counter() - started) * 1000)
    connection.close()
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
    return statistics.median(samples), p99, len(samples)


def payloads(target: Target) -> dict[str, dict[str, bytes]]:
    """Review bodies per payload and endpoint: an unstamped CREATE for /mutate, a stamped one
    (stamped by this server) for /validate; the ceiling gets the /mutate body."""
    objects = {
        "Secret ~5 KB": secret(payload_bytes=2400),
        "TFJob ~20 KB": tfjob(env_vars=110),
    }
    connection = connect(target)
    bodies: dict[str, dict[str, bytes]] = {}
    for name, obj in objects.items():
        mutate_body = orjson.dumps(review(obj))
        answer = orjson.loads(call(connection, "/mutate", mutate_body))
        stamped = patched(copy.deepcopy(obj), answer)
        if stamped == obj:
            raise RuntimeError(f"{name}: /mutate did not stamp the object; is the policy default?")
        validate_body = orjson.dumps(review(stamped))
        verdict = orjson.loads(call(connection, "/validate", validate_body))
        if not verdict["response"]["allowed"]:
            raise RuntimeError(f"{name}: /validate denied the stamped object: {verdict}")
        call(connection, CONSTANT, mutate_body)  # the bench endpoint must be enabled
        bodies[name] = {CONSTANT: mutate_body, "/mutate": mutate_body, "/validate": validate_body}
    connection.close()
    return bodies


def start_server(
    workers: int, threads: int, log_path: Path, extra: list[str]
) -> tuple[subprocess.Popen[str], Target]:
    """`kaptain-warden serve --self-signed --enable-bench-endpoint` on a free loopback port.

    Its self-signed CA and certificate go to `log_path`'s directory, which the caller owns
    (and removes)."""
    cache = log_path.parent / "cache"
    command = [
        str(Path(sys.executable).with_name("kaptain-warden")),
        "serve",
        "--self-signed",
        "--host=127.0.0.1",
        "--port=0",
        "--enable-bench-endpoint",
        f"--workers={workers}",
        f"--threads={threads}",
        "--log-format=json",  # production logging: one JSON line per review
        *extra,
    ]
    env = dict(os.environ, KAPTAIN_WARDEN_CACHE=str(cache))
    env.pop("KUBERNETES_SERVICE_HOST", None)
    log = log_path.open("w")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    log.close()
    url = ca_file = None
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while (url is None or ca_file is None) and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the server exited: {log_path.read_text()[-2000:]}")
        if "listening on " in line:
            url = line.split("listening on ", 1)[1].strip()
        if "CA bundle" in line:
            ca_file = line.rsplit(": ", 1)[1].strip()
    if url is None or ca_file is None:
        process.kill()
        raise RuntimeError("the server did not announce its URL")
    parsed = urllib.parse.urlsplit(url)
    assert parsed.hostname is not None and parsed.port is not None
    return process, Target(parsed.hostname, parsed.port, ca_file)


def stop_server(process: subprocess.Popen[str]) -> None:
    """SIGTERM, and wait: the server removes its own metrics directory on the way out."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def loopback_target(url: str, ca_file: str) -> Target:
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    loopback = host == "localhost" or (
        (host.replace(".", "").isdigit() or ":" in host) and ipaddress.ip_address(host).is_loopback
    )
    if parsed.scheme != "https" or not loopback or parsed.port is None:
        raise SystemExit(f"--url must be https://<loopback address>:<port>, not {url}")
    return Target(host, parsed.port, ca_file)


ENDPOINTS = {CONSTANT: "ceiling", "/mutate": "/mutate", "/validate": "/validate"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running server (started with --enable-bench-endpoint)")
    parser.add_argument("--ca-file", help="the CA bundle of --url's certificate")
    parser.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more `kaptain-warden serve` argument, e.g. --serve-arg=--log-level=WARNING",
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument(
        "--client-processes", type=int, default=2, help="processes the clients run in (default 2)"
    )
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="throughput window per arm and round (default 2)"
    )
    parser.add_argument(
        "--serial", type=int, default=500, help="serial requests per arm and round (default 500)"
    )
    add_arguments(parser)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kaptain-warden-bench-") as work:
        process = None
        server_pid = None
        if args.url:
            if not args.ca_file:
                parser.error("--url needs --ca-file")
            target = loopback_target(args.url, args.ca_file)
            server = f"{args.url} (given)"
        else:
            log_path = Path(work) / "serve.log"
            process, target = start_server(args.workers, args.threads, log_path, args.serve_arg)
            server_pid = process.pid
            server = (
                f"kaptain-warden serve, gthread, {args.workers} workers x {args.threads} "
                "threads, TLS, JSON logs at INFO to a file"
            )
        try:
            bodies = payloads(target)
            arms = [f"{name} {ENDPOINTS[path]}" for name in bodies for path in bodies[name]]
            bench = Rounds.from_args(
                "admission",
                args,
                title="the admission server over HTTPS next to its own ceiling (a constant "
                "answer from the same stack)",
                arms=arms,
                setup={
                    "server": server,
                    "throughput": f"{args.clients} keep-alive HTTPS clients in "
                    f"{args.client_processes} processes, {args.seconds:g} s per arm and round",
                    "latency": f"one serial keep-alive client, {args.serial} reviews per arm "
                    "and round",
                    "sizes": ", ".join(
                        f"{n}: {len(b['/mutate'])} bytes" for n, b in bodies.items()
                    ),
                    "cores": "server and clients share the machine's cores",
                },
            )
            for figure, unit in (
                ("reviews/s", "/s"),
                ("server CPU per review", "µs"),
                ("serial p50", "ms"),
                ("serial p99", "ms"),
                ("failed", "requests"),
            ):
                bench.declare(figure, unit)
            by_arm = {
                f"{name} {ENDPOINTS[path]}": (path, body)
                for name, per_endpoint in bodies.items()
                for path, body in per_endpoint.items()
            }
            for n in bench.rounds():
                for arm in bench.order(n):
                    path, body = by_arm[arm]
                    rate, failed, cpu = throughput(
                        target,
                        path,
                        body,
                        clients=args.clients,
                        processes=args.client_processes,
                        seconds=args.seconds,
                        server_pid=server_pid,
                    )
                    p50, p99, _ = serial_latency(
                        target, path, body, count=args.serial, seconds=args.seconds * 3
                    )
                    figures = {"reviews/s": rate, "serial p50": p50, "serial p99": p99}
                    if server_pid:
                        figures["server CPU per review"] = cpu
                    figures["failed"] = failed
                    bench.record(n, arm, figures)
        finally:
            if process is not None:
                stop_server(process)
    for name in bodies:
        for path in ("/mutate", "/validate"):
            for figure in ("reviews/s", "serial p50"):
                bench.ratio(figure, f"{name} {path}", f"{name} ceiling")
    bench.note(
        "ceiling: POST /_bench/constant on the same server, answered on the reviews' own path "
        "(reads the body, answers a constant review): TLS, HTTP and the worker, without deciding "
        "a review"
    )
    bench.note(
        "server CPU per review: CPU time of the server's processes (from /proc) per answered "
        "review during the throughput window; steadier than reviews/s when other work shares "
        "the machine"
    )
    for name in bodies:
        bench.headline(f"reviews/s: {name} /mutate / {name} ceiling")
    bench.headline("serial p50", f"{next(iter(bodies))} /mutate")
    bench.headline("server CPU per review", f"{next(iter(bodies))} /mutate")
    bench.finish()


if __name__ == "__main__":
    main()
