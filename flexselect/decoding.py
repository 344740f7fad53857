"""Greedy decode steps over a static KV cache, replayed from CUDA graphs on a GPU.

After the prefill, each decode step of a 7B model is a few milliseconds of GPU work behind hundreds of
kernel launches from Python (measured on an H200: 8 tokens in 148-264 ms, `../shared/gpu/README.md`). A
CUDA graph replays one step's launches at once, but needs every tensor the step touches at a fixed
address: the answer's KV cache becomes a transformers `StaticCache` of a fixed length, the step's inputs
(embedding, position, attention mask) fixed buffers updated in place, and the attention runs over the
whole cache with the unused positions masked out.

`StaticDecoder` keeps one static cache (and, with `graphs=True`, one captured graph) per cache length,
rounded up to `bucket` positions, so answers of similar length reuse one capture: the prefill's cache is
copied in (a few hundred MB at 7B shapes and 7k tokens: well under a millisecond of bandwidth), and
only the buffers change between answers. Without graphs the same static step runs eagerly, which is what
the CPU tests compare against the eager decoding of `VideoLLMAdapter.generate`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import DynamicCache, StaticCache

from flexselect.adapters.base import AdapterError, VideoLLMAdapter


@dataclass
class _Slot:
    """One cache length's static state: the cache, the step's input buffers and (on a GPU) its graph."""

    length: int
    cache: StaticCache
    embeds: torch.Tensor  # (1, 1, D) the token entering the step
    position: torch.Tensor  # (3, 1, 1) or (1, 1) its position
    mask: torch.Tensor  # (1, 1, 1, length) additive: 0 where a cached position is visible, else the minimum
    token: torch.Tensor | None = None  # () the step's greedy next token (set by the first run or capture)
    graph: torch.cuda.CUDAGraph | None = None


class StaticDecoder:
    """Greedy decode steps on a static cache; with `graphs=True` (CUDA only) each step is one graph replay.

    Args:
        adapter: the model whose answers it decodes (its text model must use full attention in every layer).
        graphs: capture each cache length's step as a CUDA graph (needs the adapter on a CUDA device).
        bucket: cache lengths are rounded up to a multiple of this, so answers of similar length share one.
        max_length: the longest prefill plus new tokens decoded this way; longer answers decode eagerly
            (a static cache that long would cost more memory than the launches it saves).
        keep: cache lengths kept at once (least recently used dropped first, its memory with it).
    """

    def __init__(
        self,
        adapter: VideoLLMAdapter,
        *,
        graphs: bool,
        bucket: int = 1024,
        max_length: int = 32_768,
        keep: int = 2,
    ) -> None:
        if graphs and adapter.device.type != "cuda":
            raise AdapterError(
                f"CUDA graphs for decoding need a CUDA device; the model is on {adapter.device}"
            )
        if bucket < 1 or max_length < 1 or keep < 1:
            raise ValueError(
                f"bucket, max_length and keep must be positive, got {bucket}, {max_length}, {keep}"
            )
        kinds = set(getattr(adapter.text_config, "layer_types", None) or ["full_attention"])
        if kinds != {"full_attention"}:
            raise AdapterError(f"static decoding needs full attention in every layer, the model has {kinds}")
        self.adapter = adapter
        self.graphs = graphs
        self.bucket = bucket
        self.max_length = max_length
        self.keep = keep
        self._slots: OrderedDict[int, _Slot] = OrderedDict()
        self.captures = 0  # graphs captured (one per cache length, until dropped)
        self.answers = 0  # answers decoded here
        self.too_long = 0  # answers left to eager decoding for passing `max_length`

    def attach(self) -> StaticDecoder:
        """Make the adapter's answers decode here (`VideoLLMAdapter.generate`); returns self."""
        self.adapter.decoder = self
        return self

    @torch.no_grad()
    def steps(
        self, cache: DynamicCache, last_position: torch.Tensor, max_new_tokens: int
    ) -> Callable[[int], int] | None:
        """A function from each generated token to the next greedy token, continuing the prefill whose
        cache and last position (shape (3, 1, 1) or (1, 1)) are given; None (counted in `too_long`) when
        the prefill and the new tokens pass `max_length`: the caller decodes eagerly."""
        prefill = cache.get_seq_length()
        if prefill + max_new_tokens > self.max_length:
            self.too_long += 1
            return None
        slot = self._slot(-(-(prefill + max_new_tokens) // self.bucket) * self.bucket, cache)
        self._load(slot, cache, prefill, last_position)
        self.answers += 1
        written = [prefill]  # the next cache position a step writes
        table = self.adapter.model.get_input_embeddings().weight  # `embed_ids` without a host-to-device id

        @torch.no_grad()
        def step(token: int) -> int:
            slot.embeds[0, 0].copy_(table[token])
            slot.position.add_(1)
            slot.mask[..., written[0]] = 0.0  # the new token sees itself
            written[0] += 1
            if slot.graph is not None:
                slot.graph.replay()
            else:
                slot.token = self._forward(slot)
            assert slot.token is not None
            return int(slot.token)

        return step

    # ------------------------------------------------------------------------------------------ slots
    def _slot(self, length: int, like: DynamicCache) -> _Slot:
        """The static state for `length` positions: reused, or built (and captured) on first use."""
        if length in self._slots:
            self._slots.move_to_end(length)
            return self._slots[length]
        while len(self._slots) >= self.keep:
            self._slots.popitem(last=False)
        adapter = self.adapter
        device, dtype = adapter.device, adapter.model.dtype
        static = StaticCache(config=adapter.text_config, max_cache_len=length)
        for source, layer in zip(like.layers, static.layers, strict=True):
            layer.lazy_initialization(source.keys, source.values)  # shapes, dtype, device
        position_shape = (3, 1, 1) if adapter.mrope else (1, 1)
        slot = _Slot(
            length=length,
            cache=static,
            embeds=torch.zeros(1, 1, adapter.text_config.hidden_size, device=device, dtype=dtype),
            position=torch.zeros(position_shape, dtype=torch.long, device=device),
            mask=torch.full((1, 1, 1, length), torch.finfo(dtype).min, device=device, dtype=dtype),
        )
        if self.graphs:
            self._capture(slot)
        self._slots[length] = slot
        return slot

    def _forward(self, slot: _Slot) -> torch.Tensor:
        """One decode step on the slot's buffers: the greedy next token, on the device."""
        adapter = self.adapter
        out = adapter.text_model(
            inputs_embeds=slot.embeds,
            position_ids=slot.position,
            attention_mask=slot.mask,
            cache=slot.cache,
            use_cache=True,
        )
        return adapter.model.lm_head(out.last_hidden_state[:, -1])[0].float().argmax()

    def _capture(self, slot: _Slot) -> None:
        """Record one step as a CUDA graph. The warm-up runs write scratch keys and advance the cache's
        lengths; `_load` resets both before every answer, and masked positions are never read."""
        side = torch.cuda.Stream(device=slot.embeds.device)
        side.wait_stream(torch.cuda.current_stream(slot.embeds.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._forward(slot)
        torch.cuda.current_stream(slot.embeds.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (the agent's frame preparation pins host memory) may keep calling CUDA
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            slot.token = self._forward(slot)
        slot.graph = graph
        self.captures += 1

    @staticmethod
    def _load(slot: _Slot, cache: DynamicCache, prefill: int, last_position: torch.Tensor) -> None:
        """Put a prefill's cache and position into the slot: keys and values copied in, lengths reset,
        the prefill's positions visible and the rest masked."""
        for source, layer in zip(cache.layers, slot.cache.layers, strict=True):
            layer.keys[:, :, :prefill].copy_(source.keys)
            layer.values[:, :, :prefill].copy_(source.values)
            layer.cumulative_length.fill_(prefill)
        slot.mask.fill_(torch.finfo(slot.mask.dtype).min)
        slot.mask[..., :prefill] = 0.0
        slot.position.copy_(last_position.reshape(slot.position.shape))
