"""The notebook kernel the SDK tests drive, run here under the project's own interpreter."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from kaptain_warden.testing.notebook import Kernel, KernelError


@pytest.fixture
def kernel(tmp_path: Path):
    with Kernel(Path(sys.executable), environ=dict(os.environ), log_path=tmp_path / "k.log") as k:
        yield k


def test_cells_share_globals_and_answer_their_result(kernel: Kernel) -> None:
    assert kernel.run("x = 40") is None
    assert kernel.run("result = {'answer': x + 2}") == {"answer": 42}
    # A cell that sets no result answers None, not the previous cell's.
    assert kernel.run("y = 1") is None


def test_printing_never_corrupts_the_answers(kernel: Kernel) -> None:
    assert kernel.run("print('{\"ok\": false}'); result = 'fine'") == "fine"
    assert '{"ok": false}' in kernel.log_tail()


def test_a_failing_cell_is_reported_and_the_kernel_goes_on(kernel: Kernel) -> None:
    with pytest.raises(KernelError, match="ZeroDivisionError") as failure:
        kernel.run("1 / 0")
    assert "Traceback" in str(failure.value)
    assert kernel.run("result = 'still here'") == "still here"


def test_submitted_cells_are_answered_in_order(kernel: Kernel) -> None:
    kernel.submit("result = 1")
    kernel.submit("result = 2")
    assert [kernel.answer(), kernel.answer()] == [1, 2]
    with pytest.raises(KernelError, match="no cell is waiting"):
        kernel.answer()


def test_models_come_back_with_their_wire_names(kernel: Kernel) -> None:
    cell = (
        "from kubernetes.client import V1ObjectMeta\n"
        "result = V1ObjectMeta(name='a', generate_name='b-', resource_version='7')"
    )
    assert kernel.run(cell) == {"name": "a", "generateName": "b-", "resourceVersion": "7"}


def test_a_kernel_that_dies_is_reported(kernel: Kernel) -> None:
    with pytest.raises(KernelError, match="exited with code 3"):
        kernel.run("import os; os._exit(3)")


def test_a_cell_that_stalls_stops_the_kernel(kernel: Kernel) -> None:
    with pytest.raises(KernelError, match=r"no answer within 0\.5 s"):
        kernel.run("import time; time.sleep(60)", timeout=0.5)
    with pytest.raises(KernelError, match="exited"):
        kernel.run("result = 1")
