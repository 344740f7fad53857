"""`eval compare A B`: two result directories side by side, accuracy and time per item, with differences.

Both runs are scored on the items that both answered, so a partial run compares fairly; the table says
how many that is. Works on finished and on still-running (or interrupted) directories alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.eval.benchmarks import get_benchmark
from lab.eval.results import ResultsError, read_items, read_settings
from lab.eval.summary import headline, tally


def compare(a: Path, b: Path) -> str:
    """The comparison table of results directories `a` and `b`.

    Raises:
        ResultsError: either is not a results directory, or they hold different benchmarks.
    """
    sa, sb = read_settings(a), read_settings(b)
    if sa.benchmark != sb.benchmark:
        raise ResultsError(f"cannot compare {sa.benchmark} ({a}) with {sb.benchmark} ({b})")
    benchmark = get_benchmark(sa.benchmark)
    ra, rb = _scored(read_items(a)), _scored(read_items(b))
    common = [k for k in ra if k in rb]
    ta, pa = tally((ra[k] for k in common), benchmark.categories)
    tb, pb = tally((rb[k] for k in common), benchmark.categories)
    lines = [
        f"{benchmark.title}: {len(common)} items answered by both (A: {len(ra)}, B: {len(rb)})",
        f"A: {a}  {_describe(sa.model_dump())}",
        f"B: {b}  {_describe(sb.model_dump())}",
        f"{'category':<18} {'value':<24} {'n':>6} {'A acc':>7} {'B acc':>7} {'Δ acc':>7}"
        f" {'A ms':>9} {'B ms':>9} {'A/B time':>9}",
    ]
    if benchmark.headline == "m_avg":
        m_a, m_b = headline(benchmark, ta, pa), headline(benchmark, tb, pb)
        lines.append(_row(benchmark.headline, "", len(common), (m_a, m_b), (None, None)))
    lines.append(_row("overall", "", ta.n, (ta.accuracy, tb.accuracy), (ta.mean_time_ms, tb.mean_time_ms)))
    for key in benchmark.categories:
        for label in sorted(set(pa[key]) | set(pb[key])):
            x, y = pa[key][label], pb[key][label]
            lines.append(_row(key, label, x.n, (x.accuracy, y.accuracy), (x.mean_time_ms, y.mean_time_ms)))
    return "\n".join(lines)


def _scored(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in records.items() if r.get("status") == "ok"}


def _describe(settings: dict[str, Any]) -> str:
    sampling = settings["sampling"]
    rate = f"{sampling['frames']} frames" if sampling["frames"] else f"{sampling['fps']} fps"
    budget = settings["selection"]["budget"] or "32 frames"
    extra = "" if settings["scorer"] == "none" else f" budget={budget}"
    return f"{settings['model']} scorer={settings['scorer']} {rate}{extra}"


Pair = tuple[float | None, float | None]


def _row(key: str, label: str, n: int, acc: Pair, ms: Pair) -> str:
    """One table row: accuracies of A and B and their difference, times and A's time over B's."""
    diff = None if acc[0] is None or acc[1] is None else acc[1] - acc[0]
    ratio = f"{ms[0] / ms[1]:.2f}x" if ms[0] and ms[1] else "-"
    return (
        f"{key:<18} {label:<24} {n:>6} {_pct(acc[0]):>7} {_pct(acc[1]):>7} {_signed(diff):>7}"
        f" {_ms(ms[0]):>9} {_ms(ms[1]):>9} {ratio:>9}"
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
