"""Query-time cost of cached FlexSelect-Lite scoring against a fresh selector pass over the same tokens.

For 4k, 16k and 64k cached visual tokens (scored in groups of --group tokens, like the paper's 64-frame
groups), it measures:

- ingest: the one-time, question-independent work (`SelectorCache.append` of 4k-token chunks);
- fresh: a full selector pass over every group with the question (what `LiteScorer` does per question);
- query: the question's tokens alone against the cache (`SelectorCache.score`);

and prints the fresh / query ratio. Weights are random (speed does not depend on their values).

On this CPU the default is a small selector (`--preset cpu`: 128 wide, 2 layers). On a GPU run
`--preset qwen2.5-0.5b --device cuda --dtype bfloat16`: the paper's selector shapes (24 layers, 896 wide),
where the anchors predict about 70 ms for a 32-token question against a 131k-token cache.

    python bench/selector_cost.py [--sizes 4096,16384,65536] [--preset cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

from flexselect.lite import QWEN2_5_0_5B, DecoderShape, LiteScorer, LiteSelector, PairedTokens
from flexselect.lite.cache import SelectorCache
from flexselect.lite.config import ProjectorConfig, SelectorConfig
from flexselect.timing import stopwatch
from flexselect.types import Prompt, TokenKind, VisualTokens

PRESETS = {
    "cpu": DecoderShape(
        vocab_size=1024, hidden=128, layers=2, heads=4, kv_heads=2, intermediate=384, mrope_section=(4, 6, 6)
    ),
    "tiny": DecoderShape(
        vocab_size=1024, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=192, mrope_section=(2, 3, 3)
    ),
    "qwen2.5-0.5b": QWEN2_5_0_5B,
}
PER_STEP = 256  # tokens per temporal step (a 448x448 Qwen2.5-VL frame pair)


def synthetic_tokens(n: int, width: int, device: torch.device, dtype: torch.dtype) -> PairedTokens:
    """`n` visual tokens laid out as Qwen2.5-VL steps of 16x16 tokens, with random selector embeddings."""
    index = torch.arange(n)
    step, cell = index // PER_STEP, index % PER_STEP
    grid = torch.stack([step, cell // 16, cell % 16], dim=1)
    base = VisualTokens(
        embeds=torch.empty(n, 0),
        frame=2 * step,
        time=step.double(),
        grid=grid,
        kind=torch.full((n,), int(TokenKind.PATCH), dtype=torch.int8),
        token_id=torch.zeros(n, dtype=torch.long),
        seconds_per_step=1.0,
    )
    return PairedTokens.pair(base, torch.randn(n, width, device=device, dtype=dtype))


def timed(fn, device: torch.device, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median milliseconds of `fn()` over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        with stopwatch(device) as took:
            fn()
        times.append(took.ms)
    return statistics.median(times)


def measure(selector: LiteSelector, n: int, args: argparse.Namespace) -> dict[str, float]:
    device, dtype = selector.device, selector.dtype
    tokens = synthetic_tokens(n, selector.config.decoder.hidden, device, dtype)
    prompt = Prompt(prefix_ids=torch.arange(1, 15), suffix_ids=torch.arange(20, 20 + args.question))
    frames_per_group = args.group // PER_STEP

    def ingest() -> SelectorCache:
        cache = SelectorCache(
            selector, prompt.prefix_ids, max_group_tokens=args.group, max_group_frames=frames_per_group
        )
        for i in range(0, n, args.chunk):
            cache.append(tokens.select(torch.arange(i, min(n, i + args.chunk))))
        return cache

    ingest_ms = timed(ingest, device, 1)  # one warm-up build, then one timed build
    cache = ingest()
    groups = cache.group_indices()
    scorer = LiteScorer(selector)
    fresh = timed(lambda: [scorer.score(prompt, tokens.select(g)) for g in groups], device, args.repeats)
    query = timed(lambda: cache.score(prompt), device, args.repeats)
    return {
        "tokens": n,
        "groups": len(groups),
        "ingest_ms": round(ingest_ms, 2),
        "fresh_ms": round(fresh, 2),
        "query_ms": round(query, 2),
        "ratio": round(fresh / query, 1),
        "cache_mib": round(cache.nbytes() / 2**20, 1),
    }


def table(rows: list[dict[str, float]]) -> str:
    """The printed table: one line per cache size."""
    head = ("tokens", "groups", "ingest ms", "fresh ms", "query ms", "fresh/query", "cache MiB")
    lines = ["".join(f"{h:>12}" for h in head)]
    for r in rows:
        cells = (
            r["tokens"],
            r["groups"],
            r["ingest_ms"],
            r["fresh_ms"],
            r["query_ms"],
            f"{r['ratio']}x",
            r["cache_mib"],
        )
        lines.append("".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="4096,16384,65536", help="cached tokens (comma-separated)")
    parser.add_argument("--preset", choices=tuple(PRESETS), default="cpu")
    parser.add_argument("--group", type=int, default=16384, help="tokens per scoring group (default 16384)")
    parser.add_argument("--chunk", type=int, default=4096, help="tokens per ingested chunk (default 4096)")
    parser.add_argument("--question", type=int, default=32, help="question tokens (default 32)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: shared cores stall)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    shape = PRESETS[args.preset]
    config = SelectorConfig(
        family="qwen2_5_vl", decoder=shape, projector=ProjectorConfig(kind="mlp", feature_dim=8)
    )
    selector = LiteSelector(config).to(device=device, dtype=dtype).eval()
    rows = [measure(selector, int(n), args) for n in args.sizes.split(",")]
    print(
        f"FlexSelect-Lite cached scoring, preset {args.preset} ({shape.layers} layers, {shape.hidden} wide, "
        f"{shape.heads} heads), {args.device} {args.dtype}, groups of {args.group} tokens, "
        f"{args.question}-token question"
    )
    print(table(rows))
    if device.type == "cpu":
        print(
            "on a GPU, run with --preset qwen2.5-0.5b --device cuda --dtype bfloat16 to measure the paper's "
            "0.5B selector shapes (the anchors: ~70 ms per 32-token question over a 131k-token cache)",
            file=sys.stderr,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"preset": args.preset, "device": args.device, "dtype": args.dtype, "rows": rows}, f, indent=1
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
