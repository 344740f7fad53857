"""Training checkpoints: a loadable selector directory plus optimizer state and loop state, without pickle.

The selector is saved as it ships (config.json, selector.json, model.safetensors). Optimizer state is
flattened into `optimizer.safetensors` (param groups as JSON metadata) and the loop's position goes to
`train_state.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from flexselect.lite.model import LiteSelector

STATE_FILE, OPTIMIZER_FILE = "train_state.json", "optimizer.safetensors"


class CheckpointError(Exception):
    """A checkpoint directory that cannot be resumed."""


def has_checkpoint(directory: Path) -> bool:
    """Whether `directory` holds a resumable selector training checkpoint."""
    return all((directory / n).is_file() for n in (STATE_FILE, OPTIMIZER_FILE, "model.safetensors"))


def save_checkpoint(
    directory: Path, selector: LiteSelector, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Write the selector, the optimizer state and the loop state to `directory`."""
    selector.save(directory)
    opt = optimizer.state_dict()
    tensors = {
        f"{i}.{k}": v.detach().contiguous().cpu() for i, s in opt["state"].items() for k, v in s.items()
    }
    save_file(tensors, directory / OPTIMIZER_FILE, metadata={"param_groups": json.dumps(opt["param_groups"])})
    (directory / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")


def load_checkpoint(
    directory: Path, selector: LiteSelector, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore selector weights and optimizer state from `directory`; returns the loop state.

    Raises:
        CheckpointError: files are missing or do not match.
    """
    if not has_checkpoint(directory):
        raise CheckpointError(f"no resumable checkpoint in {directory}")
    saved = LiteSelector.load(directory, device=selector.device, dtype=selector.dtype)
    try:
        selector.load_state_dict(saved.state_dict())
    except RuntimeError as exc:
        raise CheckpointError(f"the checkpoint in {directory} does not match the selector: {exc}") from exc
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(directory / OPTIMIZER_FILE, device=str(selector.device)).items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    with safe_open(directory / OPTIMIZER_FILE, framework="pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
    for state in per_param.values():  # Adam keeps `step` on the CPU
        if "step" in state:
            state["step"] = state["step"].cpu()
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    return json.loads((directory / STATE_FILE).read_text())
