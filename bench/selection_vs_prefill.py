"""Selection plus answer prefill against full-token prefill, at several frame counts.

    python bench/selection_vs_prefill.py [--model tiny|qwen2.5-vl-7b] [--frames 16,64,256,1024]
                                         [--repeats 3] [--out bench/results]

Frames are encoded once by the vision tower; then the time to the first answer token is measured for full
prefill of every visual token and for FlexSelect (reference-layer scoring in groups of 64 frames, global
top-K of 32 frames' worth, prefill of the kept tokens). The table gives both and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.answer_latency import build, time_answer
from bench.report import environment, plot, table, write_json


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("tiny", "qwen2.5-vl-7b"), default="tiny")
    parser.add_argument("--frames", default="16,64,256,1024")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    adapter, per_frame = build(args.model)
    side = 448 if args.model != "tiny" else 112
    budget = 32 * per_frame
    rows: list[dict[str, Any]] = []
    for n in (int(f) for f in args.frames.split(",")):
        frames = np.random.default_rng(n).integers(0, 256, (n, side, side, 3), dtype=np.uint8)
        tokens = adapter.encode(frames, np.arange(n, dtype=np.float64))
        row: dict[str, Any] = {"frames": n, "tokens": len(tokens)}
        for method in ("full", "reference"):
            runs = [time_answer(adapter, tokens, method, budget, 1) for _ in range(args.repeats + 1)][1:]
            if runs[0] is None:
                row[f"{method}_ms"] = None
                continue
            row[f"{method}_ms"] = statistics.median(
                r.get("select", 0.0) + r["build"] + r["prefill"] for r in runs if r is not None
            )
        if row.get("full_ms") and row.get("reference_ms"):
            row["speedup"] = row["full_ms"] / row["reference_ms"]
        rows.append(row)
    print(f"selection + prefill vs full prefill, {args.model}, budget {budget}; {environment()['device']}")
    print(table(rows, ["frames", "tokens", "full_ms", "reference_ms", "speedup"]))
    write_json(args.out / f"selection_vs_prefill_{args.model}.json", {"budget": budget, "rows": rows})
    plot(
        args.out / f"selection_vs_prefill_{args.model}.png",
        {
            m: (
                [r["frames"] for r in rows if r.get(f"{m}_ms")],
                [r[f"{m}_ms"] / 1e3 for r in rows if r.get(f"{m}_ms")],
            )
            for m in ("full", "reference")
        },
        xlabel="frames",
        ylabel="time to first token (s)",
        title="FlexSelect against full prefill",
    )


if __name__ == "__main__":
    main()
