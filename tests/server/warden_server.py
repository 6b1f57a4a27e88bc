"""Start and stop the real `kaptain-warden serve --self-signed` process for tier 2 tests."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests

STARTUP_TIMEOUT = 30.0
GRACEFUL_TIMEOUT = 5
_URL = re.compile(r"listening on (https://\S+)")
_CA = re.compile(r"CA bundle .*: (\S+)$")


def _command() -> list[str]:
    """The console script of this venv: the same entry point a user runs."""
    script = Path(sys.executable).with_name("kaptain-warden")
    if script.exists():
        return [str(script)]
    found = shutil.which("kaptain-warden")
    assert found, "kaptain-warden is not installed in this environment"
    return [found]


@dataclass
class Server:
    """A running server: its URL, the CA to trust, and what it wrote."""

    process: subprocess.Popen[str]
    url: str
    ca_file: str
    log_file: Path
    stdout: list[str] = field(default_factory=list)

    def session(self) -> requests.Session:
        """A keep-alive HTTPS session that trusts the server's generated CA."""
        session = requests.Session()
        # The environment's CA bundle and proxies would override `verify` and leave loopback.
        session.trust_env = False
        session.verify = self.ca_file
        return session

    def post(self, session: requests.Session, path: str, document: Any) -> requests.Response:
        """POST a JSON document as the API server does."""
        return session.post(
            self.url + path,
            data=orjson.dumps(document),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )

    def logs_until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Every JSON log line, once one satisfies `predicate` (the server writes its log in
        batches every 50 ms); all lines written so far when none does within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.logs()
            if any(predicate(line) for line in lines) or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def logs(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far."""
        lines = []
        for line in self.log_file.read_text().splitlines():
            if line.startswith("{"):
                lines.append(orjson.loads(line))
        return lines

    def stop(self, sig: int = signal.SIGTERM, timeout: float = GRACEFUL_TIMEOUT + 10) -> int:
        """Signal the arbiter and wait for it; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def start_server(cache_dir: Path, log_file: Path, *extra: str) -> Server:
    """Start `kaptain-warden serve --self-signed` on a free loopback port; wait for /readyz."""
    env = dict(os.environ, KAPTAIN_WARDEN_CACHE=str(cache_dir))
    env.pop("KUBERNETES_SERVICE_HOST", None)  # no parent lookups against a cluster
    log = log_file.open("w")
    process = subprocess.Popen(
        [
            *_command(),
            "serve",
            "--self-signed",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--log-format",
            "json",
            "--graceful-timeout",
            str(GRACEFUL_TIMEOUT),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    log.close()
    lines: queue.Queue[str | None] = queue.Queue()
    stdout: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stdout.append(line.rstrip("\n"))
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    url = ca_file = None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        while url is None or ca_file is None:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            if line is None:
                raise RuntimeError(f"the server exited: {log_file.read_text()[-3000:]}")
            if m := _URL.search(line):
                url = m.group(1)
            if m := _CA.search(line):
                ca_file = m.group(1)
        server = Server(process, url, ca_file, log_file, stdout)
        with server.session() as session:
            while True:
                try:
                    if session.get(url + "/readyz", timeout=2).status_code == 200:
                        return server
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server never became ready")
                time.sleep(0.05)
    except BaseException:
        process.kill()
        process.wait()
        raise
