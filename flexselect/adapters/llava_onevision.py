"""LLaVA-OneVision (the transformers architecture of LLaVA-Video): pooled SigLIP tokens, one newline."""

from __future__ import annotations

import numpy as np
import torch

from flexselect.adapters.base import PreparedClip, VideoClip, VideoLLMAdapter
from flexselect.types import TokenKind, VisualTokens


class LlavaOnevisionAdapter(VideoLLMAdapter):
    """LLaVA-OneVision / LLaVA-Video; 1-D RoPE; the span is every frame's pooled grid plus one newline."""

    family = "llava_onevision"
    model_types = ("llava_onevision",)

    @property
    def video_placeholder(self) -> str:
        return self.processor.video_token

    def processor_inputs(self, frames: np.ndarray, times: np.ndarray) -> dict[str, torch.Tensor]:
        self._check_frames(frames, times)
        out = self.processor.video_processor(videos=[frames], return_tensors="pt")
        return {"pixel_values_videos": out["pixel_values_videos"]}

    def encode_prepared(self, prepared: list[PreparedClip]) -> list[VisualTokens]:
        """The tower pools and projects every frame on its own (`get_video_features` runs a video's
        frames as a batch of images), so all clips' frames run as one video: each clip gets its frames'
        rows followed by the newline row, which the model appends to every video alike."""
        if not prepared:
            return []
        stacks = [inputs["pixel_values_videos"][0] for inputs in self._prepared_inputs(prepared)]
        model = self.model.model

        def pooled_frames(pixels: torch.Tensor) -> torch.Tensor:
            pooled = model.get_video_features(pixels[None]).pooler_output[0]  # (N*per_frame + 1, D)
            return pooled[:-1].view(len(pixels), -1, pooled.shape[-1])  # the last row is the newline

        per_clip = self._per_frame_forward(stacks, pooled_frames)
        newline = model.image_newline.detach()[None]  # (1, D), the row `get_video_features` appends
        return [self._tokens(p.clip, rows, newline) for p, rows in zip(prepared, per_clip, strict=True)]

    def _tokens(self, clip: VideoClip, rows: torch.Tensor, newline: torch.Tensor) -> VisualTokens:
        """The span of one clip from its frames' pooled rows (frames, side*side, D): every frame's grid,
        then the newline."""
        frame_offset = clip.frame_offset
        n_frames, per_frame, _ = rows.shape
        features = torch.cat([rows.flatten(0, 1), newline.to(rows.device, rows.dtype)])
        side = round(per_frame**0.5)
        f, r, c = torch.meshgrid(
            torch.arange(n_frames), torch.arange(side), torch.arange(side), indexing="ij"
        )
        grid = torch.stack([f.flatten(), r.flatten(), c.flatten()], dim=1) + torch.tensor(
            [frame_offset, 0, 0]
        )
        grid = torch.cat([grid, torch.full((1, 3), -1, dtype=torch.long)])
        frame = torch.cat([frame_offset + f.flatten(), torch.tensor([frame_offset + n_frames - 1])])
        times64 = torch.from_numpy(clip.times.astype(np.float64))
        kind = torch.full((len(frame),), int(TokenKind.PATCH), dtype=torch.int8)
        kind[-1] = int(TokenKind.NEWLINE)
        return VisualTokens(
            embeds=features,
            frame=frame,
            time=times64[frame - frame_offset],
            grid=grid,
            kind=kind,
            token_id=torch.full((len(frame),), int(self.config.video_token_id), dtype=torch.long),
            seconds_per_step=1.0,
        )

    def visual_positions(self, tokens: VisualTokens, *, compact: bool) -> tuple[torch.Tensor, int]:
        """1-D RoPE: consecutive positions in span order."""
        return torch.arange(len(tokens)).view(1, -1), len(tokens)
