"""Tier 2 fixtures: the real `kaptain-warden serve --self-signed` process, talked to over HTTPS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from warden_server import Server, start_server


@pytest.fixture(scope="session")
def server_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One certificate cache for the session: the first server generates, the others reuse."""
    return tmp_path_factory.mktemp("kaptain-warden-cache")


@pytest.fixture(scope="session")
def make_server(
    server_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Server]]:
    """Start servers with extra flags; every one still running at the end is stopped."""
    started: list[Server] = []

    def make(*extra: str) -> Server:
        log_file = tmp_path_factory.mktemp("server") / "server.log"
        server = start_server(server_cache, log_file, *extra)
        started.append(server)
        return server

    yield make
    for server in started:
        if server.process.poll() is None:
            server.stop()


@pytest.fixture(scope="session")
def server(make_server: Callable[..., Server]) -> Server:
    """The shared server (2 workers, 1 MiB body limit so the 413 test stays quick)."""
    return make_server("--workers", "2", "--max-body-bytes", str(1024 * 1024))


@pytest.fixture
def session(server: Server) -> Iterator[requests.Session]:
    """A keep-alive session to the shared server."""
    with server.session() as s:
        yield s
