"""Every claim of the original study (and the figure of the project's other source), beside
what the study measured, the field's figure and a verdict from one set. A claim about a figure
is a one-sample t-test of the seeds' test accuracies against it; a claim about depth or a
lever takes the verdicts of its (Holm-adjusted) paired tests: confirmed when every tested
comparison confirms it, refuted when any goes significantly the other way (the claim is
general: a counterexample refutes it), else no significant difference. The best model of a
dataset is chosen on validation accuracy."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Optional

from flows.study_stats import NOT_TESTED, REFUTED, CONFIRMED, NO_DIFFERENCE, holm, \
    one_sample_t, verdict

ORIGINAL = "the original study (text only: it reports no figures)"
ARTICLE = "the article on deep CNNs (its MLP baseline)"
FIELD = {"mnist": "CNNs 0.99+; MLPs about 0.98",
         "fashion": "CNNs 0.92-0.94, ResNets 0.95; MLPs about 0.89",
         "cifar": "airbench94 0.94; MLPs about 0.55"}


@dataclass(frozen=True)
class FigureClaim:
    claim: str
    source: str
    evidence: str
    kind: str              # which dataset kind it is about (mnist, fashion, cifar)
    figure: float                   # what the claim is read as
    families: tuple[str, ...] = ()  # whose models it is about (none: every family's)


FIGURE_CLAIMS = (
    FigureClaim("the networks reach a high recognition rate on MNIST (read: ≥ 0.99, the "
                "field's CNN figure)", ORIGINAL, "none: text only", "mnist", 0.99),
    FigureClaim("the deep networks classify CIFAR-10 well (read: ≥ 0.75, the floor this "
                "project sets for its deep CNN on the JPEG copy)", ORIGINAL,
                "none: text only", "cifar", 0.75, ("cnn", "dcnn")),
    FigureClaim("an MLP of one 256-unit ReLU layer (Adam, 10 epochs) reaches 0.8763 on "
                "Fashion-MNIST's test set", ARTICLE, "0.8763 test accuracy (Keras)",
                "fashion", 0.8763, ("bp",)),
)


def kind_of(dataset: str) -> str:
    return next((k for k in ("fashion", "cifar", "mnist") if k in dataset), dataset)


def _best(rows: list[dict[str, Any]], dataset: str, families: tuple[str, ...]
          ) -> Optional[dict[str, Any]]:
    """The claim's models on the dataset with the best mean validation accuracy."""
    cands = [r for r in rows if r["dataset"] == dataset and r["test_acc"]
             and (not families or r["family"] in families)]
    return max(cands, key=lambda r: statistics.fmean(r["val_acc"])) if cands else None


def _combined(verdicts: list[str]) -> str:
    tested = [v for v in verdicts if v != NOT_TESTED]
    if not tested:
        return NOT_TESTED
    if REFUTED in tested:
        return REFUTED
    return CONFIRMED if all(v == CONFIRMED for v in tested) else NO_DIFFERENCE


def _fmt(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.fmean(xs):.4f} ± {sd:.4f}"


def figure_claims(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out, tests = [], []
    for c in FIGURE_CLAIMS:
        for ds in dict.fromkeys(r["dataset"] for r in rows if kind_of(r["dataset"]) == c.kind):
            best = _best(rows, ds, c.families)
            row = {"claim": c.claim, "source": c.source, "evidence": c.evidence,
                   "dataset": ds, "field": FIELD[c.kind], "measured": "no model",
                   "verdict": NOT_TESTED, "p": None, "p_adjusted": None}
            test = None
            if best is not None:
                test = one_sample_t(best["test_acc"], c.figure)
                row.update(measured=f"{best['family']} {_fmt(best['test_acc'])} over "
                           f"{len(best['test_acc'])} seed(s), {best['n_test']:,} test images"
                           + ("" if best["trained"] else " (not trained: a lower bound)"),
                           p=test.p, _trained=best["trained"])
            out.append(row)
            tests.append(test)
    for row, test, padj in zip(out, tests, holm([r["p"] for r in out])):
        row["p_adjusted"] = padj
        if test is not None:
            v = verdict(test, padj)
            # A model still gaining can show a figure is reached, never that it is not.
            row["verdict"] = v if row.pop("_trained") or v == CONFIRMED else NOT_TESTED
    return out


def claims(rows: list[dict[str, Any]], depth: list[dict[str, Any]],
           levers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The claims table: figures, deeper is better per dataset, each lever."""
    out = figure_claims(rows)
    for ds in dict.fromkeys(t["dataset"] for t in depth):
        ts = [t for t in depth if t["dataset"] == ds]
        measured = "; ".join(f"{t['shallower']}→{t['deeper']} " + (
            f"{t['diff']:+.4f} ({t['verdict']})" if t["diff"] is not None else "not tested")
            for t in ts)
        out.append({"claim": "the better the classification performance with the deepening "
                    "of the network model", "source": ORIGINAL, "evidence": "none: text only",
                    "dataset": ds, "measured": measured, "field": FIELD.get(kind_of(ds), ""),
                    "verdict": _combined([t["verdict"] for t in ts])})
    for lever in dict.fromkeys(r["lever"] for r in levers):
        ls = [r for r in levers if r["lever"] == lever]
        tested = [r for r in ls if r["verdict"] != NOT_TESTED]
        counts = {v: sum(r["verdict"] == v for r in tested) for v in (CONFIRMED, REFUTED,
                                                                       NO_DIFFERENCE)}
        out.append({"claim": f"optimising the {lever.replace('_', ' ')} raises the "
                    "classification accuracy", "source": ORIGINAL,
                    "evidence": "none: text only", "dataset": "all",
                    "measured": f"{len(tested)} of {len(ls)} (dataset, family) tested against "
                    "the recipe: " + ", ".join(f"{n} {v}" for v, n in counts.items()),
                    "field": "–",
                    "verdict": _combined([r["verdict"] for r in ls])})
    return out


def claims_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["## The original study's claims, judged", "",
             "| claim | source | its evidence | dataset | measured | field | verdict |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {c['claim']} | {c['source']} | {c['evidence']} | {c['dataset']} | "
              f"{c['measured']} | {c['field']} | **{c['verdict']}** |" for c in rows]
    return "\n".join(lines) + "\n"
