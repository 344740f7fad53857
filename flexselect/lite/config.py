"""FlexSelect-Lite settings: the selector decoder's shapes, its projector and how it positions tokens."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from flexselect.config import Aggregation

FAMILIES = ("qwen2_5_vl", "qwen3_vl", "llava_onevision", "internvl")
MROPE_FAMILIES = ("qwen2_5_vl", "qwen3_vl")
ProjectorKind = Literal["merger", "mlp"]


@dataclass(frozen=True)
class DecoderShape:
    """A Qwen2-family decoder (Qwen2.5-0.5B by default; M-RoPE when `mrope_section` is set).

    Attributes:
        vocab_size: embedding rows; the selector reads the base model's token ids directly.
        hidden, layers, heads, kv_heads, intermediate: the usual transformer sizes.
        rope_theta: rotary base.
        mrope_section: rotary pairs for (time, height, width), summing to head_dim / 2; None for 1-D RoPE.
        max_positions: position range.
        rms_norm_eps: RMSNorm epsilon.
    """

    vocab_size: int = 151936
    hidden: int = 896
    layers: int = 24
    heads: int = 14
    kv_heads: int = 2
    intermediate: int = 4864
    rope_theta: float = 1e6
    mrope_section: tuple[int, int, int] | None = (8, 12, 12)
    max_positions: int = 32768
    rms_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        sizes = (self.vocab_size, self.hidden, self.layers, self.heads, self.kv_heads, self.intermediate)
        if min(sizes) < 1:
            raise ValueError(f"decoder sizes must be positive, got {self}")
        if self.layers < 2:
            raise ValueError(
                f"the selector scores at its last layer and needs >= 2 layers, got {self.layers}"
            )
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError(
                f"hidden {self.hidden} must split into {self.heads} heads, and heads into "
                f"{self.kv_heads} kv heads"
            )
        head_dim = self.hidden // self.heads
        if self.mrope_section is not None and 2 * sum(self.mrope_section) != head_dim:
            raise ValueError(f"mrope_section {self.mrope_section} must sum to head_dim / 2 = {head_dim // 2}")


@dataclass(frozen=True)
class ProjectorConfig:
    """The selector's own projector from the base vision tower's features to the selector width.

    Attributes:
        kind: "merger" (Qwen: per-row norm, then a 2-layer MLP over `rows` merged patch rows) or "mlp"
            (LLaVA / InternVL: optional LayerNorm, Linear, GELU, Linear).
        feature_dim: width of one token's vision feature (rows * vision hidden for mergers).
        rows: patch rows merged into one token (4 for a 2x2 merger, 1 otherwise).
        norm: "rms" (Qwen2.5-VL), "layer" (Qwen3-VL, InternVL) or "none" (LLaVA).
    """

    kind: ProjectorKind
    feature_dim: int
    rows: int = 1
    norm: Literal["rms", "layer", "none"] = "none"

    def __post_init__(self) -> None:
        if self.kind not in ("merger", "mlp"):
            raise ValueError(f"projector kind must be 'merger' or 'mlp', got {self.kind!r}")
        if self.rows < 1 or self.feature_dim % self.rows:
            raise ValueError(f"feature_dim {self.feature_dim} must split into {self.rows} rows")
        if self.norm not in ("rms", "layer", "none"):
            raise ValueError(f"projector norm must be 'rms', 'layer' or 'none', got {self.norm!r}")


@dataclass(frozen=True)
class SelectorConfig:
    """Everything that defines a FlexSelect-Lite selector besides its weights.

    Attributes:
        family: the base model family whose vision features the selector reads.
        decoder: the selector's decoder shapes.
        projector: the selector's projector from vision features.
        tokens_per_second: Qwen2.5-VL's temporal position step per second of video.
        aggregation: reduction over heads and question tokens at the last layer ("max" as published).
        base_model: the base checkpoint it was trained against (provenance only).
        teacher_layer: the base model's reference layer it imitates (provenance only).
    """

    family: str
    decoder: DecoderShape
    projector: ProjectorConfig
    tokens_per_second: float = 2.0
    aggregation: Aggregation = "max"
    base_model: str | None = None
    teacher_layer: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; expected one of {', '.join(FAMILIES)}")
        mrope = self.decoder.mrope_section is not None
        if mrope != (self.family in MROPE_FAMILIES):
            raise ValueError(
                f"family {self.family!r} needs {'M-RoPE (mrope_section)' if not mrope else '1-D RoPE'} in "
                f"the decoder, got mrope_section={self.decoder.mrope_section}"
            )
        if self.aggregation not in ("max", "mean"):
            raise ValueError(f"aggregation must be 'max' or 'mean', got {self.aggregation!r}")

    @property
    def mrope(self) -> bool:
        return self.decoder.mrope_section is not None

    def with_decoder(self, **changes: Any) -> SelectorConfig:
        """A copy with some decoder shapes changed."""
        return replace(self, decoder=replace(self.decoder, **changes))

    def card(self) -> dict[str, Any]:
        """The JSON saved beside config.json: everything except the decoder shapes."""
        return {
            "family": self.family,
            "projector": asdict(self.projector),
            "tokens_per_second": self.tokens_per_second,
            "aggregation": self.aggregation,
            "base_model": self.base_model,
            "teacher_layer": self.teacher_layer,
            "extra": self.extra,
        }

    @classmethod
    def from_card(cls, card: dict[str, Any], decoder: DecoderShape) -> SelectorConfig:
        """Inverse of `card` (with the decoder read from config.json)."""
        return cls(
            family=card["family"],
            decoder=decoder,
            projector=ProjectorConfig(**card["projector"]),
            tokens_per_second=float(card["tokens_per_second"]),
            aggregation=card["aggregation"],
            base_model=card.get("base_model"),
            teacher_layer=card.get("teacher_layer"),
            extra=dict(card.get("extra") or {}),
        )


QWEN2_5_0_5B = DecoderShape()  # 24 layers, 896 wide, 14 heads (2 kv), M-RoPE [8, 12, 12] as in the paper
QWEN2_5_0_5B_1D = replace(QWEN2_5_0_5B, mrope_section=None)
TINY = DecoderShape(
    vocab_size=268, hidden=32, layers=2, heads=4, kv_heads=2, intermediate=64, mrope_section=(1, 1, 2)
)
