"""A synthetic video world with known ground truth: needle videos, their questions, training clips.

Long procedural videos with needle events, questions about them, H.264 files through PyAV and a fast
in-memory sampler of short training clips.

Depends only on numpy and PyAV (never on agent, flexselect, transformers, redis or aiomqtt).
"""

from streams.synth.clips import Clip, ClipSampler, sample_clip
from streams.synth.questions import Question, ask, video_questions
from streams.synth.render import PALETTE, WorldRenderer, color_labels, render_frames, shape_mask
from streams.synth.truth import GroundTruth, ground_truth
from streams.synth.vocab import (
    ANSWERS,
    COLOR_NAMES,
    COLORS,
    COUNT_WORDS,
    QUADRANTS,
    QUESTION_KINDS,
    SHAPES,
    WHEN_WORDS,
    WORDS,
    question_text,
    words,
)
from streams.synth.world import Needle, World, WorldConfig, generate_world
from streams.synth.writer import read_mp4, truth_path, write_mp4, write_world

__all__ = [
    "ANSWERS",
    "COLORS",
    "COLOR_NAMES",
    "COUNT_WORDS",
    "PALETTE",
    "QUADRANTS",
    "QUESTION_KINDS",
    "SHAPES",
    "WHEN_WORDS",
    "WORDS",
    "Clip",
    "ClipSampler",
    "GroundTruth",
    "Needle",
    "Question",
    "World",
    "WorldConfig",
    "WorldRenderer",
    "ask",
    "color_labels",
    "generate_world",
    "ground_truth",
    "question_text",
    "read_mp4",
    "render_frames",
    "sample_clip",
    "shape_mask",
    "truth_path",
    "video_questions",
    "words",
    "write_mp4",
    "write_world",
]
