"""Visual tokens that carry the selector's input embeddings of the same rows beside the base model's."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from flexselect.types import VisualTokens


@dataclass
class PairedTokens(VisualTokens):
    """`VisualTokens` plus `lite` (N, d_selector): the selector's embeddings, row for row.

    Selecting or concatenating keeps both aligned, so budget selection, which slices the tokens it is
    given, hands a `LiteScorer` exactly the selector rows of the group it scores.
    """

    lite: torch.Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lite is None:
            raise ValueError("PairedTokens needs the selector embeddings `lite`")
        if self.lite.ndim != 2 or self.lite.shape[0] != len(self):
            raise ValueError(
                f"PairedTokens.lite has shape {tuple(self.lite.shape)}, expected ({len(self)}, d)"
            )

    @classmethod
    def pair(cls, tokens: VisualTokens, lite: torch.Tensor) -> PairedTokens:
        """Attach selector embeddings to base tokens."""
        values = {f.name: getattr(tokens, f.name) for f in fields(VisualTokens)}
        return cls(**values, lite=lite)

    def base(self) -> VisualTokens:
        """The base tokens alone."""
        return VisualTokens(**{f.name: getattr(self, f.name) for f in fields(VisualTokens)})

    def select(self, index: torch.Tensor) -> PairedTokens:
        assert self.lite is not None
        return PairedTokens.pair(super().select(index), self.lite[index.to(self.lite.device)])

    @staticmethod
    def concat(parts: list[VisualTokens]) -> PairedTokens:  # type: ignore[override]
        if not all(isinstance(p, PairedTokens) for p in parts):
            raise ValueError("PairedTokens.concat needs PairedTokens parts (with selector embeddings)")
        lite = torch.cat([p.lite for p in parts])  # type: ignore[misc]
        return PairedTokens.pair(VisualTokens.concat([p.base() for p in parts]), lite)  # type: ignore[union-attr]


def layout_of(tokens: VisualTokens) -> VisualTokens:
    """`tokens` without embeddings or deepstack: what the selector needs besides its own embeddings."""
    n = len(tokens)
    return VisualTokens(
        embeds=torch.empty(n, 0),
        frame=tokens.frame.cpu(),
        time=tokens.time.cpu(),
        grid=tokens.grid.cpu(),
        kind=tokens.kind.cpu(),
        token_id=tokens.token_id.cpu(),
        seconds_per_step=tokens.seconds_per_step,
    )
