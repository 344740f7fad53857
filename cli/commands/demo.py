"""`flexselect-agent demo`: the whole loop on one machine with nothing else installed.

It writes a synthetic recording with known needle events, starts an embedded MQTT broker, runs the
agent (toy model, in-process memory) on the recording replayed as a live stream, asks the recording's
questions over MQTT, and prints each answer beside the ground truth with its first (best-scoring) evidence
span, counting both: `correct: N/M, first evidence on the needle: E/M`. With the toy model, evidence is
selected by FlexSelect-Lite with the selector shipped beside it (agent/assets/toy-selector); `--scorer
reference` uses the model's reference layer instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.errors import UsageError

if TYPE_CHECKING:
    from agent.app import AgentApp
    from agent.mqtt import MqttConfig
    from streams.synth import Question


@dataclass(frozen=True)
class DemoWorld:
    """The recording's geometry; it matches what the bundled toy model was trained on."""

    width: int = 56
    height: int = 56
    cell: int = 28
    fps: float = 2.0
    step_frames: int = 2  # frames one token spans in time (Qwen2.5-VL's temporal patch; the toy's too)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `demo` subcommand."""
    p = subparsers.add_parser("demo", help="run the agent end to end on a generated recording")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the recording (media seconds)")
    p.add_argument("--needles", type=int, default=4, help="needle events in the recording")
    p.add_argument("--seed", type=int, default=7, help="seed of the recording")
    p.add_argument("--model", default="toy", help="model to answer with (default: the bundled toy)")
    p.add_argument(
        "--scorer",
        choices=("reference", "lite"),
        default=None,
        help="token scorer (default: lite with the shipped selector for the toy model, else reference)",
    )
    p.add_argument(
        "--selector", default=None, help="selector directory for --scorer lite (default: the toy model's)"
    )
    p.add_argument("--kinds", default=None, help="question kinds to ask (default: the model's shipped kinds)")
    p.add_argument("--workdir", type=Path, default=None, help="where to write the recording (default: temp)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate, serve, ask, compare; exit 0 when the demo ran (whatever the score)."""
    from agent.config import ConfigError

    if args.seconds <= 0 or args.needles < 1:
        raise UsageError("--seconds must be positive and --needles at least 1")
    scorer = choose_scorer(args.model, args.scorer, args.selector)
    with tempfile.TemporaryDirectory(prefix="flexselect-demo-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            report = asyncio.run(_demo(args, workdir, scorer))
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(report))
    else:
        for row in report["answers"]:
            mark = "ok " if row["correct"] else "NO "
            seen = "ok " if row["evidence_correct"] else "NO "
            first = "-" if not row["evidence_s"] else "{:.1f}-{:.1f}s".format(*row["evidence_s"][0])
            truth = f"{row['evidence_truth_s'][0]:.1f}-{row['evidence_truth_s'][1]:.1f}s"
            print(
                f"{mark} {row['question']:<40} answer {row['answer']!r:<16} truth {row['truth']!r:<16} "
                f"{seen} first evidence {first} (needle {truth})"
            )
        print(
            f"correct: {report['correct']}/{report['asked']}, first evidence on the needle: "
            f"{report['evidence_correct']}/{report['asked']}"
        )
    return 0


def choose_scorer(model: str, scorer: str | None, selector: str | None) -> dict[str, str | None]:
    """The demo's `model.scorer` and `model.selector`: lite with the shipped selector by default for the toy
    model (or with the one given), reference otherwise; lite needs a selector directory that exists.

    Raises:
        UsageError: --selector without --scorer lite, or --scorer lite without an existing selector.
    """
    from agent.selector import resolve_selector

    if scorer is None:
        scorer = "lite" if selector is not None or model == "toy" else "reference"
    if scorer != "lite":
        if selector is not None:
            raise UsageError("--selector is only used with --scorer lite")
        return {"scorer": scorer, "selector": None}
    if selector is None and model != "toy":
        raise UsageError(
            f"--scorer lite with --model {model} needs --selector DIR: a selector trained for it"
        )
    directory = resolve_selector(selector or "toy")
    if not directory.is_dir():
        raise UsageError(
            f"--scorer lite: the selector directory {directory} does not exist"
            + (" (the toy's shipped selector is missing; use --scorer reference)" if selector is None else "")
        )
    return {"scorer": "lite", "selector": selector}


async def _demo(args: argparse.Namespace, workdir: Path, scorer: dict[str, str | None]) -> dict[str, Any]:
    from agent.app import AgentApp
    from agent.config import AgentConfig, StreamSection
    from agent.mqtt import MqttConfig
    from agent.mqtt.broker import EmbeddedBroker
    from streams.config import StreamConfig
    from streams.synth import WorldConfig, generate_world, write_world

    geometry = DemoWorld()
    world = generate_world(
        WorldConfig(
            seconds=args.seconds,
            fps=geometry.fps,
            width=geometry.width,
            height=geometry.height,
            needles=args.needles,
            seed=args.seed,
            cell=geometry.cell,
        )
    )
    recording = workdir / "demo.mp4"
    truth = write_world(world, recording)
    kinds = set(args.kinds.split(",")) if args.kinds else _shipped_kinds(args.model)
    questions = [q for q in truth.questions if kinds is None or q.kind in kinds]
    origin = time.time() + 1.0
    async with EmbeddedBroker() as broker:
        mqtt = MqttConfig(port=broker.port, prefix="flexselect-demo", protocol="3.1.1")
        config = AgentConfig.model_validate(
            {
                "model": {"name": args.model, **scorer},
                "streams": [
                    StreamSection(
                        id="demo",
                        uri=str(recording),
                        source=StreamConfig(sample_fps=geometry.fps, chunk_seconds=4.0, realtime=True),
                        time_origin=origin,
                    )
                ],
                "mqtt": mqtt,
                "http": {"enabled": False},
                "logging": {"level": "WARNING"},
            }
        )
        app = AgentApp(config)
        rows: list[dict[str, Any]] = []
        step_s = geometry.step_frames / geometry.fps
        await app.run(until=lambda a: _ask_all(a, mqtt, questions, origin, rows, step_s))
    correct = sum(r["correct"] for r in rows)
    return {
        "recording": str(recording),
        "asked": len(rows),
        "correct": correct,
        "evidence_correct": sum(r["evidence_correct"] for r in rows),
        "answers": rows,
        "seed": args.seed,
        "scorer": scorer["scorer"],
    }


async def _ask_all(
    app: AgentApp,
    mqtt: MqttConfig,
    questions: list[Question],
    origin: float,
    rows: list[dict[str, Any]],
    step_s: float,
) -> None:
    from agent.mqtt import AskRequest, MqttLink

    await _wait_for_recording(app)
    async with MqttLink(
        mqtt.model_copy(update={"client_id": "flexselect-demo-client"}),
        subscriptions=[f"{mqtt.prefix}/answer/#"],
        availability=False,
        require_connection=True,
    ) as link:
        for q in questions:
            request = AskRequest(id=f"demo-{q.id}", question=q.question, streams=["demo"])
            await link.publish(link.topics.ask, request.payload())
            reply = await _reply(link, request.id)
            rows.append(_row(q, reply, origin, step_s))


async def _wait_for_recording(app: AgentApp) -> None:
    """Until the replayed recording has ended and its last chunk is in memory."""
    from streams import StreamState

    ingest = app.ingests["demo"]
    while ingest.health.state not in (StreamState.ENDED, StreamState.FAILED):
        await asyncio.sleep(0.2)
    if ingest.health.state == StreamState.FAILED:
        raise RuntimeError(f"the demo recording could not be read: {ingest.health.last_error}")
    while app.worker is not None and app.worker.queued_chunks:
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)


