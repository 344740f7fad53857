"""`flexselect-agent selector`: train FlexSelect-Lite against a model's reference layer, and evaluate it."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.models import resolve_model
from cli.errors import UsageError
from lab.recipes import RECIPE_FILE

if TYPE_CHECKING:
    from flexselect.adapters import VideoLLMAdapter
    from lab.selector.data import ExampleSource

EVAL_CLIPS, EVAL_FRAMES = 200, 64


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `selector train` and `selector eval`."""
    parser = subparsers.add_parser("selector", help="train or evaluate a FlexSelect-Lite selector")
    sub = parser.add_subparsers(dest="selector_command", required=True, metavar="WHAT")
    tr = sub.add_parser(
        "train",
        help="train a selector to rank visual tokens like the model's reference layer",
        description="Score world clips (or annotated videos) with the model's training-free reference layer, "
        "then train a small selector with a soft Spearman rank loss. --out is a loadable selector directory "
        "after every epoch, with optimizer state for --resume.",
    )
    tr.add_argument(
        "--model", default="toy", help="base model: checkpoint directory, hub id or 'toy' (default)"
    )
    tr.add_argument("--out", type=Path, required=True, help="selector directory to write")
    tr.add_argument("--preset", default=None, help="selector shapes: toy (default), tiny or qwen2.5-0.5b")
    tr.add_argument("--clips", type=int, default=None, help="training world clips (default: the recipe's)")
    tr.add_argument("--heldout", type=int, default=None, help="held-out world clips (default: the recipe's)")
    tr.add_argument(
        "--frames", default=None, help="training clip lengths, comma-separated (default 16,32,64)"
    )
    tr.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    tr.add_argument("--batch-size", type=int, default=None, help="groups per step (default: the recipe's)")
    tr.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    tr.add_argument("--tau", type=float, default=None, help="soft-rank temperature (default: the recipe's)")
    tr.add_argument(
        "--loss", choices=("spearman", "l1", "both"), default="spearman", help="rank loss (default spearman)"
    )
    tr.add_argument(
        "--annotations", type=Path, default=None, help="LLaVA-Video-178K-style JSON instead of world clips"
    )
    tr.add_argument(
        "--video-root", type=Path, default=None, help="where relative annotation video paths start"
    )
    tr.add_argument("--annotation-frames", type=int, default=64, help="frames sampled per annotated video")
    tr.add_argument("--teacher-cache", type=Path, default=None, help="keep teacher scores here (safetensors)")
    tr.add_argument("--gradient-checkpointing", action="store_true", help="recompute layers in backward")
    tr.add_argument(
        "--freeze-projector", action="store_true", help="train the decoder only (the paper's Qwen setup)"
    )
    tr.add_argument("--minutes", type=float, default=None, help="stop (and checkpoint) after this much time")
    tr.add_argument(
        "--seed", type=int, default=None, help="seed of initialisation and data order (default 0)"
    )
    tr.add_argument("--resume", action="store_true", help="continue the run in --out with its saved recipe")
    tr.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    tr.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    tr.add_argument(
        "--card", action="store_true", help="then evaluate on unseen clips and write README.md and eval.json"
    )
    tr.set_defaults(func=run_train)
    ev = sub.add_parser(
        "eval",
        help="Spearman and top-K recall against the reference layer, and scoring time",
        description="Score held-out world clips (or annotated videos) with the reference layer and the "
        "selector; report mean Spearman, recall of the teacher's top-K, and ms per 1,000 scored tokens.",
    )
    ev.add_argument("--selector", required=True, help="selector directory, or 'toy' for the shipped one")
    ev.add_argument(
        "--model", default=None, help="base model (default: the one the selector was trained for)"
    )
    ev.add_argument("--n", type=int, default=EVAL_CLIPS, help=f"held-out groups (default {EVAL_CLIPS})")
    ev.add_argument(
        "--frames", type=int, default=EVAL_FRAMES, help=f"frames per held-out clip (default {EVAL_FRAMES})"
    )
    ev.add_argument(
        "--k",
        type=int,
        default=None,
        help="K of the top-K recall (default: one frame's tokens, as the paper's)",
    )
    ev.add_argument("--annotations", type=Path, default=None, help="evaluate on annotated videos instead")
    ev.add_argument(
        "--video-root", type=Path, default=None, help="where relative annotation video paths start"
    )
    ev.add_argument(
        "--timing-groups", type=int, default=20, help="groups timed for the cost figures (default 20)"
    )
    ev.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ev.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=run_eval)


