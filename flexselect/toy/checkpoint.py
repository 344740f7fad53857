"""Training checkpoints: a loadable Hugging Face model directory plus optimizer state and a JSON state file.

The model is saved with `save_pretrained` (model.safetensors, config.json), so every checkpoint loads like a
released one. The optimizer state is flattened into `optimizer.safetensors` (no pickle), and the loop's
position (step, elapsed time, history) goes to `train_state.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

STATE_FILE = "train_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"


class CheckpointError(Exception):
    """A checkpoint directory that cannot be resumed (missing or mismatched files)."""


def has_checkpoint(directory: Path) -> bool:
    """Whether `directory` holds a resumable training checkpoint."""
    return all((directory / name).is_file() for name in (STATE_FILE, OPTIMIZER_FILE, "model.safetensors"))


def save_checkpoint(
    directory: Path,
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    extras: dict[str, nn.Module] | None = None,
) -> None:
    """Write model, optimizer, training-only modules (`NAME.safetensors`) and loop state to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    for name, module in (extras or {}).items():
        save_file(
            {k: v.contiguous() for k, v in module.state_dict().items()}, directory / f"{name}.safetensors"
        )
    opt = optimizer.state_dict()
    tensors = {
        f"{i}.{name}": value.contiguous() for i, s in opt["state"].items() for name, value in s.items()
    }
    meta = {"param_groups": json.dumps(opt["param_groups"])}
    save_file(tensors, directory / OPTIMIZER_FILE, metadata=meta)
    (directory / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")


def load_checkpoint(
    directory: Path,
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    extras: dict[str, nn.Module] | None = None,
) -> dict[str, Any]:
    """Restore model, training-only modules and optimizer state from `directory`; returns the loop state.

    Raises:
        CheckpointError: files are missing or do not match the model.
    """
    if not has_checkpoint(directory):
        raise CheckpointError(
            f"no resumable checkpoint in {directory} (need model, optimizer and state files)"
        )
    saved = type(model).from_pretrained(directory, dtype=model.dtype)
    try:
        model.load_state_dict(saved.state_dict())
    except RuntimeError as exc:
        raise CheckpointError(f"the checkpoint in {directory} does not match the model: {exc}") from exc
    for name, module in (extras or {}).items():
        path = directory / f"{name}.safetensors"
        if not path.is_file():
            raise CheckpointError(f"the checkpoint in {directory} has no {path.name} for the {name} module")
        module.load_state_dict(load_file(path))
    tensors = load_file(directory / OPTIMIZER_FILE)
    with safe_open(directory / OPTIMIZER_FILE, framework="pt") as f:
        meta = f.metadata()
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": json.loads(meta["param_groups"])})
    return json.loads((directory / STATE_FILE).read_text())
