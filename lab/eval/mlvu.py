"""MLVU dev, multiple choice (MLVU/MVLU release): seven tasks, reported as M-Avg (mean of task accuracies).

Layout under DIR (or DIR/MLVU):

    json/1_plotQA.json ... json/7_topic_reasoning.json   one list of questions per task
    video/1_plotQA/<video> ...                            videos, one folder per task file

(8_sub_scene and 9_summary are generation tasks and are skipped; video folders named after the task
alone, e.g. video/plotQA/, are found too.) Record fields used: video, question, candidates (option
texts), answer (the correct option's text). An item's task_type is its file's task name (plotQA, needle,
ego, count, order, anomaly_reco, topic_reasoning), the labels lmms-eval averages for M-Avg. Records carry
no id: an item's id is "<task file stem>/<index in the file>".

The gold letter is found as MLVU's own scorer finds it (FlagOpen/FlagEmbedding
MLVU/evaluation/multiple_choice_evaluation/choice_bench.py, `qa_template`; VLMEvalKit
vlmeval/dataset/mlvu.py does the same): the LAST candidate whose text equals the answer. Records that
scorer counts although they are irregular (the answer text repeated among the candidates, an empty
candidate, an answer text matching no candidate, whose gold letter there is "@" so it is always wrong) are
evaluated the same way, each with a note saying how it was scored. A task file that is not JSON becomes
one error for that task; the other tasks still run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.eval.items import AnnotationError, BadRecord, EvalItem, RecordError, lettered, require

TASK_FILES = (
    "1_plotQA",
    "2_needle",
    "3_ego",
    "4_count",
    "5_order",
    "6_anomaly_reco",
    "7_topic_reasoning",
)
TASKS = tuple(stem.split("_", 1)[1] for stem in TASK_FILES)  # the seven labels M-Avg averages over
CATEGORIES = ("task_type",)
MAX_NEW_TOKENS = 16  # mlvu_dev.yaml generation_kwargs
# The paper's lmms-eval fork (eval/lmms_eval/tasks/mlvu_new, task mlvu_dev).
POST_PROMPT = "Answer with the best option's letter from the given choices directly."
ANSWER_PRIMER = "Best option: ("


def release_root(root: Path) -> Path:
    """DIR itself, or DIR/MLVU, whichever holds json/."""
    for candidate in (root, root / "MLVU"):
        if (candidate / "json").is_dir():
            return candidate
    raise AnnotationError(f"no MLVU annotation in {root}: expected json/1_plotQA.json ... (or MLVU/json/)")


def load(root: Path) -> list[EvalItem | BadRecord]:
    """Every multiple-choice question of the task files present, task by task in file order."""
    base = release_root(root)
    present = [stem for stem in TASK_FILES if (base / "json" / f"{stem}.json").is_file()]
    if not present:
        raise AnnotationError(f"{base / 'json'} holds none of {', '.join(f + '.json' for f in TASK_FILES)}")
    items: list[EvalItem | BadRecord] = []
    for stem in present:
        task = stem.split("_", 1)[1]
        try:
            records = _task_records(base / "json" / f"{stem}.json")
        except RecordError as exc:
            items.append(BadRecord(stem, f"{exc}; none of its questions is evaluated", {"task_type": task}))
            continue
        for index, record in enumerate(records):
            rid = f"{stem}/{index}"
            try:
                items.append(_item(base, stem, task, record, rid))
            except RecordError as exc:
                items.append(BadRecord(rid, f"malformed annotation record: {exc}", {"task_type": task}))
    return items


def _task_records(path: Path) -> list[Any]:
    """The list of question records of one task file (a `RecordError` when it is not one)."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"task file {path.name} is not JSON ({exc})") from None
    if not isinstance(records, list):
        kind = type(records).__name__
        raise RecordError(f"task file {path.name} holds {kind}, expected a list of questions")
    return records


def _item(base: Path, stem: str, task: str, record: Any, rid: str) -> EvalItem:
    if not isinstance(record, dict):
        raise RecordError(f"the record is {type(record).__name__}, expected an object")
    candidates = [str(c) for c in require(record, "candidates", list)]  # type: ignore[union-attr]
    if not candidates:
        raise RecordError("the record has no candidates")
    answer = str(require(record, "answer", (str, int, float)))
    video = str(require(record, "video", str))
    path = base / "video" / stem / video
    if not path.is_file() and (base / "video" / task / video).is_file():
        path = base / "video" / task / video
    options = lettered(candidates)
    question = str(require(record, "question", str)).strip()
    gold, note = gold_letter(options, answer)
    notes = [note] if note else []
    if not question:
        notes.append("the question is empty and is asked empty, as choice_bench.py does")
    if len(options) < 2:
        notes.append("the record has a single candidate and is asked as it is, as choice_bench.py does")
    return EvalItem(
        id=rid,
        video=path,
        question=question,
        options=options,
        answer=gold,
        categories={"task_type": task},
        note="; ".join(notes) or None,
    )


def gold_letter(options: dict[str, str], answer: str) -> tuple[str | None, str | None]:
    """The gold letter as MLVU's choice_bench.py finds it, and a note when the record is irregular.

    choice_bench.py's `qa_template` walks the candidates and keeps the index of the last one equal to the
    answer text (-1, rendered "@", when none is), then scores a prediction against that letter.
    """
    matches = [letter for letter, text in options.items() if text == answer]
    notes = []
    empty = [letter for letter, text in options.items() if not text.strip()]
    if empty:
        notes.append(f"option {', '.join(empty)} is empty and is shown empty, as choice_bench.py does")
    if not matches:
        notes.append(
            f"the answer {answer!r} matches no candidate: choice_bench.py's gold letter is then '@', which "
            "no reply can match, so the item is answered and counts as wrong"
        )
        return None, "; ".join(notes)
    if len(matches) > 1:
        notes.append(
            f"the answer text is candidates {', '.join(matches)}: the gold letter is the last, "
            f"{matches[-1]}, as in choice_bench.py and VLMEvalKit"
        )
    return matches[-1], "; ".join(notes) or None


def prompt(item: EvalItem, subtitles: list[str] | None = None) -> str:
    """The fork's mlvu_dev prompt: question and "(A) option" lines, the instruction, "Best option: ("."""
    options = "\n".join(f"({k}) {v}" for k, v in item.options.items())
    return "\n" + item.question + "\n" + options + "\n" + POST_PROMPT + "\n" + ANSWER_PRIMER
