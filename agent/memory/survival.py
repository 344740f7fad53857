"""How much of a given set of tokens a memory still retains (the needle-survival measure)."""

from __future__ import annotations

import torch

from flexselect.types import VisualTokens


def _identity(tokens: VisualTokens) -> torch.Tensor:
    """(N, 6) int64 identity of each token: frame, grid (step, row, col), kind, token id."""
    return torch.cat(
        [
            tokens.frame.reshape(-1, 1),
            tokens.grid.to(torch.int64),
            tokens.kind.to(torch.int64).reshape(-1, 1),
            tokens.token_id.reshape(-1, 1),
        ],
        dim=1,
    )


def retained_fraction(retained: VisualTokens, wanted: VisualTokens) -> float:
    """Fraction of the tokens in `wanted` (e.g. a needle's tokens as appended) present in `retained`.

    Tokens are matched by (frame, grid step, row, col, kind, token id) with multiplicity, so repeated
    non-patch tokens of a frame count once per copy. Embeddings are not compared.

    Returns:
        A number in [0, 1]; 1.0 when `wanted` is empty.
    """
    if len(wanted) == 0:
        return 1.0
    if len(retained) == 0:
        return 0.0
    both = torch.cat([_identity(wanted), _identity(retained)])
    origin = torch.cat(
        [torch.zeros(len(wanted), dtype=torch.int64), torch.ones(len(retained), dtype=torch.int64)]
    )
    _, group = torch.unique(both, dim=0, return_inverse=True)
    groups = int(group.max()) + 1
    want = torch.bincount(group[origin == 0], minlength=groups)
    have = torch.bincount(group[origin == 1], minlength=groups)
    return float(torch.minimum(want, have).sum()) / len(wanted)
