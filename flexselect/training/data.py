"""Teacher data: a scored group (the selector's inputs and the reference layer's scores), kept on disk.

A `TeacherSample` stores the base vision tower's per-token features (not pixels, not projected embeddings),
so the selector's projector stays trainable while the base model is never run again. Samples are written
to safetensors shards in a directory (no pickle), so an expensive teacher is paid for once.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from flexselect.adapters.base import VideoLLMAdapter
from flexselect.budget import Scorer
from flexselect.lite.tokens import layout_of
from flexselect.lite.vision import encode_with_features
from flexselect.types import Prompt, VisualTokens

INDEX_FILE = "index.json"
FIELDS = ("features", "frame", "time", "grid", "kind", "token_id", "prefix_ids", "suffix_ids", "teacher")


@dataclass
class TeacherSample:
    """One group to rank: vision features of its patch rows, its layout, its prompt and the teacher's scores.

    Attributes:
        features: (n_patch, feature_dim) base vision features of the PATCH rows, in order.
        layout: the group's `VisualTokens` metadata (embeds has width 0).
        prefix_ids, suffix_ids: the prompt around the span (suffix = the question).
        teacher: (N,) float32 reference-layer scores of every row.
    """

    features: torch.Tensor
    layout: VisualTokens
    prefix_ids: torch.Tensor
    suffix_ids: torch.Tensor
    teacher: torch.Tensor

    @property
    def prompt(self) -> Prompt:
        return Prompt(prefix_ids=self.prefix_ids, suffix_ids=self.suffix_ids)

    def __len__(self) -> int:
        return len(self.layout)


def teacher_sample(
    adapter: VideoLLMAdapter,
    teacher: Scorer,
    frames: np.ndarray,
    times: np.ndarray,
    question: str,
    *,
    feature_dtype: torch.dtype = torch.float16,
) -> TeacherSample:
    """Encode a clip once and score it with the teacher (the base model's reference layer)."""
    tokens, features = encode_with_features(adapter, frames, times)
    prompt = adapter.prompt(question)
    scores = teacher.score(prompt, tokens).float().cpu()
    return TeacherSample(
        features=features.to("cpu", feature_dtype),
        layout=layout_of(tokens),
        prefix_ids=prompt.prefix_ids.cpu(),
        suffix_ids=prompt.suffix_ids.cpu(),
        teacher=scores,
    )


def _tensors(sample: TeacherSample, i: int) -> dict[str, torch.Tensor]:
    lay = sample.layout
    values = {
        "features": sample.features,
        "frame": lay.frame,
        "time": lay.time,
        "grid": lay.grid,
        "kind": lay.kind,
        "token_id": lay.token_id,
        "prefix_ids": sample.prefix_ids,
        "suffix_ids": sample.suffix_ids,
        "teacher": sample.teacher,
    }
    return {f"{i}.{k}": v.contiguous() for k, v in values.items()}


def save_shard(path: Path, samples: list[TeacherSample]) -> None:
    """Write samples to one safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    for i, s in enumerate(samples):
        tensors.update(_tensors(s, i))
    steps = json.dumps([s.layout.seconds_per_step for s in samples])
    save_file(tensors, path, metadata={"count": str(len(samples)), "seconds_per_step": steps})


def load_shard(path: Path) -> list[TeacherSample]:
    """Read the samples of one shard."""
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    steps = json.loads(meta["seconds_per_step"])
    out = []
    for i in range(int(meta["count"])):
        t = {k: tensors[f"{i}.{k}"] for k in FIELDS}
        n = len(t["frame"])
        layout = VisualTokens(
            embeds=torch.empty(n, 0),
            frame=t["frame"],
            time=t["time"],
            grid=t["grid"],
            kind=t["kind"],
            token_id=t["token_id"],
            seconds_per_step=float(steps[i]),
        )
        out.append(TeacherSample(t["features"], layout, t["prefix_ids"], t["suffix_ids"], t["teacher"]))
    return out


class TeacherStore:
    """A directory of teacher shards plus `index.json` (what produced them, how many there are).

    A store is valid for one `key` (base model, layer, data recipe); opening it with another key is an
    error, so a stale cache is never mixed into a new run.
    """

    def __init__(self, directory: Path, key: dict[str, object]) -> None:
        self.directory = Path(directory)
        self.key = key
        index = self.directory / INDEX_FILE
        if index.is_file():
            saved = json.loads(index.read_text())
            if saved["key"] != json.loads(json.dumps(key)):
                raise ValueError(
                    f"the teacher cache in {self.directory} was made for {saved['key']}, not {key}; "
                    "use another directory or delete it"
                )
            self.shards: list[str] = saved["shards"]
            self.counts: list[int] = saved["counts"]
        else:
            self.shards, self.counts = [], []

    def __len__(self) -> int:
        return sum(self.counts)

    def append(self, samples: list[TeacherSample]) -> None:
        """Write one more shard."""
        if not samples:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"shard-{len(self.shards):05d}.safetensors"
        save_shard(self.directory / name, samples)
        self.shards.append(name)
        self.counts.append(len(samples))
        index = {"key": self.key, "shards": self.shards, "counts": self.counts}
        (self.directory / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")

    def __iter__(self) -> Iterator[TeacherSample]:
        for name in self.shards:
            yield from load_shard(self.directory / name)


def fill(
    store: TeacherStore, wanted: int, make: Callable[[int], TeacherSample], *, shard_size: int = 256
) -> list[TeacherSample]:
    """Samples 0..wanted-1: those already on disk, then `make(i)` for the rest (written shard by shard)."""
    samples = list(itertools.islice(store, wanted))
    pending: list[TeacherSample] = []
    for i in range(len(samples), wanted):
        pending.append(make(i))
        if len(pending) == shard_size:
            store.append(pending)
            samples.extend(pending)
            pending = []
    store.append(pending)
    return samples + pending
