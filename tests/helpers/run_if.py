"""``run_if``: skip a test cleanly when the machine lacks what it needs (lightning-hydra-template's ``RunIf``).

Usage, on one test or on a whole module::

    @run_if(min_gpus=1)
    def test_on_cuda() -> None: ...

    pytestmark = run_if(min_gpus=1)

When a GPU is required the marks include the ``gpu`` marker, so ``-m "not gpu"`` deselects such tests and ``-m gpu``
selects them whether or not this machine has one; on a machine without enough GPUs they skip with the reason.
"""

from __future__ import annotations

from typing import TypeVar

import pytest
import torch

T = TypeVar("T")


class RunIfMarks(list[pytest.MarkDecorator]):
    """Marks applied together: a list, as ``pytestmark`` and ``pytest.param(marks=...)`` take it, that is also a
    decorator applying each of them."""

    def __call__(self, test: T) -> T:
        for mark in self:
            test = mark(test)
        return test


def run_if(min_gpus: int = 0) -> RunIfMarks:
    """Return the marks of a test that needs ``min_gpus`` CUDA devices.

    Args:
        min_gpus: CUDA devices the test needs; 0 needs none (the test then always runs).

    Returns:
        A ``skipif`` mark that names how many GPUs were needed and found, plus the ``gpu`` marker when ``min_gpus``
        is at least 1.
    """
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    reason = f"needs {min_gpus} CUDA GPU{'' if min_gpus == 1 else 's'}, found {found}"
    marks = RunIfMarks([pytest.mark.skipif(found < min_gpus, reason=reason)])
    if min_gpus > 0:
        marks.append(pytest.mark.gpu)
    return marks