async def _reply(link: Any, request_id: str) -> dict[str, Any]:
    while True:
        message = await link.receive(timeout=120.0)
        data = json.loads(message.payload)
        if data.get("id") == request_id:
            return data


def _row(q: Question, reply: dict[str, Any], origin: float, step_s: float) -> dict[str, Any]:
    """One answer beside its truth; the first evidence span (best score) counts when it overlaps the
    needle's span, its last step covering `step_s` seconds after its start time."""
    from datetime import datetime

    answer = reply.get("answer") if reply.get("ok") else f"error: {reply['error']['code']}"
    spans = [
        (
            datetime.fromisoformat(e["start"]).timestamp() - origin,
            datetime.fromisoformat(e["end"]).timestamp() - origin,
        )
        for e in reply.get("evidence", [])
    ]
    return {
        "id": q.id,
        "kind": q.kind,
        "question": q.question,
        "answer": answer,
        "truth": q.answer,
        "correct": answer == q.answer,
        "evidence_s": spans,
        "evidence_truth_s": list(q.evidence),
        "evidence_correct": bool(spans)
        and spans[0][0] < q.evidence[1]
        and spans[0][1] + step_s > q.evidence[0],
    }


def _shipped_kinds(model: str) -> set[str] | None:
    """The question kinds the bundled toy model ships (from its card), or None for any other model."""
    from agent.models import TOY_MODEL_DIR

    if model != "toy":
        return None
    card = TOY_MODEL_DIR / "flexselect.json"
    if not card.is_file():
        return None
    kinds = json.loads(card.read_text()).get("kinds")
    return set(kinds) if kinds else None
