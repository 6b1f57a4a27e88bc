"""Running `hack/test-assets`, which builds (once, cached) or finds what the tests need.

Shared by `controlplane` (the control-plane binaries), `upstream` (the upstream CRDs) and
`controllers` (the real KServe, Knative Serving and training-operator controllers).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Final

__all__ = [
    "TEST_ASSETS_RELATIVE",
    "AssetsNotFoundError",
    "find_test_assets_script",
    "run_test_assets",
]

TEST_ASSETS_RELATIVE: Final = Path("hack") / "test-assets"
_LOG_TAIL_LINES: Final = 25


class AssetsNotFoundError(RuntimeError):
    """Something the tests need is neither configured nor obtainable with hack/test-assets."""


def find_test_assets_script(*starts: Path) -> Path | None:
    """The `hack/test-assets` script of the kaptain-warden checkout, or None.

    Looks in each directory above `starts` (default: this module's location, then the current
    directory), so it is found from a source checkout or an editable install.
    """
    roots = starts or (Path(__file__).resolve().parent, Path.cwd())
    for root in roots:
        for directory in (root, *root.parents):
            candidate = directory / TEST_ASSETS_RELATIVE
            if candidate.is_file():
                return candidate
    return None


def run_test_assets(script: Path, *args: str, environ: Mapping[str, str] | None = None) -> Path:
    """Run `hack/test-assets *args` (which builds what it provides the first time) and return the
    directory it prints.

    The script's progress (stderr) is passed through to our stderr as it comes, so a first
    build that takes tens of minutes is visibly busy; its last stdout line is the directory.
    """
    process = subprocess.Popen(
        [str(script), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ if environ is None else environ),
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    stderr_tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL_LINES)

    def tee(stream: IO[str]) -> None:
        for line in stream:
            stderr_tail.append(line.rstrip("\n"))
            sys.stderr.write(line)

    tee_thread = threading.Thread(target=tee, args=(process.stderr,), daemon=True)
    tee_thread.start()
    try:
        stdout = process.stdout.read()
        returncode = process.wait()
    except BaseException:
        # Interrupted (KeyboardInterrupt, pytest timeout): don't leave a Go build behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    tee_thread.join(timeout=5)
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if returncode != 0 or not lines:
        tail = "\n".join(stderr_tail)
        raise AssetsNotFoundError(
            f"{' '.join((str(script), *args))} exited with code {returncode} without providing "
            f"a directory; last lines of its output:\n{tail}"
        )
    directory = Path(lines[-1])
    if not directory.is_dir():
        raise AssetsNotFoundError(
            f"{script} printed {directory!s} as its last line, which is not a directory"
        )
    return directory
