"""The shared loop: evaluation and checkpoint cadence, averaged micro-batches, and exact resuming."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from flexselect.training.checkpoint import has_checkpoint
from flexselect.training.loop import run
from tests.training.regression import LOOP, Regression


def weights(task: Regression) -> dict[str, torch.Tensor]:
    return {
        **task.model.state_dict(),
        **{f"head.{k}": v for k, v in task.extras["head"].state_dict().items()},
    }


def test_a_run_evaluates_and_checkpoints_on_its_cadence(tmp_path: Path):
    saves: list[int] = []
    task = Regression()
    state = run(task, LOOP, out=tmp_path, progress=False, on_save=lambda d: saves.append(len(task.seen)))
    assert state["step"] == 6 and task.seen == [0, 1, 2, 3, 4, 5]
    assert [r["step"] for r in state["history"]] == [2, 4, 6] and saves == [2, 4, 6]
    assert set(state["history"][-1]) == {"step", "seconds", "lr", "train_loss", "aux_loss", "heldout_mse"}
    assert state["history"][-1]["lr"] == LOOP.lr_at(5)
    assert has_checkpoint(tmp_path)


def test_the_loss_falls(tmp_path: Path):
    config = replace(LOOP, steps=60, lr=5e-2, min_lr=1e-2, eval_every=10, save_every=60)
    state = run(Regression(), config, out=tmp_path, progress=False)
    assert state["history"][-1]["heldout_mse"] < 0.25 * state["history"][0]["heldout_mse"]


def test_micro_batches_average_their_gradients(tmp_path: Path):
    one, two = Regression(micro_batches=1), Regression(micro_batches=2)
    config = replace(LOOP, steps=1, grad_clip=1e9)
    run(one, config, out=tmp_path / "one", progress=False)
    run(two, config, out=tmp_path / "two", progress=False)
    fresh = Regression(micro_batches=2)
    grads = []
    for batch in fresh.batches(0):
        fresh.model.zero_grad()
        fresh.loss(batch)[0].backward()
        grads.append(fresh.model[0].weight.grad.clone())
    # AdamW's first step moves each weight by lr * sign(grad) (up to eps) plus decay: compare its direction.
    moved = Regression().model[0].weight - two.model[0].weight
    assert torch.equal(moved.sign(), (grads[0] + grads[1]).sign())


def test_resuming_takes_the_same_next_step_as_an_uninterrupted_run(tmp_path: Path):
    straight = Regression()
    full = run(straight, LOOP, out=tmp_path / "straight", progress=False)
    first = Regression()
    run(first, replace(LOOP, stop_at=3), out=tmp_path / "resumed", progress=False)
    resumed = Regression(seed=5)  # its weights and optimizer state come from the checkpoint
    state = run(resumed, LOOP, out=tmp_path / "resumed", resume=True, progress=False)
    assert resumed.seen == [3, 4, 5]  # the data picks up at the next step
    assert state["step"] == 6
    assert [r["step"] for r in state["history"]] == [2, 3, 4, 6]  # stopping at 3 evaluates there too
    for key in ("train_loss", "aux_loss", "heldout_mse", "lr"):
        assert state["history"][-1][key] == full["history"][-1][key], key
    ours, theirs = weights(resumed), weights(straight)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_the_tasks_settings_are_kept_in_the_loop_state(tmp_path: Path):
    state = run(Regression(), replace(LOOP, steps=1), out=tmp_path, progress=False, settings={"seed": 3})
    assert state["config"] == {"seed": 3}
