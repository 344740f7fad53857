"""`flexselect-agent toy`: train the toy video LLM from scratch, and measure it on held-out data."""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.models import resolve_model
from cli.errors import UsageError
from lab.recipes import RECIPE_FILE

KINDS = ("color", "shape", "place", "count", "when")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `toy train` and `toy eval`."""
    parser = subparsers.add_parser("toy", help="train or evaluate the toy video LLM")
    sub = parser.add_subparsers(dest="toy_command", required=True, metavar="WHAT")
    train = sub.add_parser(
        "train",
        help="train the toy model from scratch (seeded, resumable)",
        description="Train a small Qwen2.5-VL from scratch on synthetic needle clips. The output directory "
        "is a loadable checkpoint at every save, with optimizer state and train_state.json for --resume.",
    )
    train.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    train.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the recipe's 5000)")
    train.add_argument(
        "--minutes", type=float, default=None, help="stop (and checkpoint) after this much time"
    )
    train.add_argument("--seed", type=int, default=None, help="seed of model init and data (default 1)")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --out with its saved recipe"
    )
    train.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: oversubscribed cores stall)"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    train.set_defaults(func=run_train)
    ev = sub.add_parser(
        "eval",
        help="accuracy per question kind on held-out clips and mp4 videos",
        description="Answer held-out in-memory clips and world videos written as mp4 (decoded with "
        "sample_uniform) through FlexSelectPipeline with all tokens; print accuracy per kind.",
    )
    ev.add_argument("--model", default="toy", help="checkpoint directory or 'toy' (default)")
    ev.add_argument("--clips", type=int, default=500, help="held-out clips (default 500)")
    ev.add_argument("--videos", type=int, default=100, help="held-out mp4 videos (default 100)")
    ev.add_argument("--frames", type=int, default=16, help="frames per clip and video (default 16)")
    ev.add_argument("--kinds", default=",".join(KINDS), help="question kinds (comma-separated)")
    ev.add_argument(
        "--keep-videos", type=Path, default=None, help="write the videos here instead of a tmp dir"
    )
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    """Train (or resume) into --out; 0 when the run ends."""
    import torch

    from lab.toy.recipe import ToyRecipe, saved_recipe, train_toy

    for name in ("steps", "minutes", "seed"):
        value = getattr(args, name)
        if value is not None and value <= 0 and not (name == "seed" and value == 0):
            raise UsageError(f"--{name} must be positive, got {value}")
    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    if args.resume:
        if not (args.out / RECIPE_FILE).is_file():
            raise UsageError(f"nothing to resume in {args.out} (no {RECIPE_FILE})")
        recipe = saved_recipe(args.out)
        if args.steps is not None or args.seed is not None:
            raise UsageError("--resume continues the saved recipe; --steps and --seed cannot change it")
    else:
        recipe = ToyRecipe()
    changes: dict[str, Any] = {"minutes": args.minutes}
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.seed is not None:
        changes["seed"] = args.seed
    recipe = replace(recipe, train=replace(recipe.train, **changes))
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    state = train_toy(args.out, recipe, resume=args.resume, progress=not args.no_progress)
    last = state["history"][-1] if state["history"] else {}
    print(
        f"trained to step {state['step']} in {state['elapsed_s'] / 60:.1f} min; held-out 16-frame accuracy "
        f"{last.get('acc16_all', float('nan')):.3f}; checkpoint in {args.out}"
    )
    return 0


def parse_kinds(text: str) -> tuple[str, ...]:
    """'color,place' -> ('color', 'place'), checked against the world's kinds."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown:
        raise UsageError(f"--kinds must be a comma-separated subset of {','.join(KINDS)}, got {text!r}")
    return kinds


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate a toy checkpoint on held-out clips and mp4 videos; print a table or JSON."""
    from flexselect.adapters import AdapterError, load_adapter
    from lab.toy.evaluate import clip_items, evaluate_clips, evaluate_videos, video_cases

    kinds = parse_kinds(args.kinds)
    if args.clips < 0 or args.videos < 0 or args.frames < 3:
        raise UsageError("--clips and --videos must be >= 0 and --frames >= 3")
    try:
        adapter = load_adapter(resolve_model(args.model), dtype="float32")
    except (AdapterError, OSError, ValueError) as exc:
        raise UsageError(f"cannot load model {args.model!r}: {str(exc).splitlines()[0]}") from exc
    side = int(adapter.processor.video_processor.size["longest_edge"] ** 0.5)
    items = [x for x in clip_items(adapter, n=args.clips, frames=args.frames) if x.kind in kinds]
    report: dict[str, Any] = {
        "model": args.model,
        "frames": args.frames,
        "clips": evaluate_clips(adapter, items),
    }
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep_videos or Path(tmp)
        cases = video_cases(directory, n=args.videos, frames=args.frames, size=side, kinds=kinds)
        report["videos"] = evaluate_videos(adapter, cases)
    print(json.dumps(report) if args.json else eval_table(report))
    return 0


def eval_table(report: dict[str, Any]) -> str:
    """Accuracy per kind for clips and videos, one row per kind."""
    lines = [f"{'kind':<8} {'clips':>14} {'mp4 videos':>14}"]
    kinds = sorted(set(report["clips"]["kinds"]) | set(report["videos"]["kinds"]))
    for kind in [*kinds, "all"]:
        cells = []
        for part in ("clips", "videos"):
            row = report[part] if kind == "all" else report[part]["kinds"].get(kind)
            cells.append(f"{row['accuracy']:.3f} (n={row['n']})" if row else "-")
        lines.append(f"{kind:<8} {cells[0]:>14} {cells[1]:>14}")
    return "\n".join(lines)
