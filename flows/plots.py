"""Plots people would rather look at than read; PNG bytes, headless (Agg)."""
from __future__ import annotations

import functools
import io
import threading
from typing import Any, Callable, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
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
def depth_png(rows: list[dict], title: str) -> bytes:
    """A dataset's depth models: validation accuracy per epoch, a thin line per seed and the
    family's colour; the y-range shared and within [0, 1]."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4), layout="constrained")
    for n, r in enumerate(rows):
        colour = f"C{n}"
        for i, curve in enumerate(r["val_curve"]):
            ax.plot(range(1, len(curve) + 1), curve, color=colour, marker="o", markersize=3,
                    linewidth=1, alpha=0.8,
                    label=f"{r['family']} ({r['epochs']} ep.)" if i == 0 else None)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(*_ylim([v for r in rows for c in r["val_curve"] for v in c]))
    ax.grid(alpha=0.3)
    if any(r["val_curve"] for r in rows):
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return _png(fig)


def _ylim(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    pad = max(0.01, (hi - lo) * 0.1)
    return max(0.0, lo - pad), min(1.0, hi + pad)


def _race_axis(ax, lever: dict, fontsize: int) -> list[float]:
    """Validation accuracy of each value at each rung it raced (darker: larger rung), the
    recipe's value marked with a star, the chosen one's label in bold."""
    values = [str(v) for v in lever["values"]]
    ys = []
    rungs = [g for g in lever["race"] if g["results"]]
    for k, g in enumerate(rungs):
        shade = 0.35 + 0.65 * (k + 1) / len(rungs)
        xs = [values.index(str(x["value"])) for x in g["results"]]
        vs = [x["val_acc"] for x in g["results"]]
        ys += vs
        ax.scatter(xs, vs, color=(0.1, 0.3, 0.7, shade), s=18,
                   label=f"{g['images']:,}×{g['epochs']}")
        rec = [v for x, v in zip(g["results"], vs) if str(x["value"]) == str(lever["recipe"])]
        if rec:
            ax.scatter([values.index(str(lever["recipe"]))], rec, marker="*", s=90,
                       color="darkorange", zorder=3)
    ax.set_xticks(range(len(values)), values, rotation=30, ha="right", fontsize=fontsize)
    for tick in ax.get_xticklabels():
        if tick.get_text() == str(lever["chosen"]):
            tick.set_fontweight("bold")
    ax.grid(alpha=0.3)
    return ys


@one_at_a_time
def levers_png(levers: list[dict], title: str) -> bytes:
    """A dataset's races: a row per family, a column per lever, the y-range shared by a row
    and within [0, 1]; the recipe's value a star, the winner's label bold."""
    families = list(dict.fromkeys(r["family"] for r in levers))
    names = list(dict.fromkeys(r["lever"] for r in levers))
    fig, axes = plt.subplots(len(families), len(names), squeeze=False, layout="constrained",
                             figsize=(3.0 * len(names), 2.5 * len(families)))
    for row, fam in enumerate(families):
        ys = []
        for col, name in enumerate(names):
            ax = axes[row][col]
            lever = next((r for r in levers if r["family"] == fam and r["lever"] == name), None)
            if lever is not None:
                ys += _race_axis(ax, lever, 7)
            ax.set_title(f"{fam}: {name}", fontsize=9)
        lim = _ylim(ys)
        for ax in axes[row]:
            ax.set_ylim(*lim)
        axes[row][0].set_ylabel("validation accuracy", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _png(fig)
