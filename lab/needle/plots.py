"""PNG plots of calibration curves and needle-benchmark accuracy (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure


def _figure() -> tuple[Figure, Axes]:
    """A figure drawn off-screen (no pyplot, so no display backend and no global figure registry)."""
    fig = Figure(figsize=(6, 3.6), dpi=120)
    return fig, fig.subplots()


def _save(fig: Figure, ax: Axes, title: str, path: Path) -> Path:
    """Title, grid and legend, then write the PNG to `path`; returns `path`."""
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_calibration(
    path: Path, curves: dict[str, list[float]], chosen: int, title: str, chance: float | None = None
) -> Path:
    """Per-layer needle metrics (one line each) with the chosen layer and chance marked; returns `path`."""
    fig, ax = _figure()
    for name, values in curves.items():
        ax.plot(range(len(values)), values, marker="o", label=name)
    if chance is not None:
        ax.axhline(chance, color="black", linestyle=":", linewidth=1, label=f"chance {chance:.2f}")
    ax.axvline(chosen, color="grey", linestyle="--", linewidth=1, label=f"chosen layer {chosen}")
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("fraction")
    ax.set_xticks(range(len(next(iter(curves.values())))))
    return _save(fig, ax, title, path)


def row_label(row: dict[str, Any]) -> str:
    """A needle-benchmark row's method, with its selection style when it has one ("reference (stream)")."""
    return row["method"] if not row.get("selection") else f"{row['method']} ({row['selection']})"


def plot_accuracy(path: Path, results: list[dict[str, Any]], title: str) -> Path:
    """Accuracy against frames (log scale), one line per method (and selection style); returns `path`."""
    fig, ax = _figure()
    for method in dict.fromkeys(row_label(r) for r in results):
        rows = sorted((r for r in results if row_label(r) == method and r["n"]), key=lambda r: r["frames"])
        ax.plot([r["frames"] for r in rows], [r["accuracy"] for r in rows], marker="o", label=method)
    ax.set_xscale("log", base=2)
    frames = sorted({r["frames"] for r in results})
    ax.set_xticks(frames, [str(f) for f in frames])
    ax.set_xlabel("frames in the video")
    ax.set_ylabel("accuracy")
    return _save(fig, ax, title, path)
