"""A Kubeflow notebook, as tier-3 tests need one: the real SDKs and kubectl acting with the
notebook's own ServiceAccount token.

`Notebook.open` gives a profile namespace a notebook Pod and a token for its `default-editor`
ServiceAccount from the TokenRequest API, bound to that Pod (what the kubelet mounts into a
notebook), and writes a kubeconfig holding it. `Notebook.kubectl` runs kubectl with it;
`Notebook.kernel("kserve")` starts a kernel in that SDK's virtualenv (built or found by
`hack/sdk-envs`) with `KUBECONFIG` pointing at it, so the SDK authenticates exactly as it would
in the notebook. Cells run there; their `result` comes back as JSON.

    notebook = Notebook.open(plane, "team-a", work_dir)
    with notebook.kernel("training") as kernel:
        kernel.run("from kubeflow.training import TrainingClient\\n"
                   "client = TrainingClient(namespace='team-a')")
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

from kaptain_warden.kube.client import request_json
from kaptain_warden.testing.assets import find_test_assets_script
from kaptain_warden.testing.controlplane import ControlPlane
from kaptain_warden.testing.errors import ControlPlaneError
from kaptain_warden.testing.stack import (
    NOTEBOOK_SERVICE_ACCOUNT,
    notebook_user,
    service_account_token,
)

__all__ = ["SDK_ENVIRONMENTS", "Kernel", "KernelError", "Notebook", "sdk_environments"]

_KERNEL: Final = Path(__file__).with_name("notebook_kernel.py")
_SDK_ENVS: Final = "sdk-envs"
_NOTEBOOK_POD: Final = "notebook-0"
_LOG_TAIL_CHARS: Final = 4000


class KernelError(ControlPlaneError):
    """A cell failed in the SDK's interpreter, or the kernel died or did not answer in time."""


#: The environments `hack/sdk-envs` provides, one per SDK.
SDK_ENVIRONMENTS: Final = ("training", "kserve", "katib")