def _load_model(name: str, device: str | None) -> VideoLLMAdapter:
    import torch

    from flexselect.adapters import AdapterError, load_adapter

    try:
        return load_adapter(
            resolve_model(name),
            dtype="float32",
            device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
        )
    except (AdapterError, OSError, ValueError) as exc:
        raise UsageError(f"cannot load model {name!r}: {str(exc).splitlines()[0]}") from exc


def _annotated(path: Path, video_root: Path | None, frames: int) -> ExampleSource:
    from lab.selector.data import AnnotatedVideos, read_annotations

    if not path.is_file():
        raise UsageError(f"annotation file not found: {path}")
    try:
        items = read_annotations(path, video_root=video_root)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not items:
        raise UsageError(f"{path} holds no questions")
    return AnnotatedVideos(tuple(items), frames=frames)


def _positive(args: argparse.Namespace, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")


def _recipe(args: argparse.Namespace) -> Any:
    from lab.selector.recipe import PRESETS, SelectorRecipe, saved_recipe

    if args.resume:
        if not (args.out / RECIPE_FILE).is_file():
            raise UsageError(f"nothing to resume in {args.out} (no {RECIPE_FILE})")
        return replace(
            saved_recipe(args.out), train=replace(saved_recipe(args.out).train, minutes=args.minutes)
        )
    recipe = SelectorRecipe()
    if args.preset is not None and args.preset not in PRESETS:
        raise UsageError(f"unknown --preset {args.preset!r}; choose from {', '.join(PRESETS)}")
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "tau": args.tau,
            "seed": args.seed,
        }.items()
        if v is not None
    }
    if args.lr is not None:
        changes["min_lr"] = min(recipe.train.min_lr, args.lr)
    if args.loss != "spearman":
        changes.update(l1_weight=1.0, spearman_weight=0.0 if args.loss == "l1" else 1.0)
    changes.update(
        minutes=args.minutes,
        gradient_checkpointing=args.gradient_checkpointing,
        train_projector=not args.freeze_projector,
    )
    top: dict[str, Any] = {"train": replace(recipe.train, **changes)}
    if args.preset is not None:
        top["preset"] = args.preset
    if args.clips is not None:
        top["train_clips"] = args.clips
    if args.heldout is not None:
        top["heldout_clips"] = args.heldout
    if args.frames is not None:
        try:
            top["lengths"] = tuple(int(x) for x in args.frames.split(",") if x.strip())
        except ValueError:
            raise UsageError(f"--frames must be comma-separated integers, got {args.frames!r}") from None
        if not top["lengths"] or min(top["lengths"]) < 4:
            raise UsageError(f"--frames needs clip lengths of at least 4 frames, got {args.frames!r}")
    return replace(recipe, **top)


def run_train(args: argparse.Namespace) -> int:
    """Train (or resume) a selector into --out."""
    import torch

    from lab.needle.calibration import natural_frame_side
    from lab.selector.recipe import train_selector

    _positive(
        args,
        ("clips", "heldout", "epochs", "batch_size", "lr", "tau", "minutes", "threads", "annotation_frames"),
    )
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.resume and any(getattr(args, n) is not None for n in ("preset", "clips", "epochs", "seed", "lr")):
        raise UsageError(
            "--resume continues the saved recipe; --preset, --clips, --epochs, --seed and --lr cannot "
            "change it"
        )
    recipe = _recipe(args)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    adapter = _load_model(args.model, args.device)
    source = (
        _annotated(args.annotations, args.video_root, args.annotation_frames) if args.annotations else None
    )
    if not args.resume:
        recipe = replace(recipe, size=natural_frame_side(adapter))
    started = time.perf_counter()
    state = train_selector(
        adapter,
        model_name=args.model,
        recipe=recipe,
        out=args.out,
        train_source=source,
        teacher_cache=args.teacher_cache,
        resume=args.resume,
        progress=not args.no_progress,
    )
    if args.card:
        _write_card(args, adapter, recipe, state, time.perf_counter() - started)
    last = state["history"][-1] if state["history"] else {}
    summary = " ".join(f"{k}={last[k]:.4f}" for k in ("spearman", "recall_at_k") if k in last)
    print(f"selector written to {args.out} after {state['step']} steps; held-out {summary}")
    return 0


