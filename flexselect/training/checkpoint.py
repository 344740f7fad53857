"""Training checkpoints: a loadable model directory plus optimizer, training-only modules and loop state.

The model writes itself as it ships (its own `save`, e.g. `save_pretrained`), so every checkpoint loads like
a released model. Beside it, without pickle: the optimizer state flattened into `optimizer.safetensors`
(`"<param index>.<name>"` tensors, Adam's `step` included, param groups as JSON metadata), each training-only
module (an auxiliary probe) as `<name>.safetensors`, and the loop's position in `train_state.json`.

Tensors are read on the CPU and `torch.optim.Optimizer.load_state_dict` moves each moment to its parameter's
device and dtype (Adam's `step` stays on the CPU unless the optimizer is fused or capturable), so a run
checkpointed on one device resumes on another.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

STATE_FILE = "train_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
MODEL_FILE = "model.safetensors"
C = TypeVar("C")


class CheckpointError(Exception):
    """A checkpoint directory that cannot be resumed (missing or mismatched files)."""


def has_checkpoint(directory: Path) -> bool:
    """Whether `directory` holds a resumable training checkpoint (model, optimizer and loop state)."""
    return all((directory / name).is_file() for name in (STATE_FILE, OPTIMIZER_FILE, MODEL_FILE))


def save_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    """Write the optimizer's state (moments and step per parameter) and param groups to a safetensors file."""
    opt = optimizer.state_dict()
    tensors = {
        f"{index}.{name}": value.detach().cpu().contiguous()
        for index, state in opt["state"].items()
        for name, value in state.items()
    }
    save_file(tensors, path, metadata={"param_groups": json.dumps(opt["param_groups"])})


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    """Restore `save_optimizer`'s file into `optimizer`; moments land on their parameters' devices.

    Raises:
        CheckpointError: the file was written for other parameters.
    """
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(path).items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    with safe_open(path, framework="pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
    for group in groups:  # JSON made tuples (betas) lists; `params` is the one list of a group
        group.update({k: tuple(v) for k, v in group.items() if isinstance(v, list) and k != "params"})
    try:
        optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    except ValueError as exc:
        raise CheckpointError(f"{path} does not match the optimizer's parameters: {exc}") from exc


def save_checkpoint(
    directory: Path,
    *,
    save_model: Callable[[Path], None],
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    extras: dict[str, nn.Module] | None = None,
) -> None:
    """Write the model (`save_model(directory)`), training-only modules, optimizer and loop state."""
    directory.mkdir(parents=True, exist_ok=True)
    save_model(directory)
    for name, module in (extras or {}).items():
        tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        save_file(tensors, directory / f"{name}.safetensors")
    save_optimizer(directory / OPTIMIZER_FILE, optimizer)
    (directory / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")


def load_checkpoint(
    directory: Path,
    *,
    load_model: Callable[[Path], nn.Module],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    extras: dict[str, nn.Module] | None = None,
) -> dict[str, Any]:
    """Restore model (via `load_model`), training-only modules and optimizer; returns the loop state.

    Weights are copied into the existing modules, so they stay on the device they are on.

    Raises:
        CheckpointError: files are missing or do not match the model.
    """
    if not has_checkpoint(directory):
        raise CheckpointError(
            f"no resumable checkpoint in {directory} (need {MODEL_FILE}, {OPTIMIZER_FILE} and {STATE_FILE})"
        )
    try:
        model.load_state_dict(load_model(directory).state_dict())
    except RuntimeError as exc:
        raise CheckpointError(f"the checkpoint in {directory} does not match the model: {exc}") from exc
    for name, module in (extras or {}).items():
        path = directory / f"{name}.safetensors"
        if not path.is_file():
            raise CheckpointError(f"the checkpoint in {directory} has no {path.name} for the {name} module")
        module.load_state_dict(load_file(path))
    load_optimizer(directory / OPTIMIZER_FILE, optimizer)
    return json.loads((directory / STATE_FILE).read_text())


def config_to_json(config: Any) -> dict[str, Any]:
    """A flat config dataclass as a JSON-ready dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def config_from_json(cls: type[C], data: dict[str, Any]) -> C:
    """Inverse of `config_to_json` (lists become tuples)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
