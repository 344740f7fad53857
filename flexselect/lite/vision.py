"""The selector's view of the video: the base vision tower runs once and feeds both projectors.

While the base adapter encodes frames, a pre-hook records what enters the base projector (the vision
tower's output). Each family then turns that into one feature row per visual patch token, in the adapter's
row order, and the selector's own projector (the published design per family) maps rows to its width:

- qwen2_5_vl: hook `visual.merger`; a token is its 2x2 patch rows (window order undone); merger projector
  (RMSNorm per row, Linear, GELU, Linear), as the paper's `merger_token_selector`.
- qwen3_vl: hook `visual.merger`; a token is its 2x2 patch rows; merger projector with LayerNorm.
- llava_onevision: hook `multi_modal_projector`; a token is the SigLIP features pooled to the base grid; MLP
  projector (Linear, GELU, Linear), as the paper's `build_vision_projector`.
- internvl: hook `multi_modal_projector`; a token is its pixel-shuffled features; LayerNorm + MLP (`mlp1`).

LLaVA-OneVision pools before projecting (the base projects, then pools) so that every token has one
feature row. Projectors start from the base projector's weights, truncated to the selector width.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.vision_utils import get_vision_window_index

from flexselect.adapters.base import PreparedClip, VideoLLMAdapter
from flexselect.lite.config import ProjectorConfig
from flexselect.types import TokenKind, VisualTokens


class MergerProjector(nn.Module):
    """Qwen-style patch merger: normalise each patch row, concatenate a token's rows, then a 2-layer MLP."""

    def __init__(self, config: ProjectorConfig, dim: int) -> None:
        super().__init__()
        self.rows = config.rows
        context = config.feature_dim // config.rows
        self.norm: nn.Module = (
            nn.RMSNorm(context, eps=1e-6) if config.norm == "rms" else nn.LayerNorm(context, eps=1e-6)
        )
        self.fc1 = nn.Linear(config.feature_dim, config.feature_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(config.feature_dim, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        n, width = features.shape
        rows = self.norm(features.view(n, self.rows, width // self.rows))  # (N, rows, context)
        return self.fc2(self.act(self.fc1(rows.view(n, width))))


class MLPProjector(nn.Module):
    """LLaVA / InternVL projector: optional LayerNorm, Linear to the selector width, GELU, Linear."""

    def __init__(self, config: ProjectorConfig, dim: int) -> None:
        super().__init__()
        self.norm: nn.Module = nn.LayerNorm(config.feature_dim) if config.norm == "layer" else nn.Identity()
        self.fc1 = nn.Linear(config.feature_dim, dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(features))))


def build_projector(config: ProjectorConfig, dim: int) -> nn.Module:
    """The projector module a config describes."""
    return MergerProjector(config, dim) if config.kind == "merger" else MLPProjector(config, dim)


@dataclass(frozen=True)
class FamilyVision:
    """How one family's vision features are captured, laid out per token, and projected."""

    hooked: Callable[[nn.Module], nn.Module]  # the base module whose input is the vision feature
    features: Callable[[nn.Module, dict[str, Any]], torch.Tensor]  # captured -> (n_patch, feature_dim)
    projector: Callable[[Any], ProjectorConfig]  # from the base model's config
    base_layers: Callable[[nn.Module], tuple[nn.Module | None, nn.Module, nn.Module]]  # (norm, fc1, fc2)


def _qwen2_5_features(model: nn.Module, box: dict[str, Any]) -> torch.Tensor:
    visual = model.model.visual
    x = box["input"]  # (patches, C) in window order, a token's rows consecutive
    grid = box["grid_thw"]
    window, _ = get_vision_window_index(
        grid,
        spatial_merge_size=visual.spatial_merge_size,
        window_size=visual.window_size,
        patch_size=visual.patch_size,
    )
    units = visual.spatial_merge_unit
    return x.view(-1, units, x.shape[-1])[torch.argsort(window)].flatten(1)  # (tokens, units*C), raster order


def _qwen3_features(model: nn.Module, box: dict[str, Any]) -> torch.Tensor:
    units = model.model.visual.spatial_merge_size**2
    x = box["input"]
    return x.view(-1, units * x.shape[-1])


def _llava_features(model: nn.Module, box: dict[str, Any]) -> torch.Tensor:
    x = box["input"]  # (frames, patches, C) selected SigLIP features
    return model.model.apply_pooling(x).flatten(0, 1)  # (frames * pooled, C)


def _internvl_features(model: nn.Module, box: dict[str, Any]) -> torch.Tensor:
    return box["input"].flatten(0, 1)  # (frames * tokens, 4C)


def _merger_config(norm: str) -> Callable[[Any], ProjectorConfig]:
    def make(config: Any) -> ProjectorConfig:
        vc = config.vision_config
        rows = int(vc.spatial_merge_size) ** 2
        return ProjectorConfig(kind="merger", feature_dim=int(vc.hidden_size) * rows, rows=rows, norm=norm)  # type: ignore[arg-type]

    return make


def _llava_config(config: Any) -> ProjectorConfig:
    layers = 1 if isinstance(config.vision_feature_layer, int) else len(config.vision_feature_layer)
    return ProjectorConfig(kind="mlp", feature_dim=int(config.vision_config.hidden_size) * layers)


def _internvl_config(config: Any) -> ProjectorConfig:
    shuffle = int(1 / config.downsample_ratio) ** 2
    return ProjectorConfig(
        kind="mlp", feature_dim=int(config.vision_config.hidden_size) * shuffle, norm="layer"
    )


FAMILY_VISION: dict[str, FamilyVision] = {
    "qwen2_5_vl": FamilyVision(
        hooked=lambda m: m.model.visual.merger,
        features=_qwen2_5_features,
        projector=_merger_config("rms"),
        base_layers=lambda m: (
            m.model.visual.merger.ln_q,
            m.model.visual.merger.mlp[0],
            m.model.visual.merger.mlp[2],
        ),
    ),
    "qwen3_vl": FamilyVision(
        hooked=lambda m: m.model.visual.merger,
        features=_qwen3_features,
        projector=_merger_config("layer"),
        base_layers=lambda m: (
            m.model.visual.merger.norm,
            m.model.visual.merger.linear_fc1,
            m.model.visual.merger.linear_fc2,
        ),
    ),
    "llava_onevision": FamilyVision(
        hooked=lambda m: m.model.multi_modal_projector,
        features=_llava_features,
        projector=_llava_config,
        base_layers=lambda m: (
            None,
            m.model.multi_modal_projector.linear_1,
            m.model.multi_modal_projector.linear_2,
        ),
    ),
    "internvl": FamilyVision(
        hooked=lambda m: m.model.multi_modal_projector,
        features=_internvl_features,
        projector=_internvl_config,
        base_layers=lambda m: (
            m.model.multi_modal_projector.layer_norm,
            m.model.multi_modal_projector.linear_1,
            m.model.multi_modal_projector.linear_2,
        ),
    ),
}


def family_vision(family: str) -> FamilyVision:
    if family not in FAMILY_VISION:
        raise ValueError(f"no selector projector for family {family!r}; known: {', '.join(FAMILY_VISION)}")
    return FAMILY_VISION[family]


def projector_config_for(adapter: VideoLLMAdapter) -> ProjectorConfig:
    """The selector projector matching a base model's vision tower."""
    return family_vision(adapter.family).projector(adapter.config)


@torch.no_grad()
def init_projector_from_base(projector: nn.Module, adapter: VideoLLMAdapter) -> None:
    """Copy the base projector's norm and linears into `projector`, truncating to its shapes.

    Rows beyond the base's (a selector wider than the base) keep their random initialisation.
    """
    norm, fc1, fc2 = family_vision(adapter.family).base_layers(adapter.model)
    if norm is not None and not isinstance(projector.norm, nn.Identity):
        _copy_overlap(projector.norm.weight, norm.weight)
        if getattr(norm, "bias", None) is not None and getattr(projector.norm, "bias", None) is not None:
            _copy_overlap(projector.norm.bias, norm.bias)
    for mine, base in ((projector.fc1, fc1), (projector.fc2, fc2)):
        _copy_overlap(mine.weight, base.weight)
        if mine.bias is not None and base.bias is not None:
            _copy_overlap(mine.bias, base.bias)


def _copy_overlap(dst: torch.Tensor, src: torch.Tensor) -> None:
    region = tuple(slice(0, min(a, b)) for a, b in zip(dst.shape, src.shape, strict=True))
    dst[region] = src[region].to(dst.dtype)


@contextmanager
def capture_vision(adapter: VideoLLMAdapter) -> Iterator[dict[str, list[Any]]]:
    """Record every input of the base projector (and Qwen2.5-VL's grids) while the block runs.

    Yields a box whose "inputs" (and, for Qwen2.5-VL, "grids") lists fill in call order: one entry per
    vision forward (one for all the clips of a batch whose frames share a size).
    """
    box: dict[str, list[Any]] = {"inputs": [], "grids": []}
    spec = family_vision(adapter.family)

    def take_input(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        box["inputs"].append(args[0] if args else next(iter(kwargs.values())))

    def take_grid(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        box["grids"].append(kwargs["grid_thw"] if "grid_thw" in kwargs else args[1])

    handles = [spec.hooked(adapter.model).register_forward_pre_hook(take_input, with_kwargs=True)]
    if adapter.family == "qwen2_5_vl":
        handles.append(adapter.model.model.visual.register_forward_pre_hook(take_grid, with_kwargs=True))
    try:
        yield box
    finally:
        for handle in handles:
            handle.remove()


def captured_features(adapter: VideoLLMAdapter, box: dict[str, list[Any]]) -> torch.Tensor:
    """The selector's per-patch features of everything `capture_vision` recorded, end to end in call
    order: (n_patch, feature_dim), detached."""
    if not box["inputs"]:
        raise RuntimeError(f"the {adapter.family} vision tower never reached its projector; nothing captured")
    rows = family_vision(adapter.family).features
    grids = box["grids"] or [None] * len(box["inputs"])
    parts = [
        rows(adapter.model, {"input": x, "grid_thw": g}) for x, g in zip(box["inputs"], grids, strict=True)
    ]
    return (parts[0] if len(parts) == 1 else torch.cat(parts)).detach()


def _patch_count(tokens: VisualTokens) -> int:
    return int((tokens.kind == TokenKind.PATCH).sum())


def encode_with_features(
    adapter: VideoLLMAdapter, frames: np.ndarray, times: np.ndarray, **encode_kwargs: Any
) -> tuple[VisualTokens, torch.Tensor]:
    """Encode frames once with the base adapter; also return the selector's per-patch vision features.

    Returns:
        (tokens, features): the adapter's `VisualTokens`, and (n_patch, feature_dim) features whose rows
        follow the PATCH rows of `tokens` in order.
    """
    with capture_vision(adapter) as box:
        tokens = adapter.encode(frames, times, **encode_kwargs)
    features = captured_features(adapter, box)
    if features.shape[0] != (n_patch := _patch_count(tokens)):
        raise RuntimeError(f"captured {features.shape[0]} feature rows for {n_patch} patch tokens")
    return tokens, features


def encode_prepared_with_features(
    adapter: VideoLLMAdapter, prepared: list[PreparedClip]
) -> list[tuple[VisualTokens, torch.Tensor]]:
    """`encode_with_features` of several clips through `adapter.encode_prepared`, so every family runs its
    vision tower once over all of them; the features captured over the batch are split per clip.

    Returns one (tokens, features) per clip, in order, each equal to encoding that clip alone.
    """
    if not prepared:
        return []
    with capture_vision(adapter) as box:
        all_tokens = adapter.encode_prepared(prepared)
    features = captured_features(adapter, box)
    counts = [_patch_count(tokens) for tokens in all_tokens]
    if features.shape[0] != sum(counts):
        raise RuntimeError(f"captured {features.shape[0]} feature rows for {sum(counts)} patch tokens")
    return list(zip(all_tokens, features.split(counts), strict=True))
