"""The interface every video-LLM family implements, and the machinery they share.

An adapter turns frames into `VisualTokens` in the LLM's input space, builds `[prefix | visual | suffix]`
sequences with explicit positions, runs the decoder up to a reference layer for scoring, and generates.
Family files only describe what differs: how frames become tokens, where markers sit, and positions.
"""

from __future__ import annotations

import itertools
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForImageTextToText, AutoProcessor, DynamicCache, PreTrainedModel

from flexselect.config import Aggregation, default_reference_layer
from flexselect.positions import capped_gaps
from flexselect.timing import synced_now
from flexselect.transfer import gather_rows, layout_rows
from flexselect.types import Answer, Prompt, Sequence, TokenKind, VisualTokens
from flexselect.vision_attention import enable_batched_vision_attention


class AdapterError(Exception):
    """A model or input the adapter cannot handle (unknown family, bad frames, bad prompt)."""


@dataclass
class LayerInput:
    """What enters the reference layer's attention: normed hidden states and (cos, sin) of its RoPE."""

    hidden: torch.Tensor  # (1, S, D), already through the layer's input norm
    cos: torch.Tensor  # (1, S, head_dim)
    sin: torch.Tensor  # (1, S, head_dim)


class _Clock:
    """Milliseconds between laps, synchronising CUDA so GPU work is counted where it happens."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.last = self._now()

    def _now(self) -> float:
        return synced_now(self.device)

    def lap(self) -> float:
        now = self._now()
        elapsed, self.last = (now - self.last) * 1e3, now
        return elapsed


class DecodeSteps(Protocol):
    """Decode steps an adapter can hand its answers to after the prefill (`flexselect.decoding`)."""

    def steps(
        self, cache: DynamicCache, last_position: torch.Tensor, max_new_tokens: int
    ) -> Callable[[int], int] | None:
        """The function from each token to the next after this prefill; None: decode eagerly."""


class _StopForward(Exception):
    """Raised by the capture hook so nothing at or above the reference layer runs."""


@dataclass
class VideoClip:
    """Frames of one clip and where they sit in their source (the arguments of `VideoLLMAdapter.encode`)."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    times: np.ndarray  # (T,) seconds
    frame_offset: int = 0
    time_origin: float = 0.0
    fps: float | None = None


@dataclass
class PreparedClip:
    """A clip after the CPU half of encoding: the processor's pixel inputs (pinned for a CUDA device)."""

    clip: VideoClip
    inputs: dict[str, torch.Tensor] | None = None


