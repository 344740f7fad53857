"""A short seeded training run is reproducible, checkpoints a loadable model, and resumes exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flexselect.adapters import load_adapter
from flexselect.toy.train import TrainConfig
from lab.toy.data import EVIDENCE_CLASSES, TOKEN_CLASSES, ToyDataConfig
from lab.toy.recipe import ToyRecipe, train_toy
from tests.toy.toy_helpers import TINY

RECIPE = ToyRecipe(
    model=TINY,
    data=ToyDataConfig(lengths=(8, 16), length_weights=(0.5, 0.5), frames_per_batch=64),
    train=TrainConfig(
        steps=4,
        warmup=2,
        eval_every=2,
        save_every=2,
        aux_weight=0.5,
        aux_classes=TOKEN_CLASSES,
        aux_layer=1,
        attn_weight=0.5,
        attn_layer=2,
        evidence_weight=0.5,
        evidence_classes=EVIDENCE_CLASSES,
    ),
    eval_clips=10,
    eval_long_clips=4,
)


def losses(state: dict) -> list[float]:
    return [round(h["train_loss"], 6) for h in state["history"]]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("straight")
    return out, train_toy(out, RECIPE, progress=False)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_losses(straight, tmp_path):
    _, state = straight
    assert losses(train_toy(tmp_path, RECIPE, progress=False)) == losses(state)


@pytest.mark.slow
def test_resuming_reaches_the_uninterrupted_state(straight, tmp_path):
    out, state = straight
    train_toy(tmp_path, replace(RECIPE, train=replace(RECIPE.train, steps=2)), progress=False)
    resumed = train_toy(tmp_path, RECIPE, resume=True, progress=False)
    assert resumed["step"] == 4
    assert losses(resumed) == losses(state)
    ours, theirs = load_file(tmp_path / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.slow
def test_a_checkpoint_loads_like_a_released_model(straight):
    out, _ = straight
    adapter = load_adapter(out)
    assert adapter.family == "qwen2_5_vl"
    assert adapter.num_layers == TINY.layers
    assert adapter.max_positions == TINY.max_positions


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = TrainConfig(steps=100, warmup=10, lr=1e-3, min_lr=1e-5)
    assert config.loop().lr_at(0) == pytest.approx(1e-4)
    assert config.loop().lr_at(10) == pytest.approx(1e-3)
    assert config.loop().lr_at(100) == pytest.approx(1e-5)
