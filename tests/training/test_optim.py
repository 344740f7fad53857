"""AdamW's parameter groups: weight matrices decay, norms and biases do not, frozen parameters stay out."""

from __future__ import annotations

import torch
from torch import nn

from flexselect.training.optim import adamw, param_groups


def net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))


def test_matrices_decay_and_vectors_do_not_in_parameter_order():
    model = net()
    decay, other = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and other["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(model[0].weight), id(model[2].weight)]
    assert [id(p) for p in other["params"]] == [
        id(model[0].bias),
        id(model[1].weight),
        id(model[1].bias),
        id(model[2].bias),
    ]


def test_frozen_parameters_are_left_out():
    model = net()
    model[0].requires_grad_(False)
    decay, other = param_groups(model, 0.1)
    assert len(decay["params"]) == 1 and len(other["params"]) == 3


def test_adamw_carries_the_groups_and_settings():
    optimizer = adamw(net(), lr=2e-3, betas=(0.9, 0.98), weight_decay=0.01)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    assert all(g["lr"] == 2e-3 and g["betas"] == (0.9, 0.98) for g in optimizer.param_groups)
