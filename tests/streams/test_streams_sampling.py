"""Uniform sampling of recordings: the right frames at the right times from every backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streams import (
    BackendUnavailableError,
    InvalidMediaError,
    NoVideoStreamError,
    SourceNotFoundError,
    SourceUnavailableError,
    UnsupportedSourceError,
    available_backends,
    probe,
    sample_uniform,
)
from streams.sampling import BACKENDS, DEFAULT_BACKEND, uniform_indices
from tests.streams.conftest import free_port
from tests.streams.stream_clips import read_counter, write_counter_clip, write_wav


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 s at 10 fps (frame i shows counter i), GOP 2 s, so far targets need a seek."""
    return write_counter_clip(tmp_path_factory.mktemp("sampling") / "clip.mp4", frames=300, fps=10, gop=20)


def test_uniform_indices_are_the_centres_of_equal_segments() -> None:
    assert uniform_indices(300, 4).tolist() == [37, 112, 187, 262]
    assert uniform_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]


def test_probe_reads_duration_rate_count_and_size(clip: Path) -> None:
    info = probe(clip)
    assert (info.duration_s, info.fps, info.frame_count) == (30.0, 10.0, 300)
    assert (info.width, info.height, info.codec) == (320, 240, "h264")


def test_pyav_samples_the_uniform_frames_at_their_times(clip: Path) -> None:
    frames, times, info = sample_uniform(clip, 8, backend="pyav")
    expected = uniform_indices(300, 8)
    assert frames.shape == (8, 240, 320, 3) and frames.dtype == np.uint8
    assert [read_counter(f) for f in frames] == expected.tolist()
    assert times.tolist() == pytest.approx((expected / 10).tolist())
    assert info.frame_count == 300


def test_dense_sampling_decodes_on_instead_of_seeking(clip: Path) -> None:
    frames, _, _ = sample_uniform(clip, 100, backend="pyav")
    assert [read_counter(f) for f in frames] == uniform_indices(300, 100).tolist()


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "pyav"])
def test_other_backends_return_the_same_frames_as_pyav(clip: Path, backend: str) -> None:
    if backend not in available_backends():
        pytest.skip(f"{backend} is not installed (optional)")
    frames, times, _ = sample_uniform(clip, 8, backend=backend)
    assert [read_counter(f) for f in frames] == uniform_indices(300, 8).tolist()
    assert times.tolist() == pytest.approx(sample_uniform(clip, 8, backend="pyav").times.tolist())


def test_the_default_backend_is_pyav(clip: Path) -> None:
    frames, _, _ = sample_uniform(clip, 4)
    assert DEFAULT_BACKEND == "pyav"
    assert [read_counter(f) for f in frames] == uniform_indices(300, 4).tolist()


@pytest.mark.parametrize("backend", available_backends())
def test_max_side_downscales_keeping_the_aspect(clip: Path, backend: str) -> None:
    frames, _, _ = sample_uniform(clip, 3, backend=backend, max_side=160)
    assert frames.shape == (3, 120, 160, 3)
    assert [read_counter(f) for f in frames] == uniform_indices(300, 3).tolist()


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "pyav"])
def test_a_backend_that_is_not_installed_says_how_to_get_it(clip: Path, backend: str) -> None:
    if backend in available_backends():
        pytest.skip(f"{backend} is installed here")
    with pytest.raises(BackendUnavailableError, match=f"pip install {backend}"):
        sample_uniform(clip, 2, backend=backend)


def test_an_unknown_backend_is_a_value_error(clip: Path) -> None:
    with pytest.raises(ValueError, match="unknown backend 'decord': choose one of pyav, torchcodec"):
        sample_uniform(clip, 2, backend="decord")


def test_n_must_be_positive(clip: Path) -> None:
    with pytest.raises(ValueError, match="n must be >= 1"):
        sample_uniform(clip, 0)


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="no such file"):
        sample_uniform(tmp_path / "gone.mp4", 4)


def test_an_audio_file_has_no_video_stream(tmp_path: Path) -> None:
    with pytest.raises(NoVideoStreamError):
        sample_uniform(write_wav(tmp_path / "a.wav"), 4)


def test_a_corrupt_file_is_invalid_media(clip: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[:5000])
    with pytest.raises(InvalidMediaError, match="corrupt, truncated or not media"):
        sample_uniform(cut, 4)


def test_a_live_uri_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedSourceError, match="needs a recording"):
        sample_uniform("rtsp://admin:hunter2@127.0.0.1/cam", 4)


def test_an_unreachable_http_recording_masks_its_credentials() -> None:
    with pytest.raises(SourceUnavailableError, match="connection refused") as info:
        sample_uniform(f"http://admin:hunter2@127.0.0.1:{free_port()}/rec.mp4", 4)
    assert "hunter2" not in str(info.value)
