"""`flexselect-agent synth`: generate synthetic videos with known needle events and questions."""

from __future__ import annotations

import argparse
import re

from cli.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `synth` command (with its `video` subcommand) to the CLI."""
    parser = subparsers.add_parser("synth", help="generate synthetic videos with known ground truth")
    sub = parser.add_subparsers(dest="synth_command", required=True, metavar="WHAT")
    video = sub.add_parser(
        "video",
        help="write an H.264 mp4 and its ground truth + questions as JSON beside it",
        description="Write a procedural video (textured background, grey distractors, coloured needle "
        "events) to OUT as H.264 mp4, and its ground truth and questions to OUT with a .json suffix.",
    )
    video.add_argument("--seconds", type=float, required=True, help="video length in seconds")
    video.add_argument("--fps", type=float, default=2.0, help="frames per second (default 2)")
    video.add_argument("--needles", type=int, default=4, help="number of needle events (default 4)")
    video.add_argument("--seed", type=int, default=0, help="random seed; same seed, same video (default 0)")
    video.add_argument("--out", required=True, help="output .mp4 path; the JSON goes beside it")
    video.add_argument("--size", default="224x224", help="frame size WxH (default 224x224)")
    video.add_argument("--cell", type=int, default=28, help="needle grid in pixels; 0 places needles freely")
    video.add_argument("--min-needle-seconds", type=float, default=0.0, help="shortest needle (>= 1 frame)")
    video.add_argument("--max-needle-seconds", type=float, default=3.0, help="longest needle (default 3)")
    video.add_argument("--distractors", type=int, default=3, help="grey distractors on screen at once")
    video.add_argument("--crf", type=int, default=18, help="x264 constant rate factor, 0..51 (default 18)")
    video.set_defaults(func=run_video)


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"--size must look like 224x224, got {text!r}")
    return int(match[1]), int(match[2])


def run_video(args: argparse.Namespace) -> int:
    """Generate one video and its ground truth; 0 on success."""
    from streams.synth.world import WorldConfig, generate_world
    from streams.synth.writer import truth_path, write_world

    width, height = parse_size(args.size)
    checks = [
        (args.seconds > 0, f"--seconds must be positive, got {args.seconds:g}"),
        (args.fps > 0, f"--fps must be positive, got {args.fps:g}"),
        (args.needles >= 0, f"--needles must be >= 0, got {args.needles}"),
        (args.seed >= 0, f"--seed must be >= 0, got {args.seed}"),
        (width > 0 and height > 0, f"--size must be positive, got {width}x{height}"),
        (args.cell >= 0, f"--cell must be >= 0, got {args.cell}"),
        (args.distractors >= 0, f"--distractors must be >= 0, got {args.distractors}"),
        (
            0 <= args.min_needle_seconds <= args.max_needle_seconds,
            "need 0 <= --min-needle-seconds <= --max-needle-seconds",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    if not str(args.out).lower().endswith(".mp4"):
        raise UsageError(f"--out must end with .mp4, got {args.out!r}")
    if not 0 <= args.crf <= 51:
        raise UsageError(f"--crf must be in 0..51, got {args.crf}")
    if width % 2 or height % 2:
        raise UsageError(f"--size must be even for H.264, got {width}x{height}")
    try:
        config = WorldConfig(
            seconds=args.seconds,
            fps=args.fps,
            width=width,
            height=height,
            needles=args.needles,
            seed=args.seed,
            cell=args.cell or None,
            min_needle_seconds=args.min_needle_seconds,
            max_needle_seconds=args.max_needle_seconds,
            distractors=args.distractors,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    truth = write_world(generate_world(config), args.out, crf=args.crf)
    print(
        f"wrote {args.out} ({truth.frame_count} frames, {width}x{height} at {config.fps:g} fps, "
        f"{len(truth.needles)} needles) and {truth_path(args.out)} ({len(truth.questions)} questions)"
    )
    return 0
