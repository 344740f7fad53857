"""Accuracy overall and per category from item lines, and the tables printed for a run.

Accuracy counts the scored items (errors are counted apart, never as wrong answers); an item with several
labels in one category (LVBench question types) counts once under each, as the official scorer does.
MLVU's headline M-Avg is the mean of its per-task accuracies.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.eval.benchmarks import Benchmark


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
    """The number the paper reports: accuracy, or for MLVU the mean of per-task accuracies."""
    if benchmark.headline == "m_avg" and benchmark.macro_key:
        accs = [t.accuracy for t in per[benchmark.macro_key].values() if t.accuracy is not None]
        return sum(accs) / len(accs) if accs else None
    return overall.accuracy


def summarize(
    records: dict[str, dict[str, Any]], benchmark: Benchmark, *, items: int, settings: dict[str, Any]
) -> dict[str, Any]:
    """summary.json: counts, headline metric, accuracy and time overall and per category."""
    overall, per = tally(records.values(), benchmark.categories)
    errors = [r for r in records.values() if r.get("status") == "error"]
    scored = [r for r in records.values() if r.get("status") == "ok"]
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
        "headline": {
            "metric": benchmark.headline,
            "value": _round(headline(benchmark, overall, per)),
        },
        "accuracy": _round(overall.accuracy),
        "mean_time_ms": _round(overall.mean_time_ms),
        "mean_kept_tokens": _round(_mean(r.get("kept_tokens") for r in scored)),
        "mean_total_tokens": _round(_mean(r.get("total_tokens") for r in scored)),
        "categories": {
            key: {label: t.as_dict() for label, t in sorted(per[key].items())} for key in benchmark.categories
        },
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
    if metric["metric"] == "m_avg":
        lines.append(f"M-Avg (mean of the per-task accuracies): {_pct(metric['value'])}")
    rows = [("overall", "", summary["scored"], summary["accuracy"], summary["mean_time_ms"])]
    for key, values in summary["categories"].items():
        rows += [(key, label, t["n"], t["accuracy"], t["mean_time_ms"]) for label, t in values.items()]
    width = max(len(r[1]) for r in rows) if rows else 0
    lines.append(f"{'category':<18} {'value':<{width}} {'n':>6} {'acc %':>7} {'ms/item':>9}")
    for key, label, n, acc, ms in rows:
        lines.append(f"{key:<18} {label:<{width}} {n:>6} {_pct(acc):>7} {_ms(ms):>9}")
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
