"""`flexselect-agent answer`: one question about one recording, answered over FlexSelect's selection."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.models import resolve_model
from cli.errors import UsageError

if TYPE_CHECKING:  # the model stack is imported when the command runs, not when the CLI starts
    from flexselect.adapters import VideoLLMAdapter
    from flexselect.config import SelectionConfig
    from flexselect.lite import LiteScorer
    from flexselect.pipeline import AnswerResult

DEFAULT_FRAMES = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `answer` subcommand."""
    p = subparsers.add_parser("answer", help="answer one question about a video file")
    p.add_argument("--model", required=True, help="hub id, local checkpoint directory, or 'toy'")
    p.add_argument("--video", required=True, type=Path, help="video file to answer about")
    p.add_argument("--question", required=True, help="the question (never truncated)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--frames", type=int, help=f"frames sampled uniformly (default {DEFAULT_FRAMES})")
    rate.add_argument("--fps", type=float, help="frames sampled per second of video instead of --frames")
    p.add_argument("--budget", type=int, default=None, help="visual tokens kept (default: 32 frames' worth)")
    p.add_argument(
        "--scorer",
        choices=("reference", "lite", "none"),
        default="reference",
        help="reference: the model's own layer (training-free); lite: a trained FlexSelect-Lite selector; "
        "none: every token",
    )
    p.add_argument(
        "--selector", default=None, help="selector directory for --scorer lite (default: the toy's)"
    )
    p.add_argument("--layer", type=int, default=None, help="reference layer (default: the model's)")
    p.add_argument(
        "--aggregation", choices=("max", "mean"), default=None, help="(default: the model's, else max)"
    )
    p.add_argument(
        "--selection",
        choices=("paper", "stream"),
        default="paper",
        help="paper (default): interleaved frame groups with an equal top-K each, budget rounded up to whole "
        "frames, as the authors select over a whole video; stream: contiguous groups and one global top-K, "
        "as the agent selects over a stream's memory",
    )
    p.add_argument(
        "--grouping",
        choices=("contiguous", "interleaved"),
        default=None,
        help="override the selection's grouping",
    )
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    if args.budget is not None and args.budget < 1:
        raise UsageError(f"--budget must be at least 1 token, got {args.budget}")
    if args.frames is not None and args.frames < 1:
        raise UsageError(f"--frames must be at least 1, got {args.frames}")
    if args.fps is not None and args.fps <= 0:
        raise UsageError(f"--fps must be positive, got {args.fps}")
    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if not args.question.strip():
        raise UsageError("--question is empty")
    if args.selector is not None and args.scorer != "lite":
        raise UsageError("--selector is only used with --scorer lite")
    if not args.video.is_file():
        raise UsageError(f"video file not found: {args.video}")


def _load(args: argparse.Namespace) -> VideoLLMAdapter:
    import torch

    from flexselect.adapters import AdapterError, load_adapter

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype: Any = args.dtype if args.dtype == "auto" else getattr(torch, args.dtype, None)
    if dtype is None:
        raise UsageError(f"unknown --dtype {args.dtype!r}")
    try:
        return load_adapter(resolve_model(args.model), dtype=dtype, device=device)
    except (AdapterError, OSError, ValueError) as exc:
        raise UsageError(f"cannot load model {args.model!r}: {str(exc).splitlines()[0]}") from exc


def _lite_scorer(args: argparse.Namespace, adapter: VideoLLMAdapter) -> LiteScorer:
    from agent.selector import load_selector_for
    from flexselect.lite import LiteScorer, SelectorError

    try:
        return LiteScorer(load_selector_for(args.selector, args.model, adapter))
    except (SelectorError, OSError, ValueError) as exc:
        what = f"cannot use selector {args.selector!r}: " if args.selector is not None else ""
        raise UsageError(what + str(exc).splitlines()[0]) from exc


def _decode(args: argparse.Namespace) -> tuple[Any, Any, float]:
    from streams.errors import StreamError
    from streams.sampling import probe, sample_uniform

    start = time.perf_counter()
    try:
        n = args.frames or DEFAULT_FRAMES
        if args.fps is not None:
            n = max(1, round(probe(args.video).duration_s * args.fps))
        clip = sample_uniform(args.video, n)
    except StreamError as exc:
        raise UsageError(f"cannot read video {args.video}: {exc}") from exc
    return clip.frames, clip.times, (time.perf_counter() - start) * 1e3


