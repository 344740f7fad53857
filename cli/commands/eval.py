"""`flexselect-agent eval BENCHMARK`: the paper's long-video benchmarks, resumable; `eval compare A B`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.errors import UsageError
from lab.eval.benchmarks import BENCHMARKS, Benchmark

DESCRIPTION = (
    "Answer every question of a benchmark from its published annotation files and videos under --data, "
    "sampling frames and selecting tokens as the paper did per model (--preset, flags override), and "
    "report accuracy overall and per category. One JSON line per item goes to RESULTS/items.jsonl as "
    "soon as it is answered; rerunning with the same --out skips finished items. See docs/eval.md."
)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _run_arguments() -> argparse.ArgumentParser:
    """The flags every benchmark subcommand takes; None means "the preset's, else the default"."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data", required=True, type=Path, help="the benchmark's release directory")
    p.add_argument("--out", required=True, type=Path, help="results directory (created, or resumed)")
    p.add_argument("--preset", help="configs/presets/NAME.yaml or a .yaml path: the paper's model settings")
    p.add_argument("--model", help="hub id or checkpoint directory (default: the preset's)")
    p.add_argument("--scorer", choices=("none", "reference", "lite"), help="default: reference")
    p.add_argument("--selector", help="FlexSelect-Lite selector directory (for --scorer lite)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--frames", type=_positive, help="exactly N frames per video, uniformly spread")
    rate.add_argument("--fps", type=_positive_float, help="frames per second of video, up to --max-frames")
    p.add_argument("--max-frames", type=_positive, help="cap for --fps sampling")
    p.add_argument("--max-pixels", type=_positive, help="per-frame pixel cap (Qwen-VL processors)")
    p.add_argument("--budget", type=_positive, help="visual tokens kept (default: 32 frames' worth)")
    p.add_argument("--layer", type=int, help="reference layer (default: the model's)")
    p.add_argument("--aggregation", choices=("max", "mean"))
    p.add_argument("--grouping", choices=("contiguous", "interleaved"))
    p.add_argument("--budget-mode", choices=("global", "per_group"))
    p.add_argument("--max-frames-per-group", type=_positive)
    p.add_argument("--max-new-tokens", type=_positive, help="default: the benchmark's (1, MLVU 16)")
    p.add_argument(
        "--limit", type=_positive, help="answer only the first N questions (the summary covers all done)"
    )
    p.add_argument("--retry-errors", action="store_true", help="rerun items whose line is an error")
    p.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    p.add_argument("--dtype", help="auto, float32, bfloat16 or float16 (default auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `eval BENCHMARK ...` for every benchmark and `eval compare A B`."""
    parser = subparsers.add_parser("eval", help="benchmark accuracy (VideoMME, MLVU, ...); compare runs")
    sub = parser.add_subparsers(dest="eval_command", required=True, metavar="BENCHMARK")
    common = _run_arguments()
    for name, benchmark in BENCHMARKS.items():
        p = sub.add_parser(name, parents=[common], help=benchmark.title, description=DESCRIPTION)
        p.set_defaults(func=run, benchmark=name)
    c = sub.add_parser(
        "compare",
        help="two results directories side by side",
        description="Accuracy and mean time per item of two runs of one benchmark, overall and per "
        "category, on the items both answered, with the difference (B - A) and A's time over B's.",
    )
    c.add_argument("a", type=Path, help="results directory A (e.g. the base model)")
    c.add_argument("b", type=Path, help="results directory B (e.g. with FlexSelect)")
    c.set_defaults(func=run_compare)


def _settings(args: argparse.Namespace, benchmark: Benchmark) -> Any:
    from lab.eval.settings import PresetError, load_preset, resolve

    overrides = {
        key: getattr(args, key)
        for key in (
            "model",
            "scorer",
            "selector",
            "frames",
            "fps",
            "max_frames",
            "max_pixels",
            "max_new_tokens",
            "dtype",
            "budget",
            "layer",
            "aggregation",
            "grouping",
            "budget_mode",
            "max_frames_per_group",
        )
    }
    try:
        preset = load_preset(args.preset) if args.preset else None
        return resolve(
            benchmark=benchmark.name,
            preset=preset,
            preset_name=args.preset,
            overrides=overrides,
            default_max_new_tokens=benchmark.max_new_tokens,
        )
    except (PresetError, ValueError) as exc:
        raise UsageError(str(exc).splitlines()[0]) from None


def _items(args: argparse.Namespace, benchmark: Benchmark) -> list[Any]:
    from lab.eval.items import AnnotationError, unique_ids

    if not args.data.is_dir():
        raise UsageError(f"--data {args.data} is not a directory")
    try:
        items = benchmark.load(args.data)
    except (AnnotationError, OSError) as exc:
        raise UsageError(str(exc)) from None
    return unique_ids(items)


def run(args: argparse.Namespace) -> int:
    """Resolve settings, read the annotations, answer the pending items and print the summary table."""
    from lab.eval import runner
    from lab.eval.results import ResultsError, ResultStore
    from lab.eval.scorers import ScorerUnavailable, check_available
    from lab.eval.summary import format_summary

    benchmark = BENCHMARKS[args.benchmark]
    try:
        check_available(args.scorer or "reference")
    except ScorerUnavailable as exc:
        raise UsageError(str(exc)) from None
    settings = _settings(args, benchmark)
    items = _items(args, benchmark)
    try:
        store = ResultStore(args.out, settings)
    except (ResultsError, OSError) as exc:
        raise UsageError(str(exc)) from None
    selected = items[: args.limit] if args.limit else items
    todo = runner.pending(selected, store.records(), retry_errors=args.retry_errors)
    session = _session(settings, args.device) if todo else None
    summary = runner.run(
        benchmark,
        items,
        session,  # type: ignore[arg-type]  # None only when nothing is pending
        store,
        retry_errors=args.retry_errors,
        progress=not args.no_progress,
        limit=args.limit,
    )
    print(format_summary(summary))
    print(f"results: {args.out}")
    return 0


def _session(settings: Any, device: str | None) -> Any:
    from agent.models import resolve_model
    from flexselect.adapters import AdapterError
    from lab.eval.model import ModelSession
    from lab.eval.scorers import ScorerUnavailable

    try:
        resolved = settings.model_copy(update={"model": resolve_model(settings.model)})
        return ModelSession.load(resolved, device=device)
    except (AdapterError, ScorerUnavailable, OSError, ValueError) as exc:
        raise UsageError(f"cannot load model {settings.model!r}: {str(exc).splitlines()[0]}") from None


def run_compare(args: argparse.Namespace) -> int:
    """Print the side-by-side table of two results directories."""
    from lab.eval.compare import compare
    from lab.eval.results import ResultsError

    try:
        print(compare(args.a, args.b))
    except ResultsError as exc:
        raise UsageError(str(exc)) from None
    return 0
