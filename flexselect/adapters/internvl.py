"""InternVL (transformers-native): frames as 448px images, pixel-shuffled tokens between <img> markers."""

from __future__ import annotations

import numpy as np
import torch

from flexselect.adapters.base import PreparedClip, VideoClip, VideoLLMAdapter
from flexselect.types import TokenKind, VisualTokens


class InternVLAdapter(VideoLLMAdapter):
    """InternVL; 1-D RoPE; each frame is `Frame{i}: <img>` + tokens + `</img>`, frames joined by newlines."""

    family = "internvl"
    model_types = ("internvl",)

    @property
    def video_placeholder(self) -> str:
        return self.processor.video_token

    def processor_inputs(self, frames: np.ndarray, times: np.ndarray) -> dict[str, torch.Tensor]:
        self._check_frames(frames, times)
        out = self.processor.video_processor(videos=[frames], return_tensors="pt")
        return {"pixel_values": out["pixel_values_videos"].flatten(0, 1)}  # (frames, 3, H, W)

    def encode_prepared(self, prepared: list[PreparedClip]) -> list[VisualTokens]:
        """Frames are images encoded each on its own, so all clips' frames run as one batch of images."""
        if not prepared:
            return []
        stacks = [inputs["pixel_values"] for inputs in self._prepared_inputs(prepared)]
        model = self.model.model
        per_clip = self._per_frame_forward(
            stacks, lambda pixels: model.get_image_features(pixels).pooler_output
        )
        return [self._tokens(p.clip, features) for p, features in zip(prepared, per_clip, strict=True)]

    def _tokens(self, clip: VideoClip, features: torch.Tensor) -> VisualTokens:
        """The span of one clip from its frames' features (frames, tokens per frame, D): each frame's label
        and `<img>`, its tokens, then `</img>`."""
        frame_offset, times = clip.frame_offset, clip.times
        n_frames, per_frame, _ = features.shape
        side = round(per_frame**0.5)
        rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        start_id = self.processor.start_image_token_id
        end_id = self.processor.end_image_token_id
        pieces: list[VisualTokens] = []
        for i in range(n_frames):
            frame, time = frame_offset + i, float(times[i])
            label = f"{'' if frame == 0 else chr(10)}Frame{frame + 1}: "  # frames are joined by newlines
            pieces.append(
                self._markers(torch.cat([self._tokenize(label), torch.tensor([start_id])]), frame, time)
            )
            grid = torch.stack([torch.full((per_frame,), frame), rows.flatten(), cols.flatten()], dim=1)
            pieces.append(
                VisualTokens(
                    embeds=features[i],
                    frame=torch.full((per_frame,), frame, dtype=torch.long),
                    time=torch.full((per_frame,), time, dtype=torch.float64),
                    grid=grid,
                    kind=torch.full((per_frame,), int(TokenKind.PATCH), dtype=torch.int8),
                    token_id=torch.full((per_frame,), int(self.config.image_token_id), dtype=torch.long),
                )
            )
            pieces.append(self._markers(torch.tensor([end_id]), frame, time))
        return VisualTokens.concat(pieces)

    def _markers(self, ids: torch.Tensor, frame: int, time: float) -> VisualTokens:
        n = len(ids)
        return VisualTokens(
            embeds=self.embed_ids(ids),
            frame=torch.full((n,), frame, dtype=torch.long),
            time=torch.full((n,), time, dtype=torch.float64),
            grid=torch.full((n, 3), -1, dtype=torch.long),
            kind=torch.full((n,), int(TokenKind.MARKER), dtype=torch.int8),
            token_id=ids.long(),
        )

    def visual_positions(self, tokens: VisualTokens, *, compact: bool) -> tuple[torch.Tensor, int]:
        """1-D RoPE: consecutive positions in span order."""
        return torch.arange(len(tokens)).view(1, -1), len(tokens)
