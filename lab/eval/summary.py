"""Accuracy overall and per category from item lines, and the tables printed for a run.

Accuracy counts the scored items (errors are counted apart, never as wrong answers); an item with several
labels in one category (LVBench question types) counts once under each, as the official scorer does.
MLVU's headline M-Avg is the sum of its seven per-task accuracies divided by seven, a task without scored
items counting 0, as the paper's code (`mlvu_aggregate_results_dev` in its lmms-eval fork) and lmms-eval
compute it. A summary always says whether the run is partial (items not run, errors, tasks missing) and
lists the irregular official records with how each was scored.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lab.eval.benchmarks import Benchmark

NOTES_SHOWN = 20  # irregular records listed in the printed table (all are in summary.json)


@dataclass
class Tally:
    """Scored items, correct ones and their summed time."""

    n: int = 0
    correct: int = 0
    time_ms: float = 0.0

    def add(self, record: dict[str, Any]) -> None:
        self.n += 1
        self.correct += bool(record.get("correct"))
        self.time_ms += float(record.get("time_ms", 0.0))

    @property
    def accuracy(self) -> float | None:
        return 100.0 * self.correct / self.n if self.n else None

    @property
    def mean_time_ms(self) -> float | None:
        return self.time_ms / self.n if self.n else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "correct": self.correct,
            "accuracy": _round(self.accuracy),
            "mean_time_ms": _round(self.mean_time_ms),
        }


def labels(value: Any) -> list[str]:
    """A category value as its list of labels."""
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def tally(
    records: Iterable[dict[str, Any]], keys: tuple[str, ...]
) -> tuple[Tally, dict[str, dict[str, Tally]]]:
    """Overall and per-category tallies of the scored (status "ok") records."""
    overall = Tally()
    per: dict[str, dict[str, Tally]] = {key: defaultdict(Tally) for key in keys}
    for record in records:
        if record.get("status") != "ok":
            continue
        overall.add(record)
        for key in keys:
            if key in record.get("categories", {}):
                for label in labels(record["categories"][key]):
                    per[key][label].add(record)
    return overall, per


def headline(benchmark: Benchmark, overall: Tally, per: dict[str, dict[str, Tally]]) -> float | None:
    """The number the paper reports: accuracy, or for MLVU the per-task accuracies summed over all seven
    tasks and divided by seven (a task without scored items counts 0); None when nothing was scored."""
    if benchmark.headline == "m_avg" and benchmark.macro_key:
        tallies = per[benchmark.macro_key]
        labels = benchmark.macro_labels or tuple(tallies)
        if not overall.n or not labels:
            return None
        return sum(_accuracy_or_zero(tallies.get(label)) for label in labels) / len(labels)
    return overall.accuracy


def missing_labels(benchmark: Benchmark, per: dict[str, dict[str, Tally]]) -> list[str]:
    """The M-Avg labels (MLVU tasks) without a scored item: each counts 0 in the headline."""
    if benchmark.headline != "m_avg" or not benchmark.macro_key:
        return []
    tallies = per[benchmark.macro_key]
    return [label for label in benchmark.macro_labels if not _n(tallies.get(label))]


def partial_reasons(
    benchmark: Benchmark, per: dict[str, dict[str, Tally]], *, items: int, done: int, errors: int
) -> list[str]:
    """Why a run's numbers are not the whole benchmark's (empty for a complete run)."""
    reasons = []
    if items > done:
        reasons.append(f"{items - done} of {items} items not run")
    if errors:
        reasons.append(f"{errors} items are errors, not scored")
    if missing := missing_labels(benchmark, per):
        labels = ", ".join(missing)
        reasons.append(f"no scored items for {benchmark.macro_key} {labels} (each counts 0 in M-Avg)")
    return reasons


def _accuracy_or_zero(t: Tally | None) -> float:
    return t.accuracy or 0.0 if t is not None else 0.0


def _n(t: Tally | None) -> int:
    return t.n if t is not None else 0


def summarize(
    records: dict[str, dict[str, Any]], benchmark: Benchmark, *, items: int, settings: dict[str, Any]
) -> dict[str, Any]:
    """summary.json: counts, headline metric, accuracy and time overall and per category."""
    overall, per = tally(records.values(), benchmark.categories)
    errors = [r for r in records.values() if r.get("status") == "error"]
    scored = [r for r in records.values() if r.get("status") == "ok"]
    reasons = partial_reasons(benchmark, per, items=items, done=len(records), errors=len(errors))
    value = _round(headline(benchmark, overall, per))
    metric: dict[str, Any] = {"metric": benchmark.headline, "value": value}
    if benchmark.headline == "m_avg":
        metric["divided_by"] = len(benchmark.macro_labels)
    return {
        "benchmark": benchmark.name,
        "title": benchmark.title,
        "settings": settings,
        "items": items,
        "done": len(records),
        "scored": overall.n,
        "errors": len(errors),
        "errors_by_stage": dict(Counter(str(r.get("stage")) for r in errors)),
        "unanswered": sum(1 for r in scored if r.get("prediction") is None),
        "complete": not reasons,
        "partial": reasons,
        "headline": metric,
        "accuracy": _round(overall.accuracy),
        "mean_time_ms": _round(overall.mean_time_ms),
        "mean_kept_tokens": _round(_mean(r.get("kept_tokens") for r in scored)),
        "mean_total_tokens": _round(_mean(r.get("total_tokens") for r in scored)),
        "categories": {
            key: {label: t.as_dict() for label, t in sorted(per[key].items())} for key in benchmark.categories
        },
        "annotation_notes": {k: r["note"] for k, r in records.items() if r.get("note")},
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The printed table: a header line, then overall and one row per category value."""
    s = summary["settings"]
    not_run = summary["items"] - summary["done"]
    head = (
        f"{summary['title']}: {s['model']} scorer={s['scorer']}  "
        f"{summary['scored']} scored, {summary['errors']} errors, {not_run} not run"
    )
    metric = summary["headline"]
    lines = [head]
    if summary["partial"]:
        lines.append(f"PARTIAL RUN, not comparable with the paper: {'; '.join(summary['partial'])}")
    if metric["metric"] == "m_avg":
        divisor = metric["divided_by"]
        lines.append(
            f"M-Avg (the {divisor} task accuracies summed / {divisor}, a task without scored items "
            f"counting 0): {_pct(metric['value'])}"
        )
    rows = [("overall", "", summary["scored"], summary["accuracy"], summary["mean_time_ms"])]
    for key, values in summary["categories"].items():
        rows += [(key, label, t["n"], t["accuracy"], t["mean_time_ms"]) for label, t in values.items()]
    width = max(len(r[1]) for r in rows) if rows else 0
    lines.append(f"{'category':<18} {'value':<{width}} {'n':>6} {'acc %':>7} {'ms/item':>9}")
    for key, label, n, acc, ms in rows:
        lines.append(f"{key:<18} {label:<{width}} {n:>6} {_pct(acc):>7} {_ms(ms):>9}")
    notes = summary["annotation_notes"]
    if notes:
        lines.append(f"{len(notes)} irregular official records, scored as the official scorer does:")
        lines += [f"  {item}: {note}" for item, note in list(notes.items())[:NOTES_SHOWN]]
        if len(notes) > NOTES_SHOWN:
            lines.append(f"  ... {len(notes) - NOTES_SHOWN} more in summary.json (annotation_notes)")
    return "\n".join(lines)


def _mean(values: Iterable[Any]) -> float | None:
    numbers = [float(v) for v in values if v is not None]
    return sum(numbers) / len(numbers) if numbers else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
