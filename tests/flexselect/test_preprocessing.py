"""Our inputs for a clip equal what the model's own Hugging Face processor produces."""

from __future__ import annotations

import torch


def processor_outputs(adapter, clip, question):
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    text = adapter.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    kwargs = {}
    if adapter.family.startswith("qwen"):
        kwargs = {"videos_kwargs": {"video_metadata": [clip.metadata()], "do_sample_frames": False}}
    return adapter.processor(text=[text], videos=[clip.frames], return_tensors="pt", **kwargs)


def test_token_ids_equal_processor_input_ids(adapter, clip):
    question = "what color was the square?"
    out = processor_outputs(adapter, clip, question)
    prompt = adapter.prompt(question)
    tokens = adapter.encode(clip.frames, clip.times)
    ours = torch.cat([prompt.prefix_ids, tokens.token_id, prompt.suffix_ids])
    assert torch.equal(ours, out["input_ids"][0])


def test_pixel_inputs_equal_processor_pixels(adapter, clip):
    out = processor_outputs(adapter, clip, "what is this?")
    ours = adapter.processor_inputs(clip.frames, clip.times)
    for key, value in ours.items():
        assert torch.equal(value, out[key]), key


def test_visual_embeddings_fill_the_processor_placeholders(adapter, clip):
    """The span's embeddings are exactly what the model's own forward scatters into its sequence."""
    out = processor_outputs(adapter, clip, "what is this?")
    tokens = adapter.encode(clip.frames, clip.times)
    prompt = adapter.prompt("what is this?")
    seq = adapter.build_sequence(prompt, tokens)
    captured = {}

    def hook(module, args, kwargs):
        captured["embeds"] = kwargs["inputs_embeds"]

    handle = adapter.text_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            adapter.model(**out, position_ids=seq.position_ids if adapter.mrope else None)
    finally:
        handle.remove()
    assert torch.equal(captured["embeds"], seq.inputs_embeds)


def test_qwen25_frames_must_start_on_a_temporal_patch(tiny_dirs):
    import pytest

    from flexselect.adapters import AdapterError, load_adapter

    adapter = load_adapter(tiny_dirs["qwen2_5_vl"])
    frames = torch.zeros(2, 56, 56, 3, dtype=torch.uint8).numpy()
    with pytest.raises(AdapterError, match="multiple of the temporal patch 2"):
        adapter.encode(frames, torch.arange(2.0).numpy(), frame_offset=3)
