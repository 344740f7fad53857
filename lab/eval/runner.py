"""The evaluation loop: skip finished items, answer the rest one line at a time, summarise.

Every item ends as exactly one line in items.jsonl, an answer or an error (malformed record, missing
or unreadable video, unreadable subtitles, a model failure), so a bad item never stops the run and a
rerun with the same --out resumes where the last one stopped. The summary always covers every item of the
benchmark done so far, so a `--limit` rerun never hides a larger run's results; the progress bar's
accuracy counts the resumed items too.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol

from tqdm import tqdm

from lab.eval.benchmarks import Benchmark
from lab.eval.items import BadRecord, EvalItem, ItemFailure, RecordError
from lab.eval.options import extract_choice
from lab.eval.results import ResultStore
from lab.eval.summary import summarize


class Session(Protocol):
    """What the loop needs from the model side (`lab.eval.model.ModelSession`)."""

    def video(self, path: Any) -> tuple[Any, bool]: ...

    def answer(self, video: Any, prompt: str) -> Any: ...


def pending(
    items: list[EvalItem | BadRecord], done: dict[str, dict[str, Any]], *, retry_errors: bool
) -> list[EvalItem | BadRecord]:
    """The items still to run: not in items.jsonl yet (or there only as an error, with `retry_errors`)."""

    def finished(item_id: str) -> bool:
        record = done.get(item_id)
        return record is not None and not (retry_errors and record.get("status") == "error")

    return [item for item in items if not finished(item.id)]


def error_line(item: EvalItem | BadRecord, stage: str, message: str, **extra: Any) -> dict[str, Any]:
    """The items.jsonl line of an item that could not be answered."""
    return {
        "id": item.id,
        "status": "error",
        "stage": stage,
        "error": message,
        "categories": _plain(item.categories),
        **extra,
    }


def evaluate(item: EvalItem | BadRecord, benchmark: Benchmark, session: Session) -> dict[str, Any]:
    """Answer one item and return its items.jsonl line (an error line when it cannot be answered)."""
    if isinstance(item, BadRecord):
        return error_line(item, "annotation", item.message)
    if not item.video.is_file():
        hint = f" ({item.video_hint})" if item.video_hint else ""
        return error_line(item, "video", f"video not found: {item.video}{hint}", **_note(item))
    start = time.perf_counter()
    try:
        video, cached = session.video(item.video)
        try:
            shown = benchmark.subtitles(item, video.times) if benchmark.subtitles else None
        except (RecordError, OSError, ValueError, KeyError, TypeError) as exc:
            raise ItemFailure("subtitles", f"cannot read subtitles {item.subtitles}: {exc}") from None
        result = session.answer(video, benchmark.prompt(item, shown))
    except ItemFailure as exc:
        return error_line(item, exc.stage, str(exc), video=str(item.video), **_note(item))
    elapsed = (time.perf_counter() - start) * 1e3
    choice = extract_choice(result.answer, item.options)
    timings = {
        "decode": 0.0 if cached else video.decode_ms,
        "encode": 0.0 if cached else video.encode_ms,
        **result.timings_ms,
    }
    return {
        "id": item.id,
        "status": "ok",
        "video": str(item.video),
        "categories": _plain(item.categories),
        "answer": item.answer,
        "prediction": choice.letter,
        "extracted_by": choice.method,
        "correct": item.answer is not None and choice.letter == item.answer,
        "response": result.answer,
        "frames": len(video.times),
        "subtitle_lines": None if shown is None else len(shown),
        "total_tokens": result.total_tokens,
        "kept_tokens": result.kept_tokens,
        "budget": result.budget,  # the budget selection used (after rounding to whole frames)
        "video_cached": cached,
        "time_ms": round(elapsed, 2),
        "timings_ms": {k: round(v, 2) for k, v in timings.items()},
        **_note(item),
    }


def _note(item: EvalItem) -> dict[str, str]:
    """The line's "note" field for an irregular official record (absent otherwise)."""
    return {"note": item.note} if item.note else {}


def run(
    benchmark: Benchmark,
    items: list[EvalItem | BadRecord],
    session: Session,
    store: ResultStore,
    *,
    retry_errors: bool = False,
    progress: bool = True,
    limit: int | None = None,
) -> dict[str, Any]:
    """Evaluate the pending items among the first `limit` (all by default), appending a line each, then
    write and return summary.json's content, which covers every item of `items` done so far."""
    done = store.records()
    selected = items[:limit] if limit else items
    todo = pending(selected, done, retry_errors=retry_errors)
    todo_ids = {item.id for item in todo}
    earlier = [done[item.id] for item in selected if item.id in done and item.id not in todo_ids]
    scored = sum(1 for r in earlier if r.get("status") == "ok")
    correct = sum(1 for r in earlier if r.get("status") == "ok" and r.get("correct"))
    bar = tqdm(
        total=len(selected),
        initial=len(selected) - len(todo),
        desc=benchmark.name,
        unit="item",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    with bar:
        if scored:
            bar.set_postfix(acc=f"{100 * correct / scored:.1f}%", refresh=False)
        for item in todo:
            line = evaluate(item, benchmark, session)
            store.append(line)
            if line["status"] == "ok":
                scored += 1
                correct += bool(line["correct"])
                bar.set_postfix(acc=f"{100 * correct / scored:.1f}%", refresh=False)
            bar.update(1)
    ids = {item.id for item in items}
    records = {k: v for k, v in store.records().items() if k in ids}
    summary = summarize(records, benchmark, items=len(items), settings=store.settings.model_dump(mode="json"))
    store.write_summary(summary)
    return summary


def _plain(categories: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in categories.items()}
