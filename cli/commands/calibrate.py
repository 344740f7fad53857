"""`flexselect-agent calibrate-layer`: pick a reference layer with the paper's needle Recall@K sweep."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from agent.models import resolve_model
from cli.errors import UsageError

if TYPE_CHECKING:
    from flexselect.config import Aggregation
    from lab.needle.calibration import Calibration

DEFAULT_KINDS = ("color", "shape", "place")
# Needles per world video: the question is about one (or, for count, some) of them, so a layer scores
# well only by attending where the question points, not merely to whatever is salient.
NEEDLES = (2, 4)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `calibrate-layer` subcommand."""
    p = subparsers.add_parser(
        "calibrate-layer",
        help="per-layer needle recall of question->visual attention; picks the reference layer",
        description="For needle videos (generated from the synthetic world, or your own mp4 files with "
        "ground truth JSON beside them in the world's format), score every visual token at every decoder "
        "layer as FlexSelect does and report, per layer, the fraction of the top-K tokens (K = one "
        "frame's tokens) that lie on the needle's frames (the paper's Recall@K), the same with K = the "
        "needle's own tokens (recall@needle: these needles are objects, not whole frames), the top-1 hit "
        "rate and the score mass on the needle. The layer with the best recall@needle is chosen.",
    )
    p.add_argument("--model", required=True, help="hub id, local checkpoint directory, or 'toy'")
    p.add_argument("--videos", type=Path, nargs="*", default=None, help="your needle videos (mp4 + .json)")
    p.add_argument("--count", type=int, default=64, help="world needle videos to generate (default 64)")
    p.add_argument("--frames", type=int, default=32, help="frames per world video, or sampled per file")
    p.add_argument("--size", type=int, default=None, help="world frame side in px (default: the model's)")
    p.add_argument(
        "--kinds", default=None, help="question kinds asked (default: the model's, else color,shape,place)"
    )
    p.add_argument("--seed", type=int, default=500_000, help="world seed of the first video")
    p.add_argument(
        "--aggregation",
        choices=("max", "mean", "both"),
        default="both",
        help="reduction over heads and question tokens; both (default) sweeps each and keeps the better",
    )
    p.add_argument("--out", type=Path, default=Path("calibration"), help="where the JSON and PNG go")
    p.add_argument(
        "--set-default",
        action="store_true",
        help="store the layer in config.json (flexselect_reference_layer)",
    )
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate or read needle videos, sweep the layers, print, plot and optionally set the default."""
    import torch

    from cli.commands.toy import parse_kinds
    from flexselect.adapters import AdapterError, load_adapter
    from lab.needle.calibration import calibrate, natural_frame_side
    from lab.needle.plots import plot_calibration
    from lab.needle.videos import WorldVideos, user_cases, write_cases
    from lab.toy.card import set_reference_layer, shipped_kinds

    if args.count < 1 or args.frames < 2:
        raise UsageError(f"need --count >= 1 and --frames >= 2, got {args.count} and {args.frames}")
    if args.size is not None and (args.size < 56 or args.size % 28):
        raise UsageError(f"--size must be a multiple of 28 and at least 56, got {args.size}")
    path = resolve_model(args.model)
    if args.set_default and not (Path(path) / "config.json").is_file():
        raise UsageError(f"--set-default needs a local checkpoint directory, got {args.model!r}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        adapter = load_adapter(path, device=device)
    except (AdapterError, OSError, ValueError) as exc:
        raise UsageError(f"cannot load model {args.model!r}: {str(exc).splitlines()[0]}") from exc
    kinds = parse_kinds(args.kinds) if args.kinds else (shipped_kinds(path) or DEFAULT_KINDS)
    with tempfile.TemporaryDirectory() as tmp:
        if args.videos:
            try:
                cases = user_cases(args.videos, kinds)
            except FileNotFoundError as exc:
                raise UsageError(str(exc)) from exc
            frames = args.frames
        else:
            side = args.size or natural_frame_side(adapter)
            spec = WorldVideos(frames=args.frames, size=side, needles=NEEDLES, max_needle_frames=1)
            cases = write_cases(Path(tmp), spec, count=args.count, seed=args.seed, kinds=kinds)
            frames = None
        if not cases:
            raise UsageError(f"no questions of kinds {','.join(kinds)} in the given videos")
        aggregations: tuple[Aggregation, ...] = (
            ("max", "mean") if args.aggregation == "both" else (args.aggregation,)
        )
        try:
            results = {a: calibrate(adapter, cases, frames=frames, aggregation=a) for a in aggregations}
        except (AdapterError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
    aggregation = choose_aggregation(results)
    result = results[aggregation]
    report = {
        "model": args.model,
        "layers": adapter.num_layers,
        "aggregation": aggregation,
        **result.to_dict(),
        "by_aggregation": {a: r.to_dict() for a, r in results.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps(report, indent=1) + "\n")
    title = f"{args.model}: needle recall per decoder layer, {aggregation} ({result.samples} videos)"
    curves = {
        f"recall@{result.k} (needle frames)": result.recall,
        "recall@|needle| (needle tokens)": result.recall_needle,
        "top-1 hit": result.top1,
        "needle score mass": result.mass,
    }
    plot_calibration(args.out / "calibration.png", curves, result.chosen, title, chance=result.chance)
    if args.set_default:
        set_reference_layer(path, result.chosen, aggregation=aggregation)
    print(json.dumps(report) if args.json else table(results, aggregation, args.out))
    return 0


def choose_aggregation(results: dict[Aggregation, Calibration]) -> Aggregation:
    """The aggregation whose chosen layer scores best, by the same keys that choose a layer."""

    def key(a: Aggregation) -> tuple[float, float, float]:
        r = results[a]
        i = r.chosen
        return (round(r.recall_needle[i], 4), round(r.top1[i], 4), r.mass[i])

    return max(results, key=key)  # ties keep the first, "max" (the published default)


def table(results: dict[Aggregation, Calibration], chosen: Aggregation, out: Path) -> str:
    """Per-layer rows of each aggregation with the chosen layer marked."""
    lines: list[str] = []
    for aggregation, result in results.items():
        k = "recall@" + str(result.k)
        lines.append(f"{aggregation:>5} {'layer':>5} {k:>10} {'recall@needle':>14} {'top-1':>7} {'mass':>7}")
        rows = zip(result.recall, result.recall_needle, result.top1, result.mass, strict=True)
        for i, (r, rn, t, m) in enumerate(rows):
            mark = "  <- chosen" if aggregation == chosen and i == result.chosen else ""
            lines.append(f"{'':>5} {i:>5} {r:>10.3f} {rn:>14.3f} {t:>7.3f} {m:>7.3f}{mark}")
    result = results[chosen]
    lines.append(
        f"chance {result.chance:.3f}; {result.samples} needle videos ({result.skipped} skipped); "
        f"wrote {out / 'calibration.json'} and {out / 'calibration.png'}"
    )
    return "\n".join(lines)
