"""The bundled toy checkpoint loads like a released model and answers fixed held-out clips correctly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.video_utils import VideoMetadata

from agent.models import resolve_model
from flexselect.adapters import VideoLLMAdapter, load_adapter
from lab.needle.videos import decode
from lab.toy.card import read_card
from lab.toy.evaluate import all_tokens, clip_items, video_cases
from lab.toy.recipe import ToyRecipe

TOY = Path(resolve_model("toy"))
# (kind, index in the held-out clip stream of `clip_items(seed=4242)`, question, answer): clips it gets right.
PINNED = [
    ("color", 0, "what color was the triangle ?", "cyan"),
    ("shape", 1, "what shape was the blue object ?", "cross"),
    ("when", 3, "when did the cyan triangle appear ?", "middle"),
    ("place", 7, "where did the green circle appear ?", "top left"),
    ("count", 9, "how many triangles appeared ?", "three"),
]


@pytest.fixture(scope="module")
def toy() -> VideoLLMAdapter:
    return load_adapter(TOY)


def test_the_toy_is_a_small_qwen2_5_vl_with_room_for_long_videos(toy):
    assert toy.family == "qwen2_5_vl"
    assert toy.model.dtype == torch.float32
    assert toy.max_positions >= 32768


def test_the_weights_are_one_safetensors_file_under_20_mb():
    assert [p.name for p in TOY.glob("*.safetensors")] == ["model.safetensors"]
    assert (TOY / "model.safetensors").stat().st_size < 20 * 2**20


def test_the_card_ships_colour_place_and_count_at_the_calibrated_layer():
    card = read_card(TOY)
    config = json.loads((TOY / "config.json").read_text())
    assert {"color", "place", "count"} <= set(card["kinds"])
    assert config["flexselect_reference_layer"] == card["reference_layer"]


def test_the_training_command_reproduces_the_shipped_recipe():
    assert json.loads((TOY / "recipe.json").read_text()) == ToyRecipe().to_dict()


def test_prompt_and_encode_equal_the_processor(toy):
    item = clip_items(toy, n=1, frames=16)[0].example
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": item.question}]}]
    text = toy.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    meta = VideoMetadata(
        total_num_frames=16, fps=2.0, width=56, height=56, duration=8.0, frames_indices=list(range(16))
    )
    out = toy.processor(
        text=[text],
        videos=[item.frames],
        return_tensors="pt",
        videos_kwargs={"video_metadata": [meta], "do_sample_frames": False},
    )
    prompt, tokens = toy.prompt(item.question), toy.encode(item.frames, item.times)
    assert torch.equal(
        torch.cat([prompt.prefix_ids, tokens.token_id, prompt.suffix_ids]), out["input_ids"][0]
    )
    assert torch.equal(
        toy.processor_inputs(item.frames, item.times)["pixel_values_videos"], out["pixel_values_videos"]
    )


@pytest.mark.parametrize(("kind", "index", "question", "answer"), PINNED, ids=[p[0] for p in PINNED])
def test_the_committed_weights_answer_a_fixed_clip(toy, kind, index, question, answer):
    item = clip_items(toy, n=index + 1, frames=16)[index]
    assert (item.kind, item.example.question, item.example.answer) == (kind, question, answer)
    result = all_tokens(toy).answer(item.example.frames, item.example.times, item.example.question)
    assert result.answer == answer


@pytest.mark.slow
def test_mp4_videos_decoded_like_any_file_are_answered(toy, tmp_path):
    cases = video_cases(tmp_path, n=5, frames=16, size=56)
    answers = [case.question.answer for case in cases]
    assert [c.question.kind for c in cases] == ["color", "shape", "place", "count", "when"]
    assert [all_tokens(toy).answer(*decode(c), c.question.question).answer for c in cases] == answers


def test_a_clip_with_its_frames_far_apart_still_fits_the_positions(toy):
    item = clip_items(toy, n=1, frames=16)[0].example
    times = np.arange(16) * 64.0
    result = all_tokens(toy).answer(item.frames, times, item.question)
    assert result.total_tokens == result.kept_tokens == 32