def _write_card(
    args: argparse.Namespace, adapter: VideoLLMAdapter, recipe: Any, state: dict[str, Any], wall_s: float
) -> None:
    from flexselect.lite import LiteSelector
    from lab.selector.card import write_model_card
    from lab.selector.data import WorldClips
    from lab.selector.recipe import HELDOUT_SEED, evaluate_selector

    selector = LiteSelector.load(args.out, device=adapter.device)
    source = WorldClips(count=EVAL_CLIPS, seed=HELDOUT_SEED + 1, lengths=(EVAL_FRAMES,), size=recipe.size)
    results = evaluate_selector(adapter, selector, source=source, k=None, model_name=args.model)
    results["frames"] = EVAL_FRAMES
    write_model_card(
        args.out, recipe=recipe.to_dict(), history=state["history"], results=results, wall_s=wall_s
    )


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate a selector against its teacher; print text or JSON."""
    import torch

    from agent.selector import resolve_selector
    from flexselect.lite import LiteSelector, SelectorError, check_compatible
    from lab.needle.calibration import natural_frame_side
    from lab.selector.data import WorldClips
    from lab.selector.recipe import HELDOUT_SEED, evaluate_selector, fingerprint

    _positive(args, ("n", "frames", "k", "timing_groups", "threads"))
    if args.frames < 4:
        raise UsageError(f"--frames must be at least 4, got {args.frames}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    directory = resolve_selector(args.selector)
    try:
        selector = LiteSelector.load(directory)
    except SelectorError as exc:
        raise UsageError(str(exc)) from exc
    model = args.model or selector.config.base_model
    if model is None:
        raise UsageError(f"the selector in {directory} names no base model; pass --model")
    adapter = _load_model(model, args.device)
    try:
        check_compatible(selector, adapter)
    except SelectorError as exc:
        raise UsageError(str(exc)) from exc
    selector = selector.to(adapter.device)
    trained_on, now = selector.config.extra.get("base_weights"), fingerprint(model)
    if trained_on and now and trained_on != now:
        print(
            f"warning: the selector was trained against weights {trained_on} of {model!r}, which now has "
            f"{now}; retrain it (see its README.md)",
            file=sys.stderr,
        )
    if args.annotations:
        source = _annotated(args.annotations, args.video_root, args.frames)
    else:
        source = WorldClips(
            count=args.n, seed=HELDOUT_SEED + 1, lengths=(args.frames,), size=natural_frame_side(adapter)
        )
    result = evaluate_selector(
        adapter, selector, source=source, k=args.k, timing_groups=args.timing_groups, model_name=model
    )
    keys = ("spearman", "recall_at_k", "k", "n", "ms_per_1k_tokens", "teacher_ms_per_1k_tokens")
    if args.json:
        print(json.dumps({k: result[k] for k in keys}))
    else:
        print(
            f"spearman {result['spearman']:.4f}  recall@{result['k']} {result['recall_at_k']:.4f}  "
            f"over {result['n']} "
            f"groups of ~{result['tokens_per_group']} tokens (teacher: layer {result['layer']})\n"
            f"scoring: selector {result['ms_per_1k_tokens']:.2f} ms per 1k tokens, "
            f"reference layer {result['teacher_ms_per_1k_tokens']:.2f} ms per 1k tokens"
        )
    return 0
