"""Training: teacher data on disk, a few steps on a tiny selector, resume reproduces, metrics."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from flexselect.lite import LiteSelector
from flexselect.ranking import ReferenceScorer
from flexselect.training.checkpoint import has_checkpoint
from flexselect.training.data import TeacherStore, fill, teacher_sample
from flexselect.training.distill import TrainConfig, rank_loss, train
from flexselect.training.metrics import evaluate, recall_at_k, selector_scores
from tests.selector.selector_helpers import QUESTION, frames_for, tiny_adapter, tiny_selector

CONFIG = TrainConfig(epochs=2, batch_size=2, lr=1e-3, min_lr=1e-4, eval_k=4, seed=3)


@pytest.fixture(scope="module")
def base():
    return tiny_adapter("qwen2_5_vl")


@pytest.fixture(scope="module")
def groups(base):
    teacher = ReferenceScorer(base, layer=2)
    return [teacher_sample(base, teacher, *frames_for("qwen2_5_vl", 8, seed=i), QUESTION) for i in range(6)]


def test_a_teacher_sample_holds_the_features_layout_and_scores_of_a_group(groups):
    sample = groups[0]
    assert sample.features.shape == (16, 4 * 32) and len(sample.layout) == 16
    assert sample.teacher.shape == (16,) and sample.teacher.dtype == torch.float32


def test_the_teacher_store_round_trips_samples_through_safetensors(tmp_path: Path, groups):
    store = TeacherStore(tmp_path, {"model": "tiny"})
    store.append(groups[:3])
    again = list(TeacherStore(tmp_path, {"model": "tiny"}))
    assert len(again) == 3
    assert torch.equal(again[2].teacher, groups[2].teacher)
    assert torch.equal(again[2].features, groups[2].features)
    assert torch.equal(again[2].layout.grid, groups[2].layout.grid)
    assert again[2].layout.seconds_per_step == groups[2].layout.seconds_per_step


def test_a_teacher_store_made_for_another_model_is_refused(tmp_path: Path, groups):
    TeacherStore(tmp_path, {"model": "tiny"}).append(groups[:1])
    with pytest.raises(ValueError, match="was made for"):
        TeacherStore(tmp_path, {"model": "other"})


def test_filling_a_store_computes_only_the_missing_samples(tmp_path: Path, groups):
    store = TeacherStore(tmp_path, {"model": "tiny"})
    fill(store, 2, lambda i: groups[i])
    asked: list[int] = []
    samples = fill(TeacherStore(tmp_path, {"model": "tiny"}), 5, lambda i: asked.append(i) or groups[i])
    assert asked == [2, 3, 4] and len(samples) == 5


def test_recall_at_k_counts_the_teachers_top_k_found_in_the_predictions():
    target = torch.tensor([0.9, 0.8, 0.1, 0.0])
    assert recall_at_k(torch.tensor([0.9, 0.0, 0.8, 0.1]), target, 2) == 0.5


def test_the_learning_rate_warms_up_then_decays_to_its_floor():
    loop = TrainConfig(epochs=1, batch_size=1, lr=1e-3, min_lr=1e-5, warmup=0.1).loop(samples=100)
    assert loop.steps == 100 and loop.warmup == 10
    assert loop.lr_at(0) == pytest.approx(1e-4)
    assert loop.lr_at(9) == pytest.approx(1e-3)
    assert loop.lr_at(100) == pytest.approx(1e-5)


def test_a_few_steps_write_a_loadable_selector_with_held_out_metrics(tmp_path: Path, base, groups):
    selector = tiny_selector(base)
    state = train(
        selector, config=CONFIG, samples=groups[:4], heldout=groups[4:], out=tmp_path, progress=False
    )
    assert state["step"] == 4 and [r["step"] for r in state["history"]] == [2, 4]
    assert {"spearman", "recall_at_k", "train_loss"} <= set(state["history"][-1])
    assert has_checkpoint(tmp_path)
    loaded = LiteSelector.load(tmp_path)
    assert evaluate(loaded, groups[4:], k=4) == evaluate(selector, groups[4:], k=4)


def test_resuming_reproduces_an_uninterrupted_run(tmp_path: Path, base, groups):
    straight = tiny_selector(base)
    train(straight, config=CONFIG, samples=groups[:4], heldout=groups[4:], out=tmp_path / "a", progress=False)
    first = tiny_selector(base)
    train(
        first,
        config=CONFIG,
        samples=groups[:4],
        heldout=groups[4:],
        out=tmp_path / "b",
        progress=False,
        stop_at=2,
    )
    resumed = tiny_selector(base, seed=99)  # its weights come from the checkpoint
    train(
        resumed,
        config=CONFIG,
        samples=groups[:4],
        heldout=groups[4:],
        out=tmp_path / "b",
        progress=False,
        resume=True,
    )
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_training_on_one_group_raises_its_rank_correlation(tmp_path: Path, base, groups):
    selector = tiny_selector(base)
    before = evaluate(selector, groups[:1], k=4).spearman
    config = replace(CONFIG, epochs=15, batch_size=1, lr=5e-3, min_lr=1e-4)
    train(selector, config=config, samples=groups[:1], heldout=[], out=tmp_path, progress=False)
    assert evaluate(selector, groups[:1], k=4).spearman > max(0.9, before)


def test_the_l1_option_trains_with_finite_losses(tmp_path: Path, base, groups):
    config = replace(CONFIG, epochs=1, spearman_weight=0.0, l1_weight=1.0)
    state = train(
        tiny_selector(base), config=config, samples=groups[:2], heldout=[], out=tmp_path, progress=False
    )
    assert torch.isfinite(torch.tensor(state["history"][-1]["train_loss"]))


def test_gradient_checkpointing_gives_the_same_gradients(base, groups):
    grads = []
    for checkpointing in (False, True):
        selector = tiny_selector(base).train()
        selector.gradient_checkpointing = checkpointing
        rank_loss(selector_scores(selector, groups[0]), groups[0].teacher, CONFIG).backward()
        grads.append(selector.decoder.layers[0].self_attn.q_proj.weight.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
