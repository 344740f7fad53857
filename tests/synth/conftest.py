"""Shared fixtures for the synthetic-world tests: small worlds and one mp4 written once per session."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from streams.synth import (
    COLOR_NAMES,
    GroundTruth,
    Needle,
    WorldConfig,
    generate_world,
    shape_mask,
    write_world,
)

SMALL = WorldConfig(seconds=8, fps=4, width=112, height=112, needles=6, seed=3, max_needle_seconds=1.0)


@pytest.fixture
def small() -> WorldConfig:
    """A 32-frame 112x112 world with six needles of up to one second."""
    return SMALL


@pytest.fixture
def expected_labels() -> Callable[[Sequence[Needle], tuple[int, int, int]], np.ndarray]:
    """Build the (T, H, W) colour-label map the ground truth implies: needle colour index, else -1."""

    def build(needles: Sequence[Needle], shape: tuple[int, int, int]) -> np.ndarray:
        out = np.full(shape, -1, dtype=np.int8)
        for n in needles:
            x, y, w, h = n.box
            out[n.first_frame : n.last_frame + 1, y : y + h, x : x + w][:, shape_mask(n.shape, w)] = (
                COLOR_NAMES.index(n.color)
            )
        return out

    return build


@pytest.fixture(scope="session")
def small_mp4(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GroundTruth]:
    """The SMALL world written once as H.264 mp4 with its JSON beside it."""
    path = tmp_path_factory.mktemp("synth") / "small.mp4"
    return path, write_world(generate_world(SMALL), path)
