"""Device choice, seeding, timing and mini-batch order: the few runtime facts every loop shares."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

# (event, values, step): loops report through these so that tracking stays outside the algorithms.
Callback = Callable[[str, Mapping[str, float], int], None]


def emit(callbacks: Sequence[Callback], event: str, values: Mapping[str, float], step: int) -> None:
    """Send one event to every callback."""
    for callback in callbacks:
        callback(event, values, step)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error rather than a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA device is available")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Stopwatch:
    """Accumulates GPU-synchronised wall seconds over the ``measure()`` blocks."""

    device: torch.device
    seconds: float = 0.0

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds += time.perf_counter() - start


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[None]:
    """bfloat16 autocast on CUDA when enabled (no loss scaling needed); a no-op on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seeded_generator(seed: int) -> torch.Generator:
    """A private generator, so one component's randomness never shifts another's."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return generator


def minibatches(
    n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True, drop_last: bool = False
) -> Iterator[torch.Tensor]:
    """Yield index tensors covering ``range(n)`` once, in a seeded random order when ``shuffle``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def endless_minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Reshuffle and start over whenever a pass ends: pairs a short loader with a long one."""
    while True:
        yield from minibatches(n, batch_size, generator, shuffle=True, drop_last=n >= batch_size)
