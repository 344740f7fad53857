"""FlexSelect settings: reference layer, budget, aggregation and grouping; they validate themselves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Aggregation = Literal["max", "mean"]
Grouping = Literal["contiguous", "interleaved"]
BudgetMode = Literal["global", "per_group"]
BudgetRounding = Literal["exact", "frames"]
SelectionStyle = Literal["paper", "stream"]

# Reference layers used by the paper's released numbers (0-based decoder index), keyed by
# (model_type, num_hidden_layers). Other models fall back to the same relative depth (~0.7).
KNOWN_REFERENCE_LAYERS: dict[tuple[str, int], int] = {
    ("qwen2_5_vl", 28): 20,  # Qwen2.5-VL-7B
    ("qwen2_5_vl", 80): 60,  # Qwen2.5-VL-72B
    ("llava_onevision", 28): 19,  # LLaVA-Video-7B (Qwen2-7B)
    ("llava_onevision", 80): 60,  # LLaVA-Video-72B
    ("internvl", 32): 15,  # InternVL2.5-8B (InternLM2.5-7B, 32 layers)
    ("internvl", 28): 15,  # InternVL with a 28-layer Qwen2 LM: same relative choice
}
DEFAULT_RELATIVE_DEPTH = 0.7
BUDGET_FRAMES = 32  # the paper's budgets: 32 frames' worth of visual tokens (Qwen: 32 temporal steps, 7,040)


def default_reference_layer(model_type: str, num_layers: int) -> int:
    """The paper's layer for a known model, else the layer at ~70% depth; always < num_layers."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be positive, got {num_layers}")
    known = KNOWN_REFERENCE_LAYERS.get((model_type, num_layers))
    if known is not None:
        return known
    return min(num_layers - 1, round(DEFAULT_RELATIVE_DEPTH * (num_layers - 1)))


def default_budget(tokens_per_frame: float, frames: int = BUDGET_FRAMES) -> int:
    """The paper's budget: `frames` frames' worth of a model's visual tokens (a frame being a temporal step
    for models that merge frames in time, as the paper counts Qwen2.5-VL's 7,040 = 32 x 220); at least 1."""
    return max(1, round(frames * tokens_per_frame))


@dataclass(frozen=True)
class SelectionConfig:
    """How visual tokens are scored and kept.

    Attributes:
        budget: visual tokens kept for the answer (the paper: 32 frames' worth, ~7k).
        layer: reference decoder layer L (0-based); None means the model's default.
        aggregation: how attention is reduced over heads and question tokens; None means the model's
            default (its calibrated one, else "max" as published).
        grouping: "contiguous" frame groups (streaming) or "interleaved" (the paper's strided groups).
        max_frames_per_group: frames scored together (the paper uses 64).
        budget_mode: "global" top-K over all scores, or an equal "per_group" share (the paper).
        budget_rounding: "exact" keeps `budget` tokens (a per-group remainder goes to the first groups);
            "frames" rounds the budget up to whole frames and gives each group the floor of budget/groups,
            as the authors' code does (a group smaller than its share keeps all its tokens).
        evidence_share: kept tokens scoring below this share of the best score are context, not evidence
            (they still reach the model, but are not reported as where the answer was seen).
        full_when_cheaper: with the training-free reference scorer, answer over every token (a full
            prefill, no evidence scores) when selection cannot pay (`flexselect.budget.selection_pays`);
            the answer says so in `AnswerResult.note`. Off by default: the agent wants evidence scores.
    """

    budget: int = 7040
    layer: int | None = None
    aggregation: Aggregation | None = None
    grouping: Grouping = "contiguous"
    max_frames_per_group: int = 64
    budget_mode: BudgetMode = "global"
    evidence_share: float = 0.1
    full_when_cheaper: bool = False
    budget_rounding: BudgetRounding = "exact"

    @classmethod
    def styled(cls, style: SelectionStyle, **fields: object) -> SelectionConfig:
        """The paper's selection for a whole video ("paper": interleaved groups `g + i*groups`, an equal
        top-K per group, budget rounded to whole frames) or the streaming one ("stream": contiguous groups,
        one global top-K, the exact budget), with `fields` set on top."""
        return cls(**{**SELECTION_STYLES[style], **fields})  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ValueError(f"budget must be at least 1 token, got {self.budget}")
        if self.layer is not None and self.layer < 0:
            raise ValueError(f"layer must be >= 0, got {self.layer}")
        if self.aggregation not in (None, "max", "mean"):
            raise ValueError(f"aggregation must be 'max' or 'mean', got {self.aggregation!r}")
        if self.grouping not in ("contiguous", "interleaved"):
            raise ValueError(f"grouping must be 'contiguous' or 'interleaved', got {self.grouping!r}")
        if not 0.0 <= self.evidence_share <= 1.0:
            raise ValueError(f"evidence_share must be in [0, 1], got {self.evidence_share}")
        if self.max_frames_per_group < 1:
            raise ValueError(f"max_frames_per_group must be >= 1, got {self.max_frames_per_group}")
        if self.budget_mode not in ("global", "per_group"):
            raise ValueError(f"budget_mode must be 'global' or 'per_group', got {self.budget_mode!r}")
        if self.budget_rounding not in ("exact", "frames"):
            raise ValueError(f"budget_rounding must be 'exact' or 'frames', got {self.budget_rounding!r}")


# What `SelectionConfig.styled` sets. A whole file follows the paper; a stream's memory cannot: its groups
# are scored as chunks arrive (contiguous), and an interleaved group would need frames not yet seen.
SELECTION_STYLES: dict[str, dict[str, str]] = {
    "paper": {"grouping": "interleaved", "budget_mode": "per_group", "budget_rounding": "frames"},
    "stream": {"grouping": "contiguous", "budget_mode": "global", "budget_rounding": "exact"},
}
