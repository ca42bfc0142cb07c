"""Statistics of the comparison: McNemar's test between the two best models of a dataset, on
paired per-image correctness over the same test images."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from flows.records import Cell
from lightning_modules.layout import MANIFEST
from lightning_modules.splits import read_labels
from lightning_modules.store import join, read_json, read_npy


def mcnemar(a_right: np.ndarray, b_right: np.ndarray) -> dict[str, Any]:
    """McNemar's test on paired per-image correctness: exact binomial for ≤ 1000 discordant
    pairs, the continuity-corrected chi-square above."""
    b = int(np.sum(a_right & ~b_right))
    c = int(np.sum(~a_right & b_right))
    n = b + c
    if n == 0:
        p = 1.0
    elif n <= 1000:
        logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2)
                for k in range(min(b, c) + 1)]
        p = min(1.0, 2 * sum(math.exp(v) for v in logs))
    else:
        p = math.erfc(math.sqrt((abs(b - c) - 1) ** 2 / n / 2))
    return {"only_a_right": b, "only_b_right": c, "p_value": p,
            "test": "McNemar exact" if n <= 1000 else "McNemar chi-square (continuity)"}


def paired_test(cells: dict[str, Cell]) -> Optional[dict]:
    """McNemar between the two best families of a dataset, on the same test images."""
    ok = sorted(((f, c) for f, c in cells.items() if c.status == "ok"),
                key=lambda fc: -(fc[1].test_acc or 0.0))
    if len(ok) < 2:
        return None
    (fa, a), (fb, b) = ok[:2]
    y = read_labels(a.data_uri, read_json(join(a.data_uri, MANIFEST)) or {}, "test")
    pa = read_npy(join(a.bundle, "test_predictions.npy"))
    pb = read_npy(join(b.bundle, "test_predictions.npy"))
    return {"a": fa, "b": fb, **mcnemar(pa == y, pb == y)}
