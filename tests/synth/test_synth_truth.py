"""The ground-truth JSON: documented fields and an exact round trip."""

from __future__ import annotations

import json

import pytest

from streams.synth import GroundTruth, generate_world, ground_truth


def test_json_round_trip_is_identity(small):
    truth = ground_truth(generate_world(small))
    assert GroundTruth.from_json(truth.to_json()) == truth


def test_json_holds_the_documented_fields(small):
    data = json.loads(ground_truth(generate_world(small)).to_json())
    header = ["version", "seed", "fps", "width", "height", "duration_s", "frame_count"]
    assert list(data) == [*header, "config", "needles", "questions"]
    assert [data[k] for k in ("seed", "fps", "width", "duration_s", "frame_count")] == [3, 4.0, 112, 8.0, 32]
    assert set(data["needles"][0]) == {
        "id", "color", "shape", "box", "cell", "quadrant", "first_frame", "last_frame", "start_s", "end_s",
    }  # fmt: skip
    assert set(data["questions"][0]) == {"id", "kind", "question", "answer", "needle_ids", "evidence"}


def test_loading_an_unknown_version_fails(small):
    data = ground_truth(generate_world(small)).to_dict() | {"version": 99}
    with pytest.raises(ValueError, match="version"):
        GroundTruth.from_dict(data)