class VideoLLMAdapter(ABC):
    """One video LLM behind the small interface FlexSelect needs."""

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    mrope: ClassVar[bool] = False  # positions are (3, 1, S) rather than (1, S)
    rows_follow_time: ClassVar[bool] = False  # M-RoPE height/width rows start at each frame's position

    def __init__(self, model: PreTrainedModel, processor: Any) -> None:
        enable_batched_vision_attention(model)  # one attention call per vision layer (Qwen families, sdpa)
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.config = model.config
        self.text_config = model.config.get_text_config()
        self.decoder: DecodeSteps | None = None  # decode steps after the prefill; None: eager steps here

    # ----------------------------------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        *,
        dtype: torch.dtype | str = "auto",
        device: str | torch.device = "cpu",
        attn_implementation: str | None = None,
    ) -> VideoLLMAdapter:
        """Load model and processor with `from_pretrained` from a hub id or a local directory."""
        kwargs: dict[str, Any] = {"dtype": dtype}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        model = AutoModelForImageTextToText.from_pretrained(str(name_or_path), **kwargs).to(device)
        processor = AutoProcessor.from_pretrained(str(name_or_path))
        return cls(model, processor)

    # ------------------------------------------------------------------------------------ model parts
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def text_model(self) -> nn.Module:
        """The decoder stack (embeddings, layers, norm, rotary embedding)."""
        return self.model.model.language_model

    @property
    def num_layers(self) -> int:
        return len(self.text_model.layers)

    @property
    def max_positions(self) -> int:
        return int(self.text_config.max_position_embeddings)

    @property
    def trained_positions(self) -> int:
        """Positions the model reads reliably: the checkpoint's `flexselect_trained_positions` (config.json;
        the toy sets the span its training clips covered), else its `max_position_embeddings` (what a
        family's checkpoints were trained to, e.g. 128,000 for Qwen2.5-VL-7B). Never above the latter.
        Answer sequences longer than this get their long gaps compressed (`flexselect.positions`)."""
        trained = getattr(self.config, "flexselect_trained_positions", None)
        if trained is None:
            return self.max_positions
        if int(trained) < 1:
            raise ValueError(f"flexselect_trained_positions must be positive, got {trained}")
        return min(int(trained), self.max_positions)

    def default_layer(self) -> int:
        """The reference layer used when none is configured: the checkpoint's calibrated layer
        (`flexselect_reference_layer` in its config.json, written by `calibrate-layer`), else the
        paper's layer for known models, else ~70% depth."""
        calibrated = getattr(self.config, "flexselect_reference_layer", None)
        if calibrated is not None:
            return int(calibrated)
        return default_reference_layer(self.config.model_type, self.num_layers)

    def default_aggregation(self) -> Aggregation:
        """The reduction over heads and question tokens used when none is configured: the checkpoint's
        calibrated one (`flexselect_aggregation` in its config.json, written by `calibrate-layer`), else
        "max", as the published code does."""
        calibrated = getattr(self.config, "flexselect_aggregation", None)
        if calibrated not in (None, "max", "mean"):
            raise ValueError(f"flexselect_aggregation must be 'max' or 'mean', got {calibrated!r}")
        return calibrated or "max"

    def attention_module(self, layer: int) -> nn.Module:
        return self.text_model.layers[layer].self_attn

    def rope_module(self, layer: int) -> ModuleType:
        """The modeling module that defines this attention's `apply_rotary_pos_emb` and `repeat_kv`."""
        return sys.modules[type(self.attention_module(layer)).__module__]

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings of token ids (any shape) on the model's device."""
        return self.model.get_input_embeddings()(ids.to(self.device))

    # ----------------------------------------------------------------------------------------- prompts
    @property
    @abstractmethod
    def video_placeholder(self) -> str:
        """The text the chat template renders for a video; the visual span replaces it."""

    def prompt(self, question: str, *, system: str | None = None) -> Prompt:
        """Render the model's chat template around one video and split it at the visual span."""
        if not question.strip():
            raise AdapterError("the question is empty")
        messages: list[dict[str, Any]] = []
        if system is not None:
            messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
        messages.append({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]})
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if text.count(self.video_placeholder) != 1:
            raise AdapterError(
                f"the chat template rendered {text.count(self.video_placeholder)} video placeholders "
                f"{self.video_placeholder!r}; expected exactly one"
            )
        prefix, suffix = text.split(self.video_placeholder)
        return Prompt(prefix_ids=self._tokenize(prefix), suffix_ids=self._tokenize(suffix))

    def _tokenize(self, text: str) -> torch.Tensor:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return torch.tensor(ids, dtype=torch.long)

    # ---------------------------------------------------------------------------------------- encoding
    @abstractmethod
    def processor_inputs(self, frames: np.ndarray, times: np.ndarray) -> dict[str, torch.Tensor]:
        """Pixel inputs for `frames` (T, H, W, 3) uint8 from the model's own video processor."""

    def encode(
        self,
        frames: np.ndarray,
        times: np.ndarray,
        *,
        frame_offset: int = 0,
        time_origin: float = 0.0,
        fps: float | None = None,
    ) -> VisualTokens:
        """Run the vision tower and projector once over `frames`, returning the visual span: `encode_prepared`
        of the one clip, so a clip encodes alike alone and in a batch.

        Args:
            frames: (T, H, W, 3) uint8 RGB frames.
            times: (T,) seconds of each frame (media or wall-clock time).
            frame_offset: index of the first frame in its source, so chunks of a stream line up.
            time_origin: subtracted from `times` wherever times become text (Qwen3-VL timestamps).
            fps: the sampling rate the frames were taken at; None estimates it from `times`. Streams pass
                their configured rate so every chunk gets the same temporal scale despite clock jitter.
        """
        clip = VideoClip(frames, times, frame_offset=frame_offset, time_origin=time_origin, fps=fps)
        return self.encode_prepared([self.prepare(clip)])[0]

    def prepare(self, clip: VideoClip) -> PreparedClip:
        """The CPU half of encoding (the video processor's resize and patchify, which checks the frames),
        safe to run off the model thread; on a CUDA adapter the pixels are pinned so `encode_prepared`
        copies them asynchronously."""
        inputs = self.processor_inputs(clip.frames, clip.times)
        return PreparedClip(clip=clip, inputs={key: self._pinned(value) for key, value in inputs.items()})

    @abstractmethod
    def encode_prepared(self, prepared: list[PreparedClip]) -> list[VisualTokens]:
        """Encode several prepared clips (of one stream or many) with ONE vision forward over all their
        frames (one per run of clips whose frames differ in size); each result equals `encode` of that
        clip alone."""

    def _prepared_inputs(self, prepared: list[PreparedClip]) -> list[dict[str, torch.Tensor]]:
        """The processor inputs of prepared clips; `ValueError` for a clip this adapter did not prepare."""
        inputs = [p.inputs for p in prepared]
        if any(i is None for i in inputs):
            raise ValueError("every clip must be prepared by the adapter that encodes it")
        return inputs  # type: ignore[return-value]

    def _per_frame_forward(
        self, stacks: list[torch.Tensor], forward: Callable[[torch.Tensor], torch.Tensor]
    ) -> list[torch.Tensor]:
        """Each clip's rows of `forward` run over the frames of all clips at once.

        `stacks` are the clips' pixels (F_i, C, H, W); `forward` maps frames (N, C, H, W) on the device to
        an output whose first dimension is per frame (N, ...), each frame computed on its own, so frames of
        many clips can share one call. Consecutive clips whose frames share a shape share a call (one call
        when the processor resizes to a fixed size); calls run in clip order, as the selector's feature
        capture (`flexselect.lite.vision.capture_vision`) expects.
        """
        out: list[torch.Tensor] = []
        for _, group in itertools.groupby(stacks, key=lambda stack: tuple(stack.shape[1:])):
            run = list(group)
            pixels = torch.cat([stack.to(self.device, non_blocking=True) for stack in run])
            with torch.no_grad():
                features = forward(pixels.to(self.model.dtype))
            out.extend(features.split([len(stack) for stack in run]))
        return out

    def _pinned(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in page-locked memory when they are bound for a CUDA device (else unchanged)."""
        return pixels.pin_memory() if self.device.type == "cuda" else pixels

    @staticmethod
    def _check_frames(frames: np.ndarray, times: np.ndarray) -> None:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise AdapterError(
                f"frames must be (T, H, W, 3) uint8, got shape {frames.shape} dtype {frames.dtype}"
            )
        if frames.shape[0] == 0:
            raise AdapterError("no frames to encode")
        if times.shape != (frames.shape[0],):
            raise AdapterError(f"times has shape {times.shape}, expected ({frames.shape[0]},)")

    # --------------------------------------------------------------------------------------- positions
    @abstractmethod
    def visual_positions(self, tokens: VisualTokens, *, compact: bool) -> tuple[torch.Tensor, int]:
        """Position offsets of the span's tokens from the span start, and the span's extent.

        Returns `(offsets, extent)`: offsets (3, N) for M-RoPE models or (1, N), and the offset at which
        the text after the span starts. `compact=True` renumbers time so gaps between kept frames
        vanish (scoring groups); `compact=False` keeps the original timeline.
        """

    def build_sequence(
        self,
        prompt: Prompt,
        tokens: VisualTokens,
        keep: torch.Tensor | None = None,
        *,
        compact: bool = False,
        kept_rows: VisualTokens | None = None,
    ) -> Sequence:
        """`[prefix | tokens[keep] | suffix]` with positions of the full span, gathered for `keep`.

        Positions are computed on all of `tokens` and then gathered, so kept tokens keep their original
        positions and the suffix keeps its place after the whole span. If that would exceed the model's
        trained range (`trained_positions`), the kept tokens keep their order and the spacing of nearby
        tokens while long gaps between them are compressed until the sequence fits
        (`flexselect.positions.capped_gaps`). With `kept_rows` (the rows `keep` in full), `tokens` need
        carry only the span's metadata: the embeddings and deepstack come from `kept_rows`, so a caller
        reads the embeddings of only the rows it keeps.
        """
        if kept_rows is not None and (keep is None or len(kept_rows) != len(keep)):
            raise AdapterError("kept_rows needs `keep` and one row per kept index")
        source, index = (tokens, keep) if kept_rows is None else (kept_rows, None)
        p, t = len(prompt.prefix_ids), len(prompt.suffix_ids)
        offsets, extent = self.visual_positions(tokens, compact=compact)
        kept = layout_rows(tokens, keep)  # the embeddings go to the device on their own (gather_rows)
        if keep is not None:
            offsets = offsets[:, keep]
        if p + extent + t > self.trained_positions:
            # The original timeline does not fit what the model was trained on: compress its long gaps.
            room = self.trained_positions - p - t
            if room < 1:
                raise ValueError(
                    f"the prompt alone ({p + t} tokens) fills the model's {self.trained_positions} trained "
                    "positions; shorten the question"
                )
            offsets, extent = capped_gaps(offsets, room, rows_follow=self.rows_follow_time)
        rows = offsets.shape[0]
        prefix_pos = torch.arange(p).view(1, -1).expand(rows, -1)
        suffix_pos = (p + extent + torch.arange(t)).view(1, -1).expand(rows, -1)
        positions = torch.cat([prefix_pos, p + offsets, suffix_pos], dim=1).to(self.device)
        embeds = torch.cat(
            [
                self.embed_ids(prompt.prefix_ids),
                gather_rows(source.embeds, index, self.device, self.model.dtype),
                self.embed_ids(prompt.suffix_ids),
            ]
        )[None]
        s = embeds.shape[1]
        visual_mask = torch.zeros(1, s, dtype=torch.bool, device=self.device)
        visual_mask[0, p : p + len(kept)] = kept.kind.to(self.device) == TokenKind.PATCH
        deepstack = None
        if source.deepstack is not None:
            patch = kept.kind == TokenKind.PATCH
            levels = source.deepstack if index is None else source.deepstack[:, index]
            deepstack = levels[:, patch].to(self.device, self.model.dtype)
        return Sequence(
            inputs_embeds=embeds,
            position_ids=positions[:, None] if self.mrope else positions,
            attention_mask=torch.ones(1, s, dtype=torch.long, device=self.device),
            visual_slice=slice(p, p + len(kept)),
            visual_mask=visual_mask,
            deepstack=deepstack,
        )

    # ----------------------------------------------------------------------------------- running layers
    def _text_model_kwargs(self, seq: Sequence) -> dict[str, Any]:
        """Family-specific extras for the decoder forward (Qwen3-VL deepstack)."""
        return {}

    def capture_layer_input(self, seq: Sequence, layer: int) -> LayerInput:
        """Run decoder layers 0..layer-1 only, returning what enters layer `layer`'s attention.

        A pre-hook on that attention module records its (normed) input and stops the forward, so the
        model's own code handles masks, RoPE and deepstack, and no layer at or above `layer` runs.
        """
        if not 0 <= layer < self.num_layers:
            raise AdapterError(f"reference layer {layer} is outside 0..{self.num_layers - 1}")
        box: dict[str, Any] = {}

        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            box["hidden"] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            box["pe"] = kwargs["position_embeddings"]
            raise _StopForward

        handle = self.attention_module(layer).register_forward_pre_hook(hook, with_kwargs=True)
        try:
            with torch.no_grad():
                self.text_model(
                    inputs_embeds=seq.inputs_embeds,
                    position_ids=seq.position_ids,
                    attention_mask=seq.attention_mask,
                    use_cache=False,
                    **self._text_model_kwargs(seq),
                )
        except _StopForward:
            pass
        finally:
            handle.remove()
        cos, sin = box["pe"]
        return LayerInput(hidden=box["hidden"], cos=cos, sin=sin)

    def prefill(self, seq: Sequence) -> tuple[torch.Tensor, DynamicCache]:
        """Forward the whole sequence once; returns last-position logits (vocab,) and the KV cache."""
        cache = DynamicCache(config=self.text_config)
        with torch.no_grad():
            out = self.text_model(
                inputs_embeds=seq.inputs_embeds,
                position_ids=seq.position_ids,
                attention_mask=seq.attention_mask,
                cache=cache,
                use_cache=True,
                **self._text_model_kwargs(seq),
            )
            logits = self.model.lm_head(out.last_hidden_state[:, -1])[0]
        return logits.float(), cache

    def generate(self, seq: Sequence, *, max_new_tokens: int = 64) -> Answer:
        """Greedy decoding from the sequence; decode positions continue at last position + 1. The steps
        after the prefill run on `self.decoder` where it takes the answer (static cache, CUDA graphs),
        else eagerly here."""
        if max_new_tokens < 1:
            raise AdapterError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        clock = _Clock(self.device)
        logits, cache = self.prefill(seq)
        prefill_ms = clock.lap()
        eos = self._eos_ids()
        last = seq.position_ids[..., -1:]
        step = None if self.decoder is None else self.decoder.steps(cache, last, max_new_tokens)
        if step is None:
            step = self._eager_steps(seq, cache)
        ids: list[int] = []
        token = int(logits.argmax())
        for i in range(max_new_tokens):
            if token in eos:
                break
            ids.append(token)
            if i == max_new_tokens - 1:
                break
            token = step(token)
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        return Answer(
            text=text,
            token_ids=ids,
            kept_tokens=0,
            total_tokens=0,
            first_token_logits=logits,
            timings_ms={"prefill": prefill_ms, "generate": clock.lap()},
        )

    def _eager_steps(self, seq: Sequence, cache: DynamicCache) -> Callable[[int], int]:
        """Decode steps on the prefill's dynamic cache, one forward of the text model per token."""
        state = {"position": seq.position_ids[..., -1:], "mask": seq.attention_mask}

        def step(token: int) -> int:
            state["position"] = state["position"] + 1
            state["mask"] = torch.cat([state["mask"], state["mask"].new_ones(1, 1)], dim=1)
            with torch.no_grad():
                out = self.text_model(
                    inputs_embeds=self.embed_ids(torch.tensor([[token]])),
                    position_ids=state["position"],
                    attention_mask=state["mask"],
                    cache=cache,
                    use_cache=True,
                )
                logits = self.model.lm_head(out.last_hidden_state[:, -1])[0].float()
            return int(logits.argmax())

        return step

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (getattr(self.model, "generation_config", None), self.text_config, self.tokenizer):
            value = getattr(source, "eos_token_id", None)
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list | tuple):
                ids.update(int(v) for v in value)
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(im_end, int) and im_end != self.tokenizer.unk_token_id:
            ids.add(im_end)
        return ids
