"""A webhook that decides nothing: the floor of what any admission webhook costs here.

`bench/e2e_admission.py` registers it next to the warden, for a namespace of its own, so that
the added latency of a create can be split into what the API server pays to call *any* webhook
(encode the AdmissionReview, HTTPS on a kept-alive connection, decode the answer, apply a
patch) and what the warden adds on top. It is as little as a webhook can be: HTTPS on
loopback with the warden's own certificate, HTTP/1.1 kept alive, a thread per connection
blocked in `recv` (no hand-off), TCP_NODELAY, and one write per answer. /mutate answers
"allowed" with a fixed JSON patch (the warden's own patch for the benchmark's Secret, taken
from it once), /validate answers "allowed"; only the request's uid is read from the body (the
API server checks that the answer echoes it).
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import ssl
import threading
from pathlib import Path

# The AdmissionReview's request.uid: the first "uid" in the body (Go encodes the envelope's
# kind and apiVersion, then the request, whose first field is its uid).
_UID = re.compile(rb'"uid":"([^"]*)"')
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


class TrivialWebhook:
    """/mutate and /validate on 127.0.0.1, answering without deciding (see the module)."""

    def __init__(self, cert: Path, key: Path, patch: bytes) -> None:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(cert), str(key))
        encoded = base64.b64encode(patch)
        self._answers = {
            b"/mutate": (
                b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":'
                b'{"uid":"%s","allowed":true,"patchType":"JSONPatch","patch":"' + encoded + b'"}}'
            ),
            b"/validate": (
                b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":'
                b'{"uid":"%s","allowed":true}}'
            ),
        }
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0  # accepted so far: the API server's connections to this webhook
        self.answered = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="trivial-webhook", daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> TrivialWebhook:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop accepting and close every connection (their threads end with them)."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._open.add(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            with self._context.wrap_socket(raw, server_side=True) as sock:
                buffer = b""
                while True:
                    end = buffer.find(b"\r\n\r\n")
                    while end < 0:
                        chunk = sock.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                        end = buffer.find(b"\r\n\r\n")
                    head = buffer[: end + 2]
                    length = _LENGTH.search(head)
                    needed = end + 4 + (int(length[1]) if length else 0)
                    while len(buffer) < needed:
                        chunk = sock.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    body, buffer = buffer[end + 4 : needed], buffer[needed:]
                    target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
                    path = target.partition(b"?")[0]  # the API server adds ?timeout=
                    uid = _UID.search(body)
                    template = self._answers.get(path)
                    if template is None or uid is None:
                        return
                    answer = template % uid[1]
                    sock.sendall(_HEAD % len(answer) + answer)
                    self.answered += 1
        except (OSError, ssl.SSLError):
            return
        finally:
            with self._lock:
                self._open.discard(raw)
