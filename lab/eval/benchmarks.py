"""The benchmarks the harness runs: reader, prompt, subtitles, generation length and headline metric."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np

from lab.eval import longvideobench, lvbench, mlvu, videomme
from lab.eval.items import BadRecord, EvalItem

Loader = Callable[[Path], list[EvalItem | BadRecord]]
Prompter = Callable[[EvalItem, "list[str] | None"], str]
SubtitleSelector = Callable[[EvalItem, np.ndarray], list[str]]


@dataclass(frozen=True)
class Benchmark:
    """How to read, prompt and score one benchmark.

    Attributes:
        name: the CLI name.
        title: how tables name it.
        load: annotation directory -> items (and malformed records) in the release's order.
        prompt: item and shown subtitle lines (None: no subtitle variant) -> the text after the video.
        subtitles: picks the lines shown for the sampled frame times; None for variants without.
        max_new_tokens: the benchmark's generation length in the paper's eval.
        categories: the category keys reported, in table order.
        headline: "accuracy" (all items) or "m_avg" (mean of per-`macro_key` accuracies, MLVU's M-Avg).
        macro_key: the category averaged for "m_avg".
        macro_labels: every label of `macro_key` the mean is over; one without scored items counts 0, as
            in the paper's code and lmms-eval (the sum of accuracies is divided by all of them).
    """

    name: str
    title: str
    load: Loader
    prompt: Prompter
    subtitles: SubtitleSelector | None
    max_new_tokens: int
    categories: tuple[str, ...]
    headline: Literal["accuracy", "m_avg"] = "accuracy"
    macro_key: str | None = None
    macro_labels: tuple[str, ...] = ()


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "videomme",
            "VideoMME (w/o subtitles)",
            videomme.load,
            videomme.prompt,
            None,
            videomme.MAX_NEW_TOKENS,
            videomme.CATEGORIES,
        ),
        Benchmark(
            "videomme_sub",
            "VideoMME (w/ subtitles)",
            partial(videomme.load, subtitles=True),
            videomme.prompt,
            videomme.subtitle_lines,
            videomme.MAX_NEW_TOKENS,
            videomme.CATEGORIES,
        ),
        Benchmark(
            "mlvu",
            "MLVU dev (multiple choice)",
            mlvu.load,
            mlvu.prompt,
            None,
            mlvu.MAX_NEW_TOKENS,
            mlvu.CATEGORIES,
            headline="m_avg",
            macro_key="task_type",
            macro_labels=mlvu.TASKS,
        ),
        Benchmark(
            "longvideobench",
            "LongVideoBench val",
            longvideobench.load,
            longvideobench.prompt,
            None,
            longvideobench.MAX_NEW_TOKENS,
            longvideobench.CATEGORIES,
        ),
        Benchmark(
            "longvideobench_sub",
            "LongVideoBench val (w/ subtitles)",
            partial(longvideobench.load, subtitles=True),
            longvideobench.prompt,
            longvideobench.subtitle_lines,
            longvideobench.MAX_NEW_TOKENS,
            longvideobench.CATEGORIES,
        ),
        Benchmark(
            "lvbench",
            "LVBench",
            lvbench.load,
            lvbench.prompt,
            None,
            lvbench.MAX_NEW_TOKENS,
            lvbench.CATEGORIES,
        ),
    )
}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called `name` (a KeyError names the known ones)."""
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]
