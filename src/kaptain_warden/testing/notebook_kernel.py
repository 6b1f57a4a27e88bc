"""A minimal notebook kernel: runs cells of Python sent by a test, in one namespace, and answers.

It runs in an SDK's own virtualenv (see `hack/sdk-envs`), under that environment's interpreter,
so it imports nothing but the standard library and the Kubernetes client (which every SDK
depends on), and is started by path, not as a module of this package. Like a Jupyter kernel,
the cells share their globals: a client made in one cell is used in the next. Tests drive it
through `kaptain_warden.testing.notebook.Kernel`.

Protocol: one JSON object per line on stdin, `{"code": "..."}`; one JSON line per cell on the
original stdout, `{"ok": true, "result": <the cell's `result` variable, as JSON>}` or
`{"ok": false, "error": "<type>: <message>", "traceback": "..."}`. Whatever the cell or the SDK
prints goes to stderr, so it can never corrupt the answers. EOF on stdin ends the kernel.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

from kubernetes.client import ApiClient  # every SDK environment has the Kubernetes client


def _jsonable(value: Any) -> Any:
    """`value` as the JSON the API server would see: OpenAPI models (Kubernetes', and the
    SDKs' own, generated the same way) with their wire names; anything else through `str`."""
    return json.loads(json.dumps(ApiClient().sanitize_for_serialization(value), default=str))


def main() -> int:
    """Serve cells until stdin closes."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    namespace: dict[str, Any] = {"__name__": "__notebook__"}
    for line in sys.stdin:
        if not line.strip():
            continue
        namespace.pop("result", None)
        try:
            code = compile(json.loads(line)["code"], "<cell>", "exec")
            exec(code, namespace)
            answer = {"ok": True, "result": _jsonable(namespace.get("result"))}
        except Exception as error:  # the cell's failure is the answer; the kernel goes on
            answer = {
                "ok": False,
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
