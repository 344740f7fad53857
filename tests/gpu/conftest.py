"""Fixtures of the GPU tests (`pytest -m gpu tests/gpu`): every test here is marked `gpu` and skips
without CUDA. They compare each model path on the GPU with the same path on the CPU, in float32 with TF32
off, so the two differ only by kernel rounding."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def cuda() -> torch.device:
    """The first CUDA device (TF32 off, so float32 results match the CPU's); skips the test without one."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch.device("cuda", 0)
