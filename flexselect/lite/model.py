"""FlexSelect-Lite: a small Qwen2-family decoder with its own projector, trained to rank like layer L.

It embeds the prompt with its own token embeddings and the visual span with its own projector over the
base vision tower's features, runs `[prefix | visual | question]` through layers 0..N-2, and scores each
visual token by the question's attention at its last layer, with the reference scorer's recipe
(`flexselect.ranking.question_attention` and `aggregate`).

A selector is a directory: `config.json` (the decoder's transformers config), `selector.json` (family,
projector, positions, provenance) and `model.safetensors`; it loads without pickle.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import AutoConfig, Qwen2Model
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLTextModel

from flexselect.adapters.base import LayerInput, VideoLLMAdapter
from flexselect.lite.config import DecoderShape, SelectorConfig
from flexselect.lite.hf_config import decoder_shape, hf_config
from flexselect.lite.layers import decoder_layer, rope_module
from flexselect.lite.positions import sequence_positions, visual_offsets
from flexselect.lite.vision import build_projector, init_projector_from_base, projector_config_for
from flexselect.ranking import aggregate, question_attention
from flexselect.types import Prompt, TokenKind, VisualTokens

CONFIG_FILE, CARD_FILE, WEIGHTS_FILE = "config.json", "selector.json", "model.safetensors"


class SelectorError(Exception):
    """A selector directory that cannot be loaded, or inputs the selector cannot score."""


class LiteSelector(nn.Module):
    """The selector model: decoder (embeddings + layers + rotary), projector, and its config."""

    def __init__(self, config: SelectorConfig) -> None:
        super().__init__()
        self.config = config
        hf = hf_config(config.decoder)
        hf._attn_implementation = "sdpa"
        self.decoder: nn.Module = Qwen2_5_VLTextModel(hf) if config.mrope else Qwen2Model(hf)
        self.projector = build_projector(config.projector, config.decoder.hidden)
        self.gradient_checkpointing = False

    # ------------------------------------------------------------------------------------------ parts
    @property
    def layers(self) -> nn.ModuleList:
        return self.decoder.layers

    @property
    def last(self) -> nn.Module:
        """The scoring layer (only its input norm and q/k projections are used)."""
        return self.decoder.layers[-1]

    @property
    def device(self) -> torch.device:
        return self.decoder.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.embed_tokens.weight.dtype

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """The selector's own embeddings of base-model token ids (any shape)."""
        vocab = self.config.decoder.vocab_size
        if len(ids) and (int(ids.max()) >= vocab or int(ids.min()) < 0):
            raise SelectorError(f"token id {int(ids.max())} is outside the selector's vocabulary of {vocab}")
        return self.decoder.embed_tokens(ids.to(self.device))

    def visual_embeds(
        self, features: torch.Tensor, kind: torch.Tensor, token_id: torch.Tensor
    ) -> torch.Tensor:
        """(N, d) selector inputs of a span: projected features on patch rows, text embeddings elsewhere.

        Args:
            features: (n_patch, feature_dim) vision features of the PATCH rows, in order.
            kind: (N,) `TokenKind` of every row.
            token_id: (N,) base token id of every row (used for markers and newlines).
        """
        return self.visual_embeds_many([features], [kind], [token_id])[0]

    def visual_embeds_many(
        self, features: list[torch.Tensor], kinds: list[torch.Tensor], token_ids: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """`visual_embeds` of several spans with ONE projector call over all their patch features (the
        rows are independent, so each span's rows equal projecting that span alone)."""
        rows = features[0] if len(features) == 1 else torch.cat(features)
        projected = self.projector(rows.to(self.device, self.dtype))  # (sum n_patch, d)
        parts = projected.split([len(f) for f in features])
        return [self._place(p, k, i) for p, k, i in zip(parts, kinds, token_ids, strict=True)]

    def _place(self, projected: torch.Tensor, kind: torch.Tensor, token_id: torch.Tensor) -> torch.Tensor:
        """A span's rows: `projected` on its patch rows, the selector's text embeddings elsewhere."""
        patch = kind == TokenKind.PATCH
        if bool(patch.all()):  # `kind` is layout metadata (on the CPU from the adapters): no device sync
            return projected
        out = self.embed_ids(token_id.clamp_min(0)).clone()  # (N, d)
        out[patch.to(self.device)] = projected
        return out

    # -------------------------------------------------------------------------------------- positions
    def offsets(self, tokens: VisualTokens) -> tuple[torch.Tensor, int]:
        """Offsets of a scored group's tokens from the span start, and the span extent (compact layout)."""
        return visual_offsets(self.config.family, tokens, tokens_per_second=self.config.tokens_per_second)

    def rope(self, positions: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (B, S, head_dim), for positions (3, B, S) or (B, S)."""
        return self.decoder.rotary_emb(like, positions.to(self.device))

    # -------------------------------------------------------------------------------------- scoring
    def layer_input(self, embeds: torch.Tensor, positions: torch.Tensor) -> LayerInput:
        """Run layers 0..N-2 over `embeds` (B, S, d) at `positions` (3, B, S) or (B, S); return what enters
        the last layer's attention."""
        cos, sin = self.rope(positions, embeds)
        h = embeds
        for layer in self.layers[:-1]:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                h = checkpoint(
                    lambda x, lay=layer: decoder_layer(lay, x, cos, sin)[0], h, use_reentrant=False
                )
            else:
                h = decoder_layer(layer, h, cos, sin)[0]
        return LayerInput(hidden=self.last.input_layernorm(h), cos=cos, sin=sin)

    def score_embeds(
        self, prompt: Prompt, lite: torch.Tensor, tokens: VisualTokens, *, aggregation: str | None = None
    ) -> torch.Tensor:
        """Scores (V,) float32 of a group whose selector inputs are `lite` (V, d); differentiable.

        `tokens` supplies the layout metadata (kind, grid, seconds per step) of the same rows.
        """
        return self.score_embeds_many(prompt, [lite], [tokens], aggregation=aggregation)[0]

    def score_embeds_many(
        self,
        prompt: Prompt,
        lites: list[torch.Tensor],
        tokens: list[VisualTokens],
        *,
        aggregation: str | None = None,
    ) -> list[torch.Tensor]:
        """`score_embeds` of several groups (each scored alone, as one group): groups of one length stack
        into a batch, so layers 0..N-2 run once per length, and each group's question attention is read
        from its own row. Equal to scoring each alone up to the float order of batched products.

        Returns one (V_i,) float32 tensor per group, in input order.
        """
        p, t = len(prompt.prefix_ids), prompt.query_len
        if t == 0:
            raise SelectorError("the prompt has no question tokens after the visual span")
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, group in enumerate(tokens):
            by_length[len(group)].append(i)
        prefix, suffix = self.embed_ids(prompt.prefix_ids), self.embed_ids(prompt.suffix_ids)
        how = aggregation or self.config.aggregation
        scores: dict[int, torch.Tensor] = {}
        for v, rows in by_length.items():
            embeds = torch.stack(
                [torch.cat([prefix, lites[i].to(self.device, self.dtype), suffix]) for i in rows]
            )
            positions = torch.cat(
                [self._positions(p, tokens[i], t) for i in rows], dim=1 if self.config.mrope else 0
            )  # (3, B, S) or (B, S)
            layer_input = self.layer_input(embeds, positions)
            query_rows = torch.arange(p + v, p + v + t, device=self.device)
            rope = rope_module(self.last.self_attn)
            for b, i in enumerate(rows):
                one = LayerInput(
                    hidden=layer_input.hidden[b : b + 1],
                    cos=layer_input.cos[b : b + 1],
                    sin=layer_input.sin[b : b + 1],
                )
                probs = question_attention(self.last.self_attn, one, query_rows, rope)
                scores[i] = aggregate(probs[:, :, p : p + v], how)  # type: ignore[arg-type]
        return [scores[i] for i in range(len(tokens))]

    def _positions(self, prefix_len: int, tokens: VisualTokens, query_len: int) -> torch.Tensor:
        """Positions of `[prefix | tokens | question]` in the compact layout: (3, 1, S) or (1, S)."""
        offsets, extent = self.offsets(tokens)
        return sequence_positions(prefix_len, offsets, extent, query_len, mrope=self.config.mrope)

    # -------------------------------------------------------------------------------- construction
    @classmethod
    def for_adapter(cls, adapter: VideoLLMAdapter, decoder: DecoderShape, **config: object) -> LiteSelector:
        """A fresh selector for a base model: its projector sized for the base vision tower and initialised
        from the base projector, its embeddings from the base embeddings (both truncated to fit)."""
        text = adapter.text_config
        if decoder.vocab_size < text.vocab_size:
            raise SelectorError(
                f"the selector vocabulary {decoder.vocab_size} is smaller than the base's {text.vocab_size}"
            )
        tps = getattr(adapter.config.vision_config, "tokens_per_second", 2.0) if adapter.mrope else 2.0
        selector_config = SelectorConfig(
            family=adapter.family,
            decoder=decoder,
            projector=projector_config_for(adapter),
            tokens_per_second=float(tps),
            **config,  # type: ignore[arg-type]
        )
        selector = cls(selector_config)
        init_projector_from_base(selector.projector, adapter)
        with torch.no_grad():
            base = adapter.model.get_input_embeddings().weight
            rows, cols = min(base.shape[0], decoder.vocab_size), min(base.shape[1], decoder.hidden)
            selector.decoder.embed_tokens.weight[:rows, :cols] = base[:rows, :cols].float()
        return selector

    # --------------------------------------------------------------------------------------- saving
    def save(self, directory: str | Path, *, extra_card: dict[str, object] | None = None) -> Path:
        """Write config.json, selector.json and model.safetensors into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(hf_config(self.config.decoder).to_json_string())
        card = {**self.config.card(), **(extra_card or {})}
        (directory / CARD_FILE).write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, directory / WEIGHTS_FILE, metadata={"format": "pt", "family": self.config.family})
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> LiteSelector:
        """Load a selector directory (safetensors, no pickle).

        Raises:
            SelectorError: files are missing or do not match.
        """
        directory = Path(directory)
        missing = [n for n in (CONFIG_FILE, CARD_FILE, WEIGHTS_FILE) if not (directory / n).is_file()]
        if missing:
            raise SelectorError(f"{directory} is not a selector directory: missing {', '.join(missing)}")
        try:
            hf = AutoConfig.from_pretrained(str(directory))
            card = json.loads((directory / CARD_FILE).read_text())
            config = SelectorConfig.from_card(card, decoder_shape(hf))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SelectorError(f"cannot read the selector config in {directory}: {exc}") from exc
        selector = cls(config)
        try:
            selector.load_state_dict(load_file(directory / WEIGHTS_FILE))
        except RuntimeError as exc:
            raise SelectorError(f"the weights in {directory} do not match its config: {exc}") from exc
        return selector.to(device=device, dtype=dtype).eval()
