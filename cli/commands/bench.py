"""`flexselect-agent bench needle`: accuracy and time per answering method on held-out needle videos."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from agent.models import resolve_model
from cli.errors import UsageError

DEFAULT_FRAMES = "16,64,256,1024"
BUDGET_FRAMES = 16  # the default budget: this many frames' worth of visual tokens
FALLBACK_KINDS = ("color", "place", "count")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `bench needle`."""
    parser = subparsers.add_parser("bench", help="benchmarks")
    sub = parser.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    p = sub.add_parser(
        "needle",
        help="needle-in-a-video accuracy per method against video length",
        description="Generate held-out seeded needle videos of each length (mp4, decoded like any file), "
        "ask one question each and answer with every method under the same token budget: all tokens, "
        "uniform frames, random tokens, FlexSelect's reference layer. Prints a table (or --json), and "
        "writes needle.json and needle.png to --out.",
    )
    p.add_argument("--model", default="toy", help="checkpoint directory, hub id or 'toy' (default)")
    p.add_argument(
        "--frames", default=DEFAULT_FRAMES, help=f"video lengths in frames (default {DEFAULT_FRAMES})"
    )
    p.add_argument(
        "--budget", type=int, default=None, help=f"visual tokens kept (default {BUDGET_FRAMES} frames' worth)"
    )
    p.add_argument("--n", type=int, default=100, help="videos (questions) per length (default 100)")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: every available one)")
    p.add_argument("--layer", type=int, default=None, help="reference layer (default: the model's)")
    p.add_argument(
        "--selector",
        default=None,
        help="FlexSelect-Lite selector directory for the lite method (default: the shipped one for 'toy')",
    )
    p.add_argument(
        "--kinds", default=None, help="question kinds (default: the model's, else color,place,count)"
    )
    p.add_argument(
        "--size", type=int, default=None, help="frame side of the videos in px (default: the model's)"
    )
    p.add_argument("--seed", type=int, default=None, help="world seed base (default: the benchmark's)")
    p.add_argument(
        "--out", type=Path, default=Path("bench-needle"), help="where needle.json and needle.png go"
    )
    p.add_argument(
        "--selections",
        default="paper,stream",
        help="selection styles of the scored methods, on the same videos (default paper,stream): paper = "
        "interleaved groups with an equal share each (what answer and eval use), stream = contiguous groups "
        "with one global top-K (what a stream's memory uses)",
    )
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--json", action="store_true", help='print {"results": [...]} instead of a table')
    p.set_defaults(func=run_needle)


def _frame_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--frames must be comma-separated integers, got {text!r}") from None
    if not counts or any(c < 4 for c in counts):
        raise UsageError(f"--frames needs lengths of at least 4 frames, got {text!r}")
    return counts


def _methods(text: str | None, unavailable: dict[str, str]) -> list[str]:
    """The methods to run: named ones (each must be runnable), else every runnable one."""
    from lab.needle.benchmark import METHODS

    if text is None:
        return [m for m in METHODS if m not in unavailable]
    names = [m.strip() for m in text.split(",") if m.strip()]
    for name in names:
        if name not in METHODS:
            raise UsageError(f"unknown method {name!r}; choose from {','.join(METHODS)}")
        if name in unavailable:
            raise UsageError(f"method {name!r} is not available: {unavailable[name]}")
    return names


def _selector(args: argparse.Namespace) -> tuple[Path | None, dict[str, str]]:
    """The lite method's selector directory, or None with the reason it cannot run."""
    from agent.selector import resolve_selector

    name = args.selector or ("toy" if args.model == "toy" else None)
    if name is None:
        return None, {"lite": "no --selector given (a FlexSelect-Lite selector trained for this model)"}
    directory = resolve_selector(name)
    if not (directory / "selector.json").is_file():
        return None, {"lite": f"no selector at {directory} (selector.json missing)"}
    return directory, {}


def _check_selector(directory: Path, adapter: Any) -> None:
    """Fail before the benchmark starts when the selector cannot serve this model."""
    from flexselect.lite import LiteSelector, SelectorError, check_compatible

    try:
        check_compatible(LiteSelector.load(directory), adapter)
    except (SelectorError, OSError, ValueError) as exc:
        raise UsageError(f"cannot use selector {directory}: {exc}") from exc