def run(args: argparse.Namespace) -> int:
    """Decode, encode, select and answer; print the answer (text or JSON)."""
    from flexselect.adapters import AdapterError
    from flexselect.budget import Scorer
    from flexselect.config import SelectionConfig
    from flexselect.lite import encode_pair
    from flexselect.pipeline import FlexSelectPipeline
    from flexselect.ranking import ReferenceScorer

    _check_args(args)
    frames, times, decode_ms = _decode(args)
    adapter = _load(args)
    lite = _lite_scorer(args, adapter) if args.scorer == "lite" else None
    try:
        start = time.perf_counter()
        if lite is not None:  # the vision tower runs once for both models
            tokens = encode_pair(lite.selector, adapter, frames, times)
        else:
            tokens = adapter.encode(frames, times)
        encode_ms = (time.perf_counter() - start) * 1e3
        budget = args.budget or default_budget(len(tokens), len(tokens.frame_ids()))
        grouping = {"grouping": args.grouping} if args.grouping else {}
        config = SelectionConfig.styled(
            args.selection, budget=budget, layer=args.layer, aggregation=args.aggregation, **grouping
        )
        scorer: Scorer | None = lite
        if args.scorer == "reference":
            scorer = ReferenceScorer(adapter, layer=args.layer, aggregation=args.aggregation)
        pipeline = FlexSelectPipeline(adapter, scorer, config, max_new_tokens=args.max_new_tokens)
        result = pipeline.answer_tokens(tokens, args.question)
    except (AdapterError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    result.timings_ms = {"decode": decode_ms, "encode": encode_ms, **result.timings_ms}
    used = budget_report(budget, result, config)
    print(json.dumps(to_json(result, used)) if args.json else to_text(result, used))
    return 0


def budget_report(requested: int, result: AnswerResult, config: SelectionConfig) -> dict[str, Any]:
    """Which budget the answer used: the one asked for, the one selection aimed for after rounding (None
    without a scorer), each group's share with a per-group budget, and the selection's settings."""
    selection = result.selection
    return {
        "requested": requested,
        "used": None if selection is None else selection.budget,
        "per_group": None if selection is None else selection.per_group,
        "groups": None if selection is None else len(selection.groups),
        "grouping": config.grouping,
        "mode": config.budget_mode,
        "rounding": config.budget_rounding,
    }


def default_budget(total_tokens: int, frames: int) -> int:
    """The paper's budget: 32 frames' worth of this model's visual tokens (a frame being a temporal step
    for models that merge frames in time, as the paper counts Qwen2.5-VL's 7,040 = 32 x 220)."""
    return max(1, round(32 * total_tokens / frames))


def to_json(result: AnswerResult, budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `--json` object: answer, token counts, the budget used, evidence spans (seconds, best first,
    each with its score) and timings."""
    return {
        "answer": result.answer,
        "total_tokens": result.total_tokens,
        "kept_tokens": result.kept_tokens,
        "budget": budget,
        "evidence": [
            {"start": round(s.start, 3), "end": round(s.end, 3), "tokens": s.tokens, "score": s.score}
            for s in result.evidence
        ],
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
    }


def to_text(result: AnswerResult, budget: dict[str, Any] | None = None) -> str:
    """A short human-readable report; evidence best first, each span with its score."""
    spans = ", ".join(f"{s.start:.1f}-{s.end:.1f}s ({s.score:.3g})" for s in result.evidence[:8])
    more = "" if len(result.evidence) <= 8 else f" (+{len(result.evidence) - 8} more)"
    timings = " ".join(f"{k}={v:.0f}ms" for k, v in result.timings_ms.items())
    used = ""
    if budget is not None:
        share = f", {budget['per_group']} per group" if budget["per_group"] is not None else ""
        used = f" (budget {budget['requested']}, used {budget['used']}{share}, {budget['grouping']} groups)"
    return (
        f"{result.answer}\n"
        f"kept {result.kept_tokens} of {result.total_tokens} visual tokens{used}; evidence, best first: "
        f"{spans}{more}\n"
        f"{timings}"
    )
