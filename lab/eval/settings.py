"""Run settings: the paper's per-model presets (configs/presets/*.yaml) with command-line overrides.

A preset fixes what the paper fixed per model: checkpoint, frame sampling, per-frame pixel cap, token
budget, reference layer, aggregation and grouping. Explicit flags override single fields; the resolved
settings are written next to the results so a resumed run can refuse different settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "presets"
DEFAULT_FRAMES = 64

ScorerKind = Literal["none", "reference", "lite"]
POSITION_FPS_HELP = (
    "frame rate the temporal positions assume (the authors: the processor's default 2.0, one second per "
    "Qwen temporal step, whatever the sampling rate); None: the real sampling rate"
)


class Sampling(BaseModel):
    """Frames per video: exactly `frames` spread uniformly, or `fps` per second within the caps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: int | None = Field(None, ge=1, description="exactly this many frames, uniformly spread")
    fps: float | None = Field(None, gt=0, description="frames per second of video")
    max_frames: int = Field(512, ge=1, description="cap on fps sampling")
    min_frames: int = Field(1, ge=1, description="floor on fps sampling")
    frame_multiple: int = Field(1, ge=1, description="round fps sampling to a multiple (Qwen: 2)")

    @model_validator(mode="after")
    def _one_rate(self) -> Sampling:
        if (self.frames is None) == (self.fps is None):
            raise ValueError(f"set exactly one of frames and fps, got frames={self.frames} fps={self.fps}")
        if self.min_frames > self.max_frames:
            raise ValueError(f"min_frames {self.min_frames} exceeds max_frames {self.max_frames}")
        return self

    def count(self, duration_s: float) -> int:
        """Frames to sample from a video of `duration_s` seconds."""
        if self.frames is not None:
            return self.frames
        assert self.fps is not None
        n = min(max(round(duration_s * self.fps), self.min_frames), self.max_frames)
        m = self.frame_multiple
        return max(m, min(round(n / m) * m, self.max_frames // m * m))


class Selection(BaseModel):
    """FlexSelect's knobs (`flexselect.config.SelectionConfig`); budget None means 32 frames' worth."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget: int | None = Field(None, ge=1, description="visual tokens kept")
    layer: int | None = Field(None, ge=0, description="reference layer; None: the model's default")
    aggregation: Literal["max", "mean"] | None = Field(
        None, description="reduction over heads and question tokens; None: the model's default"
    )
    grouping: Literal["contiguous", "interleaved"] = "interleaved"
    max_frames_per_group: int = Field(64, ge=1)
    budget_mode: Literal["global", "per_group"] = "per_group"
    budget_rounding: Literal["exact", "frames"] = Field(
        "frames", description="frames: round up to whole frames, floor(budget/groups) each (the authors)"
    )


class Preset(BaseModel):
    """One model's published evaluation settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    model: str
    sampling: Sampling
    max_pixels: int | None = Field(None, ge=1, description="per-frame pixel cap for the video processor")
    position_fps: float | None = Field(None, gt=0, description=POSITION_FPS_HELP)
    selection: Selection = Selection()


class RunSettings(BaseModel):
    """Everything that decides a run's answers; stored as run.json in the results directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: str
    model: str
    scorer: ScorerKind = "reference"
    selector: str | None = None
    preset: str | None = None
    sampling: Sampling = Sampling(frames=DEFAULT_FRAMES)
    max_pixels: int | None = None
    position_fps: float | None = Field(None, gt=0, description=POSITION_FPS_HELP)
    selection: Selection = Selection()
    max_new_tokens: int = Field(1, ge=1)
    dtype: str = "auto"

    def differences(self, other: RunSettings) -> list[str]:
        """The fields that would change answers and differ between two runs (the preset name does not)."""
        mine, theirs = self.model_dump(exclude={"preset"}), other.model_dump(exclude={"preset"})
        return [f"{key}: {theirs[key]!r} -> {mine[key]!r}" for key in mine if mine[key] != theirs[key]]


class PresetError(ValueError):
    """A preset that does not exist or does not validate."""


def preset_path(name: str) -> Path:
    """A preset's file: a path to a .yaml, or a name under configs/presets/."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        return path
    return PRESET_DIR / f"{name}.yaml"


def available_presets() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> Preset:
    """Read and validate a preset by name or path."""
    path = preset_path(name)
    if not path.is_file():
        known = ", ".join(available_presets()) or "none"
        raise PresetError(f"no preset {name!r} ({path}); shipped presets: {known}")
    try:
        return Preset.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except yaml.YAMLError as exc:
        raise PresetError(f"preset {path} is not YAML: {str(exc).splitlines()[0]}") from None
    except ValidationError as exc:
        raise PresetError(f"preset {path} is invalid: {explain(exc)}") from None


def explain(exc: ValidationError) -> str:
    """A pydantic error as one line: "field.path: message; ..."."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def resolve(
    *,
    benchmark: str,
    preset: Preset | None,
    preset_name: str | None,
    overrides: dict[str, Any],
    default_max_new_tokens: int,
) -> RunSettings:
    """The preset (or the defaults) with every non-None override applied.

    `overrides` keys: model, scorer, selector, frames, fps, max_frames, max_pixels, position_fps,
    max_new_tokens, dtype and the `Selection` field names. `frames` replaces fps sampling and `fps`
    replaces a fixed frame count.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    sampling = (preset.sampling if preset else Sampling(frames=DEFAULT_FRAMES)).model_dump()
    if "frames" in given:
        sampling.update(frames=given["frames"], fps=None)
    if "fps" in given:
        sampling.update(fps=given["fps"], frames=None)
    if "max_frames" in given:
        sampling["max_frames"] = given["max_frames"]
    selection = (preset.selection if preset else Selection()).model_dump()
    selection.update({k: given[k] for k in Selection.model_fields if k in given})
    model = given.get("model") or (preset.model if preset else None)
    if model is None:
        raise PresetError("no model: pass --model or a --preset that names one")
    try:
        return RunSettings(
            benchmark=benchmark,
            model=model,
            scorer=given.get("scorer", "reference"),
            selector=given.get("selector"),
            preset=preset_name,
            sampling=Sampling(**sampling),
            max_pixels=given.get("max_pixels", preset.max_pixels if preset else None),
            position_fps=given.get("position_fps", preset.position_fps if preset else None),
            selection=Selection(**selection),
            max_new_tokens=given.get("max_new_tokens", default_max_new_tokens),
            dtype=given.get("dtype", "auto"),
        )
    except ValidationError as exc:
        raise PresetError(f"invalid settings: {explain(exc)}") from None
