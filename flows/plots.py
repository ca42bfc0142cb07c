"""Plots people would rather look at than read; PNG bytes, headless (Agg)."""
from __future__ import annotations

import functools
import io
import threading
from typing import Any, Callable, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lightning_modules import metrics as M  # noqa: E402

F = TypeVar("F", bound=Callable[..., Any])
# pyplot keeps global state (the current figure): the pipeline's branches evaluate in threads
# of one process, so every plot is drawn under one lock.
_PYPLOT = threading.Lock()


def one_at_a_time(fn: F) -> F:
    @functools.wraps(fn)
    def locked(*args: Any, **kw: Any) -> Any:
        with _PYPLOT:
            return fn(*args, **kw)
    return locked  # type: ignore[return-value]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


@one_at_a_time
def confusion_png(cm: list[list[int]], classes: list[str], title: str) -> bytes:
    """Row-normalised confusion matrix with counts in the cells."""
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    rows = [sum(r) or 1 for r in cm]
    ax.imshow([[v / rows[i] for v in r] for i, r in enumerate(cm)], cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, cm[i][j], ha="center", va="center", fontsize=7,
                    color="white" if cm[i][j] / rows[i] > 0.5 else "black")
    ax.set_xticks(range(n), [c[:10] for c in classes], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), [c[:10] for c in classes], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def _lever_axis(ax, points: list[dict], base: float | None, fontsize: int) -> None:
    """Test accuracy (mean ± std over seeds) against a lever's values; the base's mean (the
    recipe every value departs from) as a dashed line."""
    ax.errorbar(range(len(points)), [p["mean"] for p in points],
                yerr=[p["std"] for p in points], marker="o", capsize=3)
    ax.set_xticks(range(len(points)), [f"{p['value']:.3g}" if isinstance(p["value"], float)
                                       else str(p["value"]) for p in points],
                  rotation=30, ha="right", fontsize=fontsize)
    if base is not None:
        ax.axhline(base, color="grey", linestyle="--", linewidth=0.8, label="base")
    ax.grid(alpha=0.3)


@one_at_a_time
def lever_panels(results: dict[str, list], title: str, base: float | None = None) -> bytes:
    """One panel per lever: test accuracy (mean ± std over seeds) against the lever's values."""
    fig, axes = plt.subplots(1, len(results), figsize=(3.6 * len(results), 3.2), squeeze=False,
                             layout="constrained")
    for ax, (lever, points) in zip(axes[0], results.items()):
        _lever_axis(ax, points, base, 8)
        ax.set_title(lever, fontsize=10)
        ax.set_ylabel("test accuracy")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


@one_at_a_time
def curves_png(series: dict[str, list[dict]], title: str = "training curves") -> bytes:
    """Validation accuracy and loss per epoch, one line per labelled history."""
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.0))
    for label, rows in series.items():
        epochs = [r["epoch"] for r in rows]
        for ax, key in zip(axes, (M.VAL_ACC, M.VAL_LOSS)):
            ys = [r.get(key) for r in rows]
            if any(y is not None for y in ys):
                ax.plot(epochs, ys, marker="o", label=label)
    for ax, name in zip(axes, ("validation accuracy", "validation loss")):
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    if any(series.values()):
        axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


@one_at_a_time
def scatter_png(points: list[tuple[str, float, float]], xlabel: str, title: str,
                logx: bool = False) -> bytes:
    """Test accuracy against a cost (parameters, training time), one labelled point per model."""
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for label, x, y in points:
        ax.scatter([x], [y])
        ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return _png(fig)


@one_at_a_time
def dataset_panels(by_family: dict[str, dict[str, list]], title: str,
                   bases: dict[str, float] | None = None) -> bytes:
    return _png(dataset_figure(by_family, title, bases))


def dataset_figure(by_family: dict[str, dict[str, list]], title: str,
                   bases: dict[str, float] | None = None):
    """One figure per dataset: a row per lever, a column per family, each panel its test
    accuracy (mean ± std over seeds) against the lever's values, the family's base dashed.
    Constrained layout: titles and tick labels never overlap."""
    families = list(by_family)
    levers = list(dict.fromkeys(lv for r in by_family.values() for lv in r))
    fig, axes = plt.subplots(len(levers), len(families), squeeze=False, layout="constrained",
                             figsize=(3.2 * len(families), 2.6 * len(levers)))
    for row, lever in enumerate(levers):
        for col, fam in enumerate(families):
            ax = axes[row][col]
            _lever_axis(ax, by_family[fam].get(lever, []), (bases or {}).get(fam), 7)
            ax.set_title(f"{fam}: {lever}", fontsize=9)
        axes[row][0].set_ylabel("test accuracy", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig
