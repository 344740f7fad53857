"""H.264 files: every frame is there and needle colours survive compression where the ground truth says."""

from __future__ import annotations

import av
import numpy as np
import pytest

from streams.synth import COLOR_NAMES, GroundTruth, color_labels, read_mp4, shape_mask, truth_path, write_mp4


def erode(mask: np.ndarray) -> np.ndarray:
    """`mask` without its one-pixel border (chroma subsampling blurs needle edges)."""
    p = np.pad(mask, 1)
    return mask & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def test_mp4_is_h264_yuv420p_with_every_frame(small_mp4):
    path, truth = small_mp4
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert stream.average_rate == 4
    frames = list(read_mp4(path))
    assert len(frames) == truth.frame_count == 32
    assert frames[0].shape == (112, 112, 3) and frames[0].dtype == np.uint8


def test_ground_truth_json_is_written_beside_the_mp4(small_mp4):
    path, truth = small_mp4
    assert truth_path(path) == path.with_suffix(".json")
    assert GroundTruth.load(truth_path(path)) == truth


def test_needle_colours_survive_the_round_trip_in_their_frames_only(small_mp4):
    path, truth = small_mp4
    labels = color_labels(np.stack(list(read_mp4(path))))
    near_needle = np.zeros(labels.shape, dtype=bool)
    for n in truth.needles:
        x, y, w, h = n.box
        color = COLOR_NAMES.index(n.color)
        shown = slice(n.first_frame, n.last_frame + 1)
        inside = labels[shown, y : y + h, x : x + w] == color
        assert inside[:, erode(shape_mask(n.shape, w))].mean(axis=1).min() >= 0.98, n
        assert inside[:, shape_mask(n.shape, w)].mean(axis=1).min() >= 0.75, n
        near_needle[shown, max(y - 2, 0) : y + h + 2, max(x - 2, 0) : x + w + 2] = True
    assert (labels[~near_needle] == -1).all()


def test_odd_frame_sizes_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_mp4([np.zeros((15, 16, 3), dtype=np.uint8)], tmp_path / "odd.mp4", fps=1)
