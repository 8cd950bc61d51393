"""PyTorch is a prerequisite of the ``mixunlearn`` command, not a declared dependency: PyPI's torch 2.13.0 Linux wheel
depends on the CUDA 13 libraries (``nvidia-*``, ``triton``, several GB), so declaring it would pull them on a clean
machine. Install the CPU build first (README, "Install as a package"). Imported by ``components.cli`` before anything
that imports torch, so a missing torch ends with one ``error:`` line and exit status 2 instead of a traceback.
"""

import importlib.util
import sys

TORCH_HINT = (
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu "
    "(the CPU build; where a local CPU wheel is configured, plain `pip install torch==2.13.0`)"
)

if importlib.util.find_spec("torch") is None:
    sys.stderr.write(f"error: mixunlearn needs PyTorch, which is installed first and separately: {TORCH_HINT}\n")
    raise SystemExit(2)
