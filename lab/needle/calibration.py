"""Choose a model's reference layer with the paper's needle sweep over needle videos (world or user)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from flexselect.adapters import VideoLLMAdapter
from flexselect.config import Aggregation
from flexselect.toy.calibration import (
    box_token_mask,
    layer_scores,
    needle_hits,
    needle_token_mask,
    tokens_per_frame_group,
)
from lab.needle.videos import NeedleCase, decode

CELL = 28
MAX_WORLD_SIDE = 224


@dataclass
class Calibration:
    """Per-layer needle metrics averaged over the samples, and the layer they pick.

    `recall` is the paper's Recall@K: the share of the top-K tokens (K = one frame's, or one temporal
    patch's, tokens) that lie on the needle's frames. The paper's needle fills a frame; the world's needles
    are objects of a few tokens, so `recall_needle` takes K = the needle's own tokens and counts only those
    (the same number for a frame-filling needle). `top1`: the best token shows the needle; `mass`: share of
    the score on needle tokens. The layer is chosen by `recall_needle`, then `top1`, then `mass`.
    """

    recall: list[float]
    recall_needle: list[float]
    top1: list[float]
    mass: list[float]
    chance: float  # the needle tokens' share of all tokens (what a random ranking scores)
    k: int
    samples: int
    skipped: int  # cases whose needle fell between the sampled frames
    chosen: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def natural_frame_side(adapter: VideoLLMAdapter) -> int:
    """A square frame side the model's processor keeps as is: its pixel cap, within 56..224, on the grid."""
    size = getattr(getattr(adapter.processor, "video_processor", None), "size", None) or {}
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    if get("longest_edge"):  # Qwen: an area in pixels
        side = math.isqrt(int(get("longest_edge")))
    elif get("height"):
        side = int(get("height"))
    else:
        side = MAX_WORLD_SIDE
    return max(2 * CELL, min(MAX_WORLD_SIDE, side // CELL * CELL))


def choose_layer(recall: list[float], top1: list[float], mass: list[float]) -> int:
    """The layer with the best needle recall; ties go to the better top-1 rate, then the larger mass."""
    return max(range(len(recall)), key=lambda i: (round(recall[i], 4), round(top1[i], 4), mass[i], -i))


def _masks(case: NeedleCase, tokens: Any, times: Any, frame_count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(needle-frame tokens, needle tokens); the latter from the boxes when the truth has them."""
    frames = needle_token_mask(tokens, torch.from_numpy(case.needle_frames(times)), frame_count)
    if not case.boxes or case.size[0] <= 0:
        return frames, frames
    each = [torch.from_numpy(f) for f in case.needle_frames_each(times)]
    return frames, box_token_mask(tokens, frame_count, list(zip(each, case.boxes, strict=True)), case.size)


def calibrate(
    adapter: VideoLLMAdapter,
    cases: list[NeedleCase],
    *,
    frames: int | None = None,
    aggregation: Aggregation = "max",
) -> Calibration:
    """Score every case at every layer and average the needle metrics per layer.

    Args:
        adapter: the model.
        cases: needle questions with their evidence times (and boxes).
        frames: frames sampled uniformly per video (None: every frame of the file).
        aggregation: how attention is reduced over heads and question tokens.
    """
    sums = torch.zeros(4, adapter.num_layers)  # recall, recall_needle, top1, mass
    chance, k, used, skipped = 0.0, 0, 0, 0
    for case in cases:
        video, times = decode(case, frames)
        if len(case.needle_frames(times)) == 0:
            skipped += 1
            continue
        tokens = adapter.encode(video, times)
        prompt = adapter.prompt(case.question.question)
        scores = layer_scores(adapter, prompt, tokens, aggregation=aggregation)
        frame_mask, needle_mask = _masks(case, tokens, times, len(video))
        k = tokens_per_frame_group(tokens)
        hits = needle_hits(scores, frame_mask, needle_mask, k)
        sums += torch.stack([hits.recall, hits.recall_needle, hits.top1, hits.mass])
        chance += float(needle_mask.float().mean())
        used += 1
    if used == 0:
        raise ValueError(f"none of the {len(cases)} cases had a needle among the sampled frames")
    recall, recall_needle, top1, mass = ([round(float(x), 4) for x in row] for row in sums / used)
    return Calibration(
        recall=recall,
        recall_needle=recall_needle,
        top1=top1,
        mass=mass,
        chance=round(chance / used, 4),
        k=k,
        samples=used,
        skipped=skipped,
        chosen=choose_layer(recall_needle, top1, mass),
    )
