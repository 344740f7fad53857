"""The product path with the bundled toy model: an RTSP camera showing known events, questions over MQTT.

The scene stays inside what the toy learned (56x56 frames at 2 fps, needles of 2-4 frames on the token
grid) and the questions are the kinds the toy ships, so a wrong answer here is a product fault, not a
question the model was never taught.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.models import TOY_MODEL_DIR
from lab.toy.card import shipped_kinds
from streams.synth import GroundTruth, WorldConfig, generate_world, write_world
from tests.agent.service_helpers import agent_config, ask, client, running, wait_for_memory
from tests.streams.conftest import RtspServer, gstreamer_missing

pytestmark = [pytest.mark.services, pytest.mark.slow]

SECONDS = 24.0
FPS = 2.0
TOKENS_PER_STEP = 4  # a 56x56 frame pair is 2x2 merged tokens
# At the end of the file the test server ends the session and replays the file on reconnect; questions
# cover the first pass only, which ends a little early (the live clock anchors a backlog of frames).
REPLAY_MARGIN = 3.0


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GroundTruth]:
    path = tmp_path_factory.mktemp("toy-live") / "scene.mp4"
    world = generate_world(
        WorldConfig(seconds=SECONDS, fps=FPS, width=56, height=56, needles=2, seed=21, cell=28,
                    min_needle_seconds=1.0, max_needle_seconds=2.0)
    )  # fmt: skip
    return path, write_world(world, path)


def near(start: float, end: float, truth: tuple[float, float], slack: float = 2.0) -> bool:
    """Whether [start, end] comes within `slack` seconds of the needle's [start, end]."""
    return start <= truth[1] + slack and end >= truth[0] - slack


async def test_questions_about_an_rtsp_camera_are_answered_right_with_evidence_at_the_needle(scene, prefix):
    reason = gstreamer_missing()
    if reason:
        pytest.skip(reason)
    path, truth = scene
    kinds = shipped_kinds(TOY_MODEL_DIR) or ()
    questions = [q for q in truth.questions if q.kind in kinds]
    assert len(questions) >= 4
    assert max(n.end_s for n in truth.needles) <= SECONDS - REPLAY_MARGIN
    server = RtspServer(path)
    server.start()
    stream = {"id": "cam", "uri": server.url(), "source": {"sample_fps": FPS, "chunk_seconds": 2.0}}
    config = agent_config(TOY_MODEL_DIR, [stream], prefix)
    config = config.model_copy(
        update={"model": config.model.model_copy(update={"budget": 32, "layer": None, "max_new_tokens": 4})}
    )
    try:
        async with running(config) as app, client(prefix) as link:
            steps = int(SECONDS * FPS / 2)
            await wait_for_memory(app, "cam", (steps - 2) * TOKENS_PER_STEP, timeout=90)
            assert app.memory is not None
            first = (await app.memory.stats("cam")).streams["cam"].first_time
            assert first is not None
            until = datetime.fromtimestamp(first + SECONDS - REPLAY_MARGIN, tz=UTC).isoformat()
            replies = [(q, await ask(link, q.question, until=until)) for q in questions]
    finally:
        server.kill()
    report = [
        (q.question, q.answer, r.get("answer"), q.evidence, r.get("evidence", [])[:1]) for q, r in replies
    ]
    right = [(q, r) for q, r in replies if r["ok"] and r["answer"] == q.answer]
    assert len(right) >= 0.8 * len(replies), report
    for q, reply in right:
        if q.kind == "count":
            continue
        best = reply["evidence"][0]
        start = datetime.fromisoformat(best["start"]).timestamp() - first
        end = datetime.fromisoformat(best["end"]).timestamp() - first
        assert near(start, end, tuple(q.evidence)), (q.question, start, end, q.evidence)
