"""Timing device work: clock readings taken after the CUDA device has finished what it was given."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


def synced_now(device: torch.device | None = None) -> float:
    """`time.perf_counter()` once `device`'s queued work is done (CUDA runs asynchronously, CPU needn't wait).

    `device=None`: the current CUDA device when CUDA is available, else no wait.
    """
    if device is None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    elif device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@dataclass
class Elapsed:
    """Milliseconds a `stopwatch` block took; set when the block ends."""

    ms: float = 0.0


@contextmanager
def stopwatch(device: torch.device | None = None) -> Iterator[Elapsed]:
    """Time the block's work on `device`: `with stopwatch(dev) as took: ...; took.ms`."""
    elapsed = Elapsed()
    start = synced_now(device)
    try:
        yield elapsed
    finally:
        elapsed.ms = (synced_now(device) - start) * 1e3
