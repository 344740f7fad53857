"""Presets ship the paper's per-model settings; flags override them; sampling follows them."""

from __future__ import annotations

import numpy as np
import pytest

from flexselect.adapters import AdapterError, load_adapter
from flexselect.tiny import save_tiny
from lab.eval.model import ModelSession, apply_pixel_cap, default_budget
from lab.eval.settings import (
    PRESET_DIR,
    PresetError,
    Sampling,
    Selection,
    available_presets,
    load_preset,
    resolve,
)


def test_the_paper_presets_ship():
    assert available_presets() == [
        "internvl2_5_8b",
        "llava_video_72b",
        "llava_video_7b",
        "qwen2_5_vl_72b",
        "qwen2_5_vl_7b",
    ]


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
def test_every_shipped_preset_validates(name):
    preset = load_preset(name)
    assert preset.sampling.fps is not None
    assert preset.selection.grouping == "interleaved"
    assert preset.selection.budget_mode == "per_group"


def test_qwen_7b_preset_has_the_published_numbers():
    preset = load_preset("qwen2_5_vl_7b")
    assert (preset.model, preset.max_pixels) == ("Qwen/Qwen2.5-VL-7B-Instruct", 308 * 560)
    assert (preset.sampling.fps, preset.sampling.max_frames, preset.sampling.frame_multiple) == (2.0, 1024, 2)
    assert (preset.selection.budget, preset.selection.layer, preset.selection.aggregation) == (
        7040,
        20,
        "max",
    )


@pytest.mark.parametrize("name", ["qwen2_5_vl_7b", "qwen2_5_vl_72b"])
def test_qwen_presets_place_positions_at_one_second_per_step_and_round_the_budget_as_the_authors(name):
    preset = load_preset(name)
    assert preset.position_fps == 2.0  # the processor's default fps: the authors' positions
    assert (preset.selection.grouping, preset.selection.budget_mode, preset.selection.budget_rounding) == (
        "interleaved",
        "per_group",
        "frames",
    )


def test_the_position_fps_sets_one_second_per_step_for_a_video_sampled_at_one_fps(checkpoint):
    settings = resolve(
        benchmark="mlvu",
        preset=load_preset("qwen2_5_vl_7b"),
        preset_name="qwen2_5_vl_7b",
        overrides={"model": str(checkpoint), "scorer": "none"},
        default_max_new_tokens=1,
    )
    model = ModelSession(
        load_adapter(checkpoint, dtype="float32"), settings.model_copy(update={"max_pixels": None})
    )
    tokens = model._encode(np.zeros((4, 56, 56, 3), dtype=np.uint8), np.arange(4.0))  # 1 fps
    assert tokens.seconds_per_step == 1.0  # 2 frames / 2 fps, not 2 frames / 1 fps
    plain = load_adapter(checkpoint, dtype="float32").encode(
        np.zeros((4, 56, 56, 3), np.uint8), np.arange(4.0)
    )
    assert plain.seconds_per_step == 2.0


def test_an_unknown_preset_names_the_shipped_ones():
    with pytest.raises(PresetError, match="shipped presets: internvl2_5_8b, "):
        load_preset("gpt5")


def test_flags_override_the_preset_and_frames_replace_fps():
    settings = resolve(
        benchmark="videomme",
        preset=load_preset("llava_video_7b"),
        preset_name="llava_video_7b",
        overrides={"model": "/ckpt", "frames": 64, "budget": 100, "scorer": "none"},
        default_max_new_tokens=1,
    )
    assert settings.model == "/ckpt"
    assert settings.sampling == Sampling(frames=64, max_frames=512)
    assert settings.selection == Selection(budget=100, layer=19, aggregation="max")
    assert settings.scorer == "none"


def test_without_preset_the_defaults_are_the_papers_selection_over_64_frames():
    settings = resolve(
        benchmark="mlvu", preset=None, preset_name=None, overrides={"model": "m"}, default_max_new_tokens=16
    )
    assert settings.sampling.frames == 64
    assert settings.selection == Selection(grouping="interleaved", budget_mode="per_group")
    assert settings.selection.aggregation is None  # the model's own: max unless calibrated otherwise
    assert settings.max_new_tokens == 16


def test_without_model_or_preset_resolving_fails():
    with pytest.raises(PresetError, match="no model"):
        resolve(benchmark="mlvu", preset=None, preset_name=None, overrides={}, default_max_new_tokens=1)


@pytest.mark.parametrize(
    ("duration", "frames"),
    [(1.0, 4), (3.0, 6), (10.3, 20), (3600.0, 1024)],
)
def test_fps_sampling_is_capped_and_rounded_to_the_frame_multiple(duration, frames):
    sampling = Sampling(fps=2.0, max_frames=1024, min_frames=4, frame_multiple=2)
    assert sampling.count(duration) == frames


def test_pixel_cap_sets_the_qwen_video_processors_per_frame_budget(checkpoint):
    adapter = load_adapter(checkpoint, dtype="float32")
    frames = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    before = len(adapter.encode(frames, np.array([0.0, 0.5])))
    apply_pixel_cap(adapter, 28 * 28)
    assert adapter.processor.video_processor.size.longest_edge == 784
    assert (before, len(adapter.encode(frames, np.array([0.0, 0.5])))) == (4, 1)


def test_pixel_cap_on_a_fixed_size_processor_is_refused(tmp_path):
    adapter = load_adapter(save_tiny("llava_onevision", tmp_path / "l"), dtype="float32")
    with pytest.raises(AdapterError, match="drop --max-pixels"):
        apply_pixel_cap(adapter, 784)


def test_default_budget_is_32_frames_worth(checkpoint):
    adapter = load_adapter(checkpoint, dtype="float32")
    tokens = adapter.encode(np.zeros((4, 64, 64, 3), dtype=np.uint8), np.arange(4) / 2)
    assert (len(tokens), default_budget(tokens)) == (8, 128)  # 2 temporal steps x 4 tokens; 32 x 4
