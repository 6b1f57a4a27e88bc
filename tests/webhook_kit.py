"""An HTTPS admission webhook of the test's own on loopback, for tier-3 tests that register one
next to (or instead of) the warden's and need the API server to call it."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import ssl
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaptain_warden.certs.pki import build_certificate
from kaptain_warden.testing.controlplane import ControlPlane

# Given an AdmissionReview's `request`, the `response` fields besides its uid.
Answer = Callable[[dict[str, Any]], dict[str, Any]]


class LoopbackWebhook:
    """Serves every POST with `answer`, over TLS signed by the control plane's CA (which the
    registration's `caBundle` then names); counts the API server's calls in `calls`."""

    def __init__(self, plane: ControlPlane, answer: Answer) -> None:
        self.calls = 0
        self._plane = plane
        webhook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                webhook.calls += 1
                response = {"uid": review["request"]["uid"], **answer(review["request"])}
                envelope = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}
                body = json.dumps({**envelope, "response": response}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        serving = build_certificate(
            ca=plane.ca,
            common_name="test-webhook",
            now=dt.datetime.now(dt.UTC),
            valid_for=dt.timedelta(hours=1),
            ip_addresses=("127.0.0.1",),
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="test-webhook-") as work_dir:
            (Path(work_dir) / "tls.crt").write_bytes(serving.cert_pem)
            (Path(work_dir) / "tls.key").write_bytes(serving.key_pem)
            context.load_cert_chain(Path(work_dir) / "tls.crt", Path(work_dir) / "tls.key")
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)

    def client_config(self, path: str) -> dict[str, Any]:
        """The registration's `clientConfig` for `path` on this server."""
        return {
            "url": f"https://127.0.0.1:{self._server.server_address[1]}{path}",
            "caBundle": base64.b64encode(self._plane.ca_pem).decode(),
        }

    def __enter__(self) -> LoopbackWebhook:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
