"""The selector decoder's shapes as a transformers config and back (config.json of a selector directory)."""

from __future__ import annotations

from transformers import PretrainedConfig, Qwen2Config
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLTextConfig

from flexselect.lite.config import DecoderShape


def hf_config(shape: DecoderShape) -> PretrainedConfig:
    """The transformers config of the decoder (Qwen2.5-VL text model for M-RoPE, else Qwen2)."""
    common = {
        "vocab_size": shape.vocab_size,
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "max_position_embeddings": shape.max_positions,
        "rms_norm_eps": shape.rms_norm_eps,
        "tie_word_embeddings": False,
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
    }
    if shape.mrope_section is None:
        return Qwen2Config(**common, rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta})
    rope = {
        "rope_type": "default",
        "rope_theta": shape.rope_theta,
        "mrope_section": list(shape.mrope_section),
    }
    return Qwen2_5_VLTextConfig(**common, rope_parameters=rope)


def decoder_shape(config: PretrainedConfig) -> DecoderShape:
    """Inverse of `hf_config`: the decoder shapes a transformers config holds."""
    rope = config.rope_parameters
    section = rope.get("mrope_section")
    return DecoderShape(
        vocab_size=config.vocab_size,
        hidden=config.hidden_size,
        layers=config.num_hidden_layers,
        heads=config.num_attention_heads,
        kv_heads=config.num_key_value_heads,
        intermediate=config.intermediate_size,
        rope_theta=float(rope["rope_theta"]),
        mrope_section=None if section is None else tuple(section),  # type: ignore[arg-type]
        max_positions=config.max_position_embeddings,
        rms_norm_eps=config.rms_norm_eps,
    )