def run_needle(args: argparse.Namespace) -> int:
    """Run the benchmark and report it."""
    import torch

    from cli.commands.toy import parse_kinds
    from flexselect.adapters import AdapterError, load_adapter
    from lab.needle.benchmark import BENCH_SEED, needle_bench, tokens_per_frame
    from lab.needle.calibration import natural_frame_side
    from lab.needle.plots import plot_accuracy
    from lab.toy.card import shipped_kinds

    selector, unavailable = _selector(args)
    frame_counts, methods = _frame_counts(args.frames), _methods(args.methods, unavailable)
    if args.n < 1 or (args.budget is not None and args.budget < 1):
        raise UsageError("--n and --budget must be at least 1")
    selections = tuple(dict.fromkeys(s.strip() for s in args.selections.split(",") if s.strip()))
    if not selections or any(s not in ("paper", "stream") for s in selections):
        raise UsageError(f"--selections takes paper and/or stream, got {args.selections!r}")
    if args.size is not None and (args.size < 56 or args.size % 28):
        raise UsageError(f"--size must be a multiple of 28 and at least 56, got {args.size}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    path = resolve_model(args.model)
    try:
        adapter = load_adapter(path, device=device)
    except (AdapterError, OSError, ValueError) as exc:
        raise UsageError(f"cannot load model {args.model!r}: {str(exc).splitlines()[0]}") from exc
    if "lite" in methods and selector is not None:
        _check_selector(selector, adapter)
    layer = args.layer if args.layer is not None else adapter.default_layer()  # the calibrated one if set
    if not 0 <= layer < adapter.num_layers:
        raise UsageError(f"--layer must be in 0..{adapter.num_layers - 1}, got {layer}")
    kinds = parse_kinds(args.kinds) if args.kinds else (shipped_kinds(path) or FALLBACK_KINDS)
    size = args.size or natural_frame_side(adapter)
    per_frame = tokens_per_frame(adapter, size)
    budget = args.budget or round(BUDGET_FRAMES * per_frame)
    budget_frames = max(1, round(budget / per_frame))
    log = (lambda line: print(line, file=sys.stderr)) if not args.json else None
    with tempfile.TemporaryDirectory() as tmp:
        rows = needle_bench(
            adapter,
            frame_counts=frame_counts,
            n=args.n,
            budget=budget,
            budget_frames=budget_frames,
            layer=layer,
            kinds=kinds,
            methods=methods,
            videos=Path(tmp),
            size=size,
            seed=args.seed if args.seed is not None else BENCH_SEED,
            selector=selector,
            selections=selections,  # type: ignore[arg-type]
            progress=log,
        )
    report: dict[str, Any] = {
        "model": args.model,
        "budget": budget,
        "budget_frames": budget_frames,
        "layer": layer,
        "aggregation": adapter.default_aggregation(),
        "selector": None if selector is None or "lite" not in methods else str(selector),
        "kinds": list(kinds),
        "size": size,
        "results": rows,
        "omitted": unavailable,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "needle.json").write_text(json.dumps(report, indent=1) + "\n")
    title = f"{args.model}: needle accuracy, budget {budget} tokens ({budget_frames} frames), layer {layer}"
    plot_accuracy(args.out / "needle.png", rows, title)
    if args.json:
        keys = (
            "method",
            "selection",
            "frames",
            "budget",
            "budget_used",
            "accuracy",
            "evidence_first",
            "n",
            "seconds",
        )
        print(json.dumps({"results": [{k: r[k] for k in keys} for r in rows]}))
    else:
        print(table(report, args.out))
    return 0


def table(report: dict[str, Any], out: Path) -> str:
    """Accuracy, first evidence span on the needle (and seconds per question) per method and video length."""
    from lab.needle.plots import row_label

    rows = report["results"]
    frames = sorted({r["frames"] for r in rows})
    lines = [f"{'method':<19}" + "".join(f"{f:>24}" for f in frames)]
    for label in dict.fromkeys(row_label(r) for r in rows):
        cells = []
        for f in frames:
            r = next(x for x in rows if row_label(x) == label and x["frames"] == f)
            first = "-" if r["evidence_first"] is None else f"{r['evidence_first']:.3f}"
            cells.append(f"{r['accuracy']:.3f} {first:>5} {r['seconds']:.3f}s" if r["n"] else "did not fit")
        lines.append(f"{label:<19}" + "".join(f"{c:>24}" for c in cells))
    omitted = "; ".join(f"{k}: {v}" for k, v in report["omitted"].items())
    used = sorted({b for r in rows for b in r["budget_used"]})
    lines.append(
        f"accuracy, first evidence span on the asked needle, seconds per question; budget "
        f"{report['budget']} tokens (used after rounding to whole frames: {used or '-'}), layer "
        f"{report['layer']}, n={rows[0]['n'] if rows else 0} per length; omitted: {omitted or 'none'}"
    )
    lines.append(f"wrote {out / 'needle.json'} and {out / 'needle.png'}")
    return "\n".join(lines)