@functools.cache
def sdk_environments() -> dict[str, Path]:
    """The virtualenv directory of each SDK environment, by name; the missing ones are built
    first (in parallel, by `hack/sdk-envs`, which owns the pinned versions and the cache)."""
    assets = find_test_assets_script()
    if assets is None:
        raise ControlPlaneError("no hack/test-assets (nor hack/sdk-envs) above this checkout")
    script = assets.with_name(_SDK_ENVS)
    result = subprocess.run(
        [str(script), *SDK_ENVIRONMENTS],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = result.stdout.split()
    if result.returncode != 0 or len(lines) != len(SDK_ENVIRONMENTS):
        raise ControlPlaneError(
            f"{script} exited with code {result.returncode}; "
            f"its output ends with:\n{result.stderr[-_LOG_TAIL_CHARS:]}"
        )
    return dict(zip(SDK_ENVIRONMENTS, map(Path, lines), strict=True))


class Kernel:
    """A `notebook_kernel` process in an SDK environment; cells in, JSON results out."""

    def __init__(self, python: Path, *, environ: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        # -I: the kernel's directory is not put on sys.path, so nothing here shadows the SDK's
        # imports, and no PYTHON* variable of the test's own interpreter leaks in.
        self._process = subprocess.Popen(
            [str(python), "-I", str(_KERNEL)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=dict(environ),
            start_new_session=True,
        )
        assert self._process.stdout is not None
        self._answers: IO[bytes] = self._process.stdout
        self._received = b""
        self._pending = 0

    def __enter__(self) -> Kernel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def submit(self, code: str) -> None:
        """Send a cell without waiting for it (e.g. an SDK call that waits on a status the
        test then writes); `answer` collects its result."""
        assert self._process.stdin is not None
        if self._process.poll() is not None:
            raise KernelError(
                f"the kernel exited with code {self._process.returncode}; "
                f"its output ends with:\n{self.log_tail()}"
            )
        self._process.stdin.write(json.dumps({"code": code}).encode() + b"\n")
        self._process.stdin.flush()
        self._pending += 1

    def answer(self, timeout: float = 120.0) -> Any:
        """The `result` of the oldest submitted cell.

        Raises:
            KernelError: the cell raised (with its traceback), the kernel died, or no answer
                came within `timeout` (the kernel is then stopped).
        """
        if self._pending == 0:
            raise KernelError("no cell is waiting for an answer")
        deadline = time.monotonic() + timeout
        descriptor = self._answers.fileno()
        while b"\n" not in self._received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # The cell may still be running: no later answer could be trusted to be whose
                # it seems, so the kernel is stopped.
                self._process.kill()
                self._process.wait()
                raise KernelError(
                    f"no answer within {timeout:g} s (the kernel was stopped); "
                    f"its output ends with:\n{self.log_tail()}"
                )
            readable, _, _ = select.select([descriptor], [], [], min(1.0, remaining))
            if readable:
                chunk = os.read(descriptor, 65536)
                if not chunk:
                    self._process.wait()
                    raise KernelError(
                        f"the kernel exited with code {self._process.returncode}; "
                        f"its output ends with:\n{self.log_tail()}"
                    )
                self._received += chunk
        line, self._received = self._received.split(b"\n", 1)
        self._pending -= 1
        answer = json.loads(line)
        if not answer["ok"]:
            raise KernelError(f"{answer['error']}\n{answer['traceback']}")
        return answer["result"]

    def run(self, code: str, timeout: float = 120.0) -> Any:
        """Run one cell and return its `result` variable (None when it sets none)."""
        self.submit(code)
        return self.answer(timeout)

    def log_tail(self) -> str:
        """The end of what the kernel (and the SDK) printed."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]

    def close(self) -> None:
        """Close stdin (the kernel ends), and kill it if it does not within a few seconds."""
        assert self._process.stdin is not None
        with contextlib.suppress(OSError):  # a kernel that died leaves a broken pipe
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._answers.close()
        self._log.close()


@dataclass(frozen=True)
class Notebook:
    """A notebook in a profile namespace: its Pod, its token's kubeconfig, kubectl, kernels."""

    plane: ControlPlane
    namespace: str
    kubeconfig: Path
    work_dir: Path

    @property
    def user(self) -> str:
        """The identity the API server sees for every request the notebook makes."""
        return notebook_user(self.namespace)

    @classmethod
    def open(cls, plane: ControlPlane, namespace: str, work_dir: Path) -> Notebook:
        """Create the notebook Pod in `namespace` (a profile namespace, which has the
        `default-editor` ServiceAccount), request a token bound to it, write the kubeconfig."""
        work_dir.mkdir(parents=True, exist_ok=True)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": _NOTEBOOK_POD},
            "spec": {
                "serviceAccountName": NOTEBOOK_SERVICE_ACCOUNT,
                "containers": [{"name": "notebook", "image": "registry.example/jupyter:1"}],
            },
        }
        with plane.api_client() as admin:
            request_json(admin, "POST", f"/api/v1/namespaces/{namespace}/pods", body=pod)
            token = service_account_token(admin, namespace, pod=_NOTEBOOK_POD)
        kubeconfig = plane.write_token_kubeconfig(
            work_dir / "notebook.kubeconfig",
            token=token,
            user=notebook_user(namespace),
            namespace=namespace,
        )
        return cls(plane=plane, namespace=namespace, kubeconfig=kubeconfig, work_dir=work_dir)

    def environ(self) -> dict[str, str]:
        """The process environment of the notebook's programs: its kubeconfig, nothing that
        would make a client believe it runs in a cluster."""
        environ = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("KUBERNETES_", "PYTHON", "VIRTUAL_ENV"))
        }
        environ["KUBECONFIG"] = str(self.kubeconfig)
        return environ

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the notebook (`env` added to its environment, e.g. `KUBE_EDITOR`);
        output captured as text.

        Raises:
            ControlPlaneError: when `check` and kubectl fails, with its stderr.
        """
        result = subprocess.run(
            [str(self.plane.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.environ() | dict(env or {}),
            check=False,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} (as {self.user}) exited with code "
                f"{result.returncode}: {result.stderr.strip()}"
            )
        return result

    def kernel(self, environment: str) -> Kernel:
        """A kernel in SDK environment `environment` (`training`, `kserve`, `katib`)."""
        python = sdk_environments()[environment] / "bin" / "python"
        return Kernel(
            python,
            environ=self.environ(),
            log_path=self.work_dir / f"kernel-{environment}-{time.monotonic_ns()}.log",
        )
