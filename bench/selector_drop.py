"""How cached FlexSelect-Lite scores hold up when tokens are evicted from the cache.

A trained selector ingests world clips chunk by chunk into a `SelectorCache`. Then a fraction of the
tokens is dropped (at random, or the lowest-scored for a previous question: what a memory keeping the
most relevant tokens would evict) and the cached scores of the kept tokens are compared with a fresh
selector pass over the kept tokens in the same groups: Spearman correlation and recall of the fresh
pass's top-K. With nothing dropped the two agree to float precision (the max difference is printed).

    python bench/selector_drop.py [--selector toy] [--model toy] [--frames 128] [--n 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from agent.models import resolve_model
from agent.selector import resolve_selector
from flexselect.adapters import load_adapter
from flexselect.lite import LiteScorer, LiteSelector, SelectorCache, encode_pair
from flexselect.training.loss import spearman
from flexselect.training.metrics import recall_at_k
from lab.needle.calibration import natural_frame_side
from lab.selector.data import WorldClips

FRACTIONS = (0.0, 0.25, 0.5, 0.75)


def fresh_scores(selector: LiteSelector, prompt, cache: SelectorCache) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """A fresh selector pass over each group's kept tokens."""
    tokens = cache.tokens
    assert tokens is not None
    scorer = LiteScorer(selector)
    return torch.cat([scorer.score(prompt, tokens.select(g)) for g in cache.group_indices()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--selector", default="toy")
    parser.add_argument("--model", default=None, help="base model (default: the selector's)")
    parser.add_argument("--frames", type=int, default=128, help="frames per clip (default 128)")
    parser.add_argument("--chunk", type=int, default=8, help="frames per ingested chunk (default 8)")
    parser.add_argument("--group", type=int, default=64, help="frames per scoring group (default 64)")
    parser.add_argument("--n", type=int, default=20, help="clips (default 20)")
    parser.add_argument("--k", type=int, default=16, help="K of the top-K recall (default 16)")
    parser.add_argument("--seed", type=int, default=55_555)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    selector = LiteSelector.load(resolve_selector(args.selector))
    adapter = load_adapter(resolve_model(args.model or selector.config.base_model or "toy"), dtype="float32")
    clips = WorldClips(count=args.n, seed=args.seed, lengths=(args.frames,), size=natural_frame_side(adapter))
    results: dict[str, list[tuple[float, float]]] = {}
    max_diff = 0.0
    for i in range(args.n):
        ex = clips[i]
        tokens = encode_pair(selector, adapter, ex.frames, ex.times)
        prompt = adapter.prompt(ex.question)
        ids = torch.unique(tokens.frame)
        rng = np.random.default_rng([args.seed, i])
        for policy in ("random", "lowest"):
            for fraction in FRACTIONS:
                if fraction == 0.0 and policy == "lowest":
                    continue
                cache = SelectorCache(
                    selector, prompt.prefix_ids, max_group_tokens=10**9, max_group_frames=args.group
                )
                for start in range(0, len(ids), args.chunk):
                    cache.append(tokens.select(torch.isin(tokens.frame, ids[start : start + args.chunk])))
                n_drop = int(fraction * len(tokens))
                if policy == "random":
                    drop = torch.from_numpy(rng.permutation(len(tokens))[:n_drop])
                else:  # evict what a different question found least relevant
                    other = adapter.prompt(clips[(i + 1) % args.n].question)
                    drop = cache.score(other).cpu().argsort()[:n_drop]
                cache.drop(drop)
                cached, fresh = cache.score(prompt).cpu(), fresh_scores(selector, prompt, cache)
                if fraction == 0.0:
                    max_diff = max(max_diff, float((cached - fresh).abs().max()))
                key = f"{policy} {fraction:.2f}"
                results.setdefault(key, []).append(
                    (spearman(cached, fresh), recall_at_k(cached, fresh, args.k))
                )
    rows = [
        {
            "policy": key.split()[0],
            "dropped": float(key.split()[1]),
            "spearman": round(float(np.mean([r[0] for r in v])), 4),
            "recall_at_k": round(float(np.mean([r[1] for r in v])), 4),
        }
        for key, v in results.items()
    ]
    print(
        f"cached vs fresh selector scores after eviction; {args.n} clips of {args.frames} frames, K={args.k}"
    )
    print(f"no drop: max |cached - fresh| = {max_diff:.2e}")
    print(f"{'policy':>8} {'dropped':>8} {'spearman':>9} {'recall@K':>9}")
    for r in rows:
        print(f"{r['policy']:>8} {r['dropped']:>8.2f} {r['spearman']:>9.4f} {r['recall_at_k']:>9.4f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"max_diff_no_drop": max_diff, "k": args.k, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
