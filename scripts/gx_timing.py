"""Time the GX contracts on Fashion-MNIST: a 500-ID forget request against its 70,000 IDs, and the 60,000-sample
train split, each with nothing kept and with its checkpoint keeping the result and Data Docs (in a scratch folder).

``python scripts/gx_timing.py`` (needs the Debian package dataset-fashion-mnist). Prints one line per measurement.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from components.adapters.expectations import validate_forget_request, validate_image_set
from components.data.datasets import load_dataset


def timed(call: Callable[[], object], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    bundle = load_dataset("fashion_mnist", None)
    known = np.concatenate([bundle.train.ids, bundle.test.ids])
    rng = np.random.default_rng(0)
    request = sorted(rng.choice(bundle.train.ids, 500, replace=False).tolist())
    forgotten = sorted(set(rng.choice(bundle.train.ids, 1000, replace=False).tolist()) - set(request))
    train = bundle.train
    with tempfile.TemporaryDirectory(prefix="gx-timing-") as scratch:
        for label, outputs in (("nothing kept", None), ("kept (checkpoint + Data Docs)", Path(scratch))):
            seconds = timed(
                lambda o=outputs: validate_forget_request(request, known, forgotten, 0.05, len(train.ids), outputs=o), 5
            )
            print(  # noqa: T201
                f"forget request, 500 of {len(known)} IDs, {label}: first {seconds[0]:.3f} s, "
                f"median {statistics.median(seconds):.3f} s"
            )
            seconds = timed(
                lambda o=outputs: validate_image_set(
                    train.ids, train.labels, train.images, bundle.num_classes, bundle.image_shape, outputs=o
                ),
                3,
            )
            print(  # noqa: T201
                f"image set, {len(train.ids)} samples, {label}: first {seconds[0]:.3f} s, "
                f"median {statistics.median(seconds):.3f} s"
            )


if __name__ == "__main__":
    main()
