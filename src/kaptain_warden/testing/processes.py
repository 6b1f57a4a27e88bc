"""Processes of the harness: each in its own process group logging to a file, and a watchdog
that ends them (and removes their directories) if the Python process that started them dies."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final

from kaptain_warden.testing.errors import ControlPlaneError

__all__ = ["ManagedProcess", "Watchdog", "free_ports"]

_LOG_TAIL_LINES: Final = 25


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class ManagedProcess:
    """One control-plane process: its own process group, its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Start the process in a new session (so a new process group, led by it)."""
        if self._popen is not None:
            raise ControlPlaneError(f"{self.name} was already started")
        self._log = self.log_path.open("ab")
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
            )
        except OSError as error:
            self._log.close()
            raise ControlPlaneError(f"cannot run {self.argv[0]}: {error}") from error

    @property
    def pid(self) -> int:
        """The process id, which is also its process group id."""
        if self._popen is None:
            raise ControlPlaneError(f"{self.name} has not been started")
        return self._popen.pid

    @property
    def started(self) -> bool:
        """Whether `start` has been called (successfully)."""
        return self._popen is not None

    def poll(self) -> int | None:
        """The exit code, or None while it runs (or if it never started)."""
        return None if self._popen is None else self._popen.poll()

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the process's output."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                size = log.tell()
                log.seek(max(0, size - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        tail = text.splitlines()[-lines:]
        return "\n".join(tail) if tail else "(empty log)"

    def exit_description(self) -> str:
        """'exited with code N' or 'was killed by SIGNAME'."""
        code = self.poll()
        if code is None:
            return "is still running"
        if code < 0:
            return f"was killed by {_signal_name(-code)}"
        return f"exited with code {code}"

    def failure(self, context: str) -> ControlPlaneError:
        """An error for a process that ended when it should not have."""
        return ControlPlaneError(
            f"{self.name} {self.exit_description()} {context}; "
            f"last lines of its log:\n{self.log_tail()}"
        )

    def stop(self, timeout: float) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout` seconds, and reap the process."""
        popen = self._popen
        if popen is None:
            return
        try:
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGTERM)
                try:
                    popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(popen.pid, signal.SIGKILL)
                    popen.wait()
            # Anything the process left behind in its group goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
        finally:
            if self._log is not None:
                self._log.close()


# A process that outlives us by at most a few seconds: it reads commands on stdin and, when the
# pipe closes without a "clear" first (our process ended without stopping the control plane,
# even by SIGKILL), it terminates the registered process groups and removes the directories.
_WATCHDOG_SOURCE: Final = r"""
import os, shutil, signal, sys, time
groups, dirs = set(), set()
for line in sys.stdin:
    command, _, argument = line.rstrip("\n").partition(" ")
    if command == "group":
        groups.add(int(argument))
    elif command == "dir":
        dirs.add(argument)
    elif command == "clear":
        groups.clear()
        dirs.clear()
def alive(group):
    # A group whose members are all zombies is dead: nobody reaps them while our parent is
    # gone until init gets round to it, and some container inits never do.
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open("/proc/" + entry + "/stat") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        state, _, pgrp = stat[stat.rfind(")") + 2 :].split()[:3]
        if int(pgrp) == group and state != "Z":
            return True
    return False
for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 2.0)):
    for group in groups:
        try:
            os.killpg(group, sig)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while any(alive(group) for group in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
for path in dirs:
    shutil.rmtree(path, ignore_errors=True)
"""


class Watchdog:
    """The watchdog process: told which process groups and directories to clean up."""

    def __init__(self) -> None:
        self._popen = subprocess.Popen(
            [sys.executable, "-I", "-c", _WATCHDOG_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self._popen.pid

    def _send(self, line: str) -> None:
        stdin = self._popen.stdin
        if stdin is None or stdin.closed:
            return
        with contextlib.suppress(BrokenPipeError, ValueError):
            stdin.write(line.encode() + b"\n")
            stdin.flush()

    def watch_group(self, pgid: int) -> None:
        self._send(f"group {pgid}")

    def watch_dir(self, path: Path) -> None:
        self._send(f"dir {path}")

    def dismiss(self) -> None:
        """Everything was cleaned up: let the watchdog exit without acting."""
        self._send("clear")
        if self._popen.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self._popen.stdin.close()
        try:
            self._popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
