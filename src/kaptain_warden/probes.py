"""One small HTTP server for probes and scrapes: the sweeper's `/metrics` and `/healthz`, the
certificate watcher's `/healthz` and `/readyz`.

GET only; each path answers from a function the owner passes in (`Route`), so the server
knows nothing of what it reports. It runs on a daemon thread and logs no request line (a probe
or a scrape every few seconds is not worth one).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Answer", "ProbeServer", "Route", "plain"]

logger = logging.getLogger(__name__)

_PLAIN = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Answer:
    """What one GET gets back."""

    status: int
    body: bytes
    content_type: str = _PLAIN


Route = Callable[[], Answer]


def plain(status: int, text: str) -> Answer:
    """A one-line plain-text answer."""
    return Answer(status, (text + "\n").encode())


class ProbeServer:
    """Serves `routes` (path → answer) on `address`:`port` until `stop()`; 404 elsewhere."""

    def __init__(
        self, routes: Mapping[str, Route], *, address: str, port: int, name: str = "probes"
    ) -> None:
        table = dict(routes)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = table.get(self.path.partition("?")[0])
                answer = route() if route is not None else plain(404, "not found")
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._paths = sorted(table)
        self._server = ThreadingHTTPServer((address, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked for any free one)."""
        return int(self._server.server_address[1])

    def start(self) -> ProbeServer:
        """Serve in the background."""
        self._thread.start()
        logger.info("serving %s", " and ".join(self._paths), extra={"port": self.port})
        return self

    def stop(self) -> None:
        """Stop serving, close the socket, and join the serving thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
