"""Checkpoints: model, training-only modules, optimizer state (Adam's step too) and loop state, no pickle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flexselect.training.checkpoint import (
    OPTIMIZER_FILE,
    CheckpointError,
    config_from_json,
    config_to_json,
    has_checkpoint,
    load_checkpoint,
    load_optimizer,
    save_checkpoint,
    save_optimizer,
)
from flexselect.training.loop import LoopConfig
from flexselect.training.optim import adamw
from tests.training.regression import LOOP, Regression


def trained(steps: int = 3) -> tuple[Regression, torch.optim.AdamW]:
    """A task and its optimizer after `steps` real steps (moments and step counters are non-trivial)."""
    task = Regression()
    trainable = torch.nn.ModuleDict({"model": task.model, **task.extras})
    optimizer = adamw(trainable, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    for step in range(steps):
        for batch in task.batches(step):
            task.loss(batch)[0].backward()
        optimizer.step()
        optimizer.zero_grad()
    return task, optimizer


def save(directory: Path, task: Regression, optimizer: torch.optim.Optimizer) -> None:
    state = {"step": 3, "elapsed_s": 1.5, "history": [{"step": 2}], "config": {}}
    save_checkpoint(
        directory, save_model=task.save_model, optimizer=optimizer, state=state, extras=task.extras
    )


def restore(directory: Path, device: str = "cpu") -> tuple[Regression, torch.optim.AdamW, dict]:
    task = Regression(seed=7)  # other weights: they must all come from the checkpoint
    task.model.to(device), task.extras["head"].to(device)
    optimizer = adamw(
        torch.nn.ModuleDict({"model": task.model, **task.extras}), lr=1.0, betas=(0.5, 0.5), weight_decay=0.0
    )
    state = load_checkpoint(
        directory, load_model=task.load_model, model=task.model, optimizer=optimizer, extras=task.extras
    )
    return task, optimizer, state


def test_a_round_trip_restores_weights_optimizer_state_step_and_loop_state(tmp_path: Path):
    task, optimizer = trained()
    save(tmp_path, task, optimizer)
    again, restored, state = restore(tmp_path)
    assert state == {"step": 3, "elapsed_s": 1.5, "history": [{"step": 2}], "config": {}}
    for module, other in ((task.model, again.model), (task.extras["head"], again.extras["head"])):
        for (name, a), b in zip(module.state_dict().items(), other.state_dict().values(), strict=True):
            assert torch.equal(a, b), name
    ours, theirs = optimizer.state_dict(), restored.state_dict()
    assert theirs["param_groups"] == ours["param_groups"]
    assert ours["state"].keys() == theirs["state"].keys()
    for index, saved in ours["state"].items():
        assert saved.keys() == theirs["state"][index].keys() == {"step", "exp_avg", "exp_avg_sq"}
        for name, value in saved.items():
            assert torch.equal(value, theirs["state"][index][name]), (index, name)
    assert float(theirs["state"][0]["step"]) == 3.0


def test_the_checkpoint_holds_only_safetensors_and_json(tmp_path: Path):
    task, optimizer = trained()
    save(tmp_path, task, optimizer)
    assert has_checkpoint(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "head.safetensors",
        "model.safetensors",
        "optimizer.safetensors",
        "train_state.json",
    ]


def test_optimizer_state_moves_to_the_models_device_and_adams_step_stays_on_the_cpu(tmp_path: Path):
    _, optimizer = trained()
    save_optimizer(tmp_path / OPTIMIZER_FILE, optimizer)
    elsewhere = Regression()
    elsewhere.model.to("meta"), elsewhere.extras["head"].to("meta")  # another device (shapes, no data)
    trainable = torch.nn.ModuleDict({"model": elsewhere.model, **elsewhere.extras})
    moved = adamw(trainable, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    load_optimizer(tmp_path / OPTIMIZER_FILE, moved)
    state = moved.state_dict()["state"]
    assert {s["exp_avg"].device.type for s in state.values()} == {"meta"}
    assert {s["exp_avg_sq"].device.type for s in state.values()} == {"meta"}
    assert {s["step"].device.type for s in state.values()} == {"cpu"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_run_checkpointed_on_the_cpu_resumes_on_cuda(tmp_path: Path):
    task, optimizer = trained()
    save(tmp_path, task, optimizer)
    _, restored, _ = restore(tmp_path, device="cuda")
    state = restored.state_dict()["state"]
    assert {s["exp_avg"].device.type for s in state.values()} == {"cuda"}
    assert {s["step"].device.type for s in state.values()} == {"cpu"}
    restored.step()  # Adam runs with its moments on the GPU and its step count on the CPU


def test_resuming_from_an_empty_directory_is_an_error(tmp_path: Path):
    with pytest.raises(CheckpointError, match="no resumable checkpoint"):
        restore(tmp_path)


def test_an_optimizer_state_for_other_parameters_is_refused(tmp_path: Path):
    _, optimizer = trained()
    save_optimizer(tmp_path / OPTIMIZER_FILE, optimizer)
    other = adamw(torch.nn.Linear(4, 8), lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    with pytest.raises(CheckpointError, match="does not match"):
        load_optimizer(tmp_path / OPTIMIZER_FILE, other)


def test_a_checkpoint_of_another_model_is_refused(tmp_path: Path):
    task, optimizer = trained()
    save(tmp_path, task, optimizer)
    task.model = torch.nn.Linear(4, 1)
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_checkpoint(tmp_path, load_model=Regression().load_model, model=task.model, optimizer=optimizer)


def test_a_config_round_trips_through_json_with_its_tuples():
    data = json.loads(json.dumps(config_to_json(LOOP)))
    assert data["betas"] == [0.9, 0.99]
    assert config_from_json(LoopConfig, data) == LOOP
