"""What the Qwen video families share: their adapter base, frame metadata and per-step times.

The base builds the processor inputs, prepares clips and runs one batched vision forward; the frame
metadata is what the video processor reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.video_utils import VideoMetadata

from flexselect.adapters.base import AdapterError, PreparedClip, VideoClip, VideoLLMAdapter


def sampled_fps(times: np.ndarray) -> float:
    """Frames per second of a sampled clip from its timestamps (1.0 for a single frame)."""
    if len(times) < 2:
        return 1.0
    step = float(np.median(np.diff(times.astype(np.float64))))
    if step <= 0:
        raise ValueError(f"frame times must increase, got steps with median {step}")
    return 1.0 / step


def video_metadata(frames: np.ndarray, times: np.ndarray, *, fps: float | None = None) -> VideoMetadata:
    """Metadata that makes the processor treat `frames` as already sampled at `fps` (else their own rate)."""
    n, h, w, _ = frames.shape
    fps = fps or sampled_fps(times)
    return VideoMetadata(
        total_num_frames=n, fps=fps, width=w, height=h, duration=n / fps, frames_indices=list(range(n))
    )


def padded(values: np.ndarray, multiple: int) -> np.ndarray:
    """Repeat the last entry until the length is a multiple of `multiple` (the processors pad frames so)."""
    extra = (-len(values)) % multiple
    if extra == 0:
        return values
    return np.concatenate([values, np.repeat(values[-1:], extra, axis=0)])


def unravel_grid(steps: int, rows: int, cols: int) -> torch.Tensor:
    """(steps*rows*cols, 3) int64 (step, row, col) in the vision tower's raster output order."""
    t, r, c = torch.meshgrid(torch.arange(steps), torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.stack([t.flatten(), r.flatten(), c.flatten()], dim=1)


def prepare_clip(adapter: VideoLLMAdapter, clip: VideoClip) -> PreparedClip:
    """The clip's processor inputs, pixels in pinned memory, checked to start on a temporal patch: the
    part of encoding that runs off the model thread, the same for both Qwen families."""
    tp = adapter.temporal_patch
    if clip.frame_offset % tp:
        raise AdapterError(
            f"frame_offset must be a multiple of the temporal patch {tp}, got {clip.frame_offset}"
        )
    inputs = adapter.processor_inputs(clip.frames, clip.times, fps=clip.fps)
    inputs["pixel_values_videos"] = adapter._pinned(inputs["pixel_values_videos"])
    return PreparedClip(clip=clip, inputs=inputs)


def batched_pixels(
    adapter: VideoLLMAdapter, prepared: list[PreparedClip]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixel rows of several prepared clips end to end on the adapter's device (copied from pinned
    memory without blocking), and their (clips, 3) grids on the CPU, as the tower takes several videos."""
    inputs = adapter._prepared_inputs(prepared)
    device, dtype = adapter.device, adapter.model.dtype
    pixels = [i["pixel_values_videos"].to(device, non_blocking=True) for i in inputs]
    grids = torch.cat([i["video_grid_thw"] for i in inputs])
    return torch.cat(pixels).to(dtype), grids


class QwenVideoAdapter(VideoLLMAdapter):
    """The part of encoding both Qwen video families do alike; each adds how the tower's rows become its
    visual span (`encode_prepared` over `video_features`)."""

    @property
    def temporal_patch(self) -> int:
        return int(self.config.vision_config.temporal_patch_size)

    def processor_inputs(
        self, frames: np.ndarray, times: np.ndarray, *, fps: float | None = None
    ) -> dict[str, torch.Tensor]:
        self._check_frames(frames, times)
        out = self.processor.video_processor(
            videos=[frames],
            video_metadata=[video_metadata(frames, times, fps=fps)],
            do_sample_frames=False,
            return_tensors="pt",
        )
        return {"pixel_values_videos": out["pixel_values_videos"], "video_grid_thw": out["video_grid_thw"]}

    def prepare(self, clip: VideoClip) -> PreparedClip:
        return prepare_clip(self, clip)

    def video_features(self, prepared: list[PreparedClip]) -> Any:
        """The vision tower's output for several prepared clips: one forward over all their pixels."""
        pixels, grids = batched_pixels(self, prepared)
        with torch.no_grad():
            return self.model.model.get_video_features(pixels, grids.to(self.device, non_blocking=True))
