"""The final task's model comparison: comparison.json, .md and a self-contained .html (from
the Jinja2 template flows/templates/comparison.html)."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prefect import task

from flows.plots import curves_png, scatter_png
from flows.records import BranchRecord, Cell, Files, chosen_seed, seed_summary
from flows.stats import paired_test
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO
from lightning_modules.store import join, read_json, write_bytes, write_json

# The report's columns: (a Cell field, header, format). A new column is a Cell field
# (flows/records.py), the line here, and where its value comes from in `cell()`.
COLUMNS = [
    ("test_acc", "test acc", "acc"), ("macro_f1", "macro-F1", ".4f"), ("ece", "ECE", ".4f"),
    ("params", "params", ",d"), ("flops_per_image", "FLOPs/img", ",d"),
    ("train_seconds", "train s", ".1f"), ("img_per_s", "img/s", ",.0f"),
    ("latency_ms_p99", "p99 ms", ".2f"), ("best_params", "best hyperparameters", "params")]
_TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                         autoescape=select_autoescape(["html"]))


def cell(rec: BranchRecord) -> Cell:
    """One dataset × family entry of the comparison from a branch record."""
    if rec.error:
        return Cell(status="failed", error=rec.error)
    infos = [read_json(join(b, INFO)) for b in rec.bundles]
    metrics = [read_json(u) for u in rec.metrics_uris]
    pick = chosen_seed(infos)
    m, s = metrics[pick], seed_summary(metrics)
    best = read_json(rec.tune_uri) if rec.tune_uri else None
    return Cell(status="ok", test_acc=s["mean"], test_acc_std=s["std"], seeds=len(metrics),
                macro_f1=m[M.TEST_F1], ece=m[M.TEST_ECE], params=m["params"],
                flops_per_image=m["flops_per_image"],
                train_seconds=float(np.mean([i.get("train_seconds") or 0.0 for i in infos])),
                img_per_s=m["img_per_s"], latency_ms_p50=m["latency_ms_p50"],
                latency_ms_p99=m["latency_ms_p99"], best_params=(best or {}).get("params"),
                history=infos[pick].get("history", []), bundle=rec.bundles[pick],
                data_uri=infos[pick]["data_uri"],
                tuning={"trials_run": (best or {}).get("trials"), "cached": rec.tune_cached,
                        "requested": rec.trials_requested, "budget_note": rec.budget_note})


def cells_of(comp: dict) -> list[tuple[str, str, Cell]]:
    """(dataset, family, cell) for every cell of a comparison."""
    return [(ds, fam, Cell.model_validate(c)) for ds, fams in comp["cells"].items()
            for fam, c in fams.items()]


def build(run_id: str, records: list[BranchRecord | dict], families: list[str],
          failed_datasets: dict[str, str], studies: dict[str, str], notes: list[str]
          ) -> dict[str, Any]:
    """comparison.json's content: every dataset × family cell, failed or missing ones marked."""
    recs = [BranchRecord.model_validate(r) for r in records]
    datasets = list(dict.fromkeys([r.dataset for r in recs] + list(failed_datasets)))
    by_key = {(r.dataset, r.family): r for r in recs}
    cells: dict[str, dict[str, Cell]] = {}
    for ds in datasets:
        cells[ds] = {}
        for fam in families:
            if ds in failed_datasets:
                cells[ds][fam] = Cell(status="failed", error=f"dataset: {failed_datasets[ds]}")
            elif (ds, fam) not in by_key:
                cells[ds][fam] = Cell(status="missing", error="not run")
            else:
                cells[ds][fam] = cell(by_key[(ds, fam)])
    return {"run_id": run_id, "datasets": datasets, "families": families,
            "cells": {ds: {f: c.dump() for f, c in fams.items()} for ds, fams in cells.items()},
            "paired_tests": {ds: paired_test(c) for ds, c in cells.items()},
            "studies": studies, "notes": notes}


@task(task_run_name="compare {run_id}")
def compare_task(run_id: str, records: list[BranchRecord], families: list[str],
                 failed_datasets: dict[str, str], studies: dict[str, str], notes: list[str]
                 ) -> dict[str, Any]:
    """The final task's comparison of every model of the run (the table, paired tests)."""
    return build(run_id, records, families, failed_datasets, studies, notes)


def _fmt(c: Cell, key: str, fmt: str) -> str:
    v = getattr(c, key)
    if fmt == "acc":
        return f"{c.test_acc:.4f}" + (f" ± {c.test_acc_std:.4f}" if c.seeds > 1 else "")
    if fmt == "params":
        return ", ".join(f"{k}={_short(x)}" for k, x in (v or {}).items()) or "—"
    return "—" if v is None else format(v, fmt)


def _short(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def table_rows(comp: dict) -> list[dict[str, str]]:
    """One row per dataset × family, formatted (the Prefect table artifact and the markdown)."""
    rows = []
    for ds, fam, c in cells_of(comp):
        row = {"dataset": ds, "family": fam}
        for key, head, fmt in COLUMNS:
            row[head] = _fmt(c, key, fmt) if c.status == "ok" else \
                (f"{c.status.upper()}: {c.error}"[:120] if key == "test_acc" else "")
        rows.append(row)
    return rows


def plots(comp: dict) -> dict[str, bytes]:
    """Accuracy vs parameters and vs training time, and the training curves per dataset."""
    ok = [(ds, f, c) for ds, f, c in cells_of(comp) if c.status == "ok"]
    out = {"acc_vs_params.png": scatter_png([(f"{ds}/{f}", c.params, c.test_acc)
                                             for ds, f, c in ok], "parameters",
                                            "test accuracy vs parameters", logx=True),
           "acc_vs_train_time.png": scatter_png([(f"{ds}/{f}", c.train_seconds, c.test_acc)
                                                 for ds, f, c in ok], "training seconds",
                                                "test accuracy vs training time")}
    for ds in comp["datasets"]:
        series = {f: c.history for d, f, c in ok if d == ds}
        if series:
            out[f"curves_{ds}.png"] = curves_png(series, f"{ds}: training curves")
    return out


def paired_lines(comp: dict) -> list[str]:
    """McNemar's test between the top two families of each dataset, one line each."""
    return [f"{ds}: " + ("fewer than two models" if t is None else
            f"{t['a']} vs {t['b']}: only {t['a']} right on {t['only_a_right']}, only "
            f"{t['b']} right on {t['only_b_right']}, p = {t['p_value']:.3g} ({t['test']})")
            for ds, t in comp["paired_tests"].items()]


def markdown(comp: dict, images: dict[str, str]) -> str:
    """The report; `images` maps plot names to what an <img> should point at."""
    rows = table_rows(comp)
    heads = list(rows[0]) if rows else []
    lines = [f"# Model comparison — run `{comp['run_id']}`", ""]
    lines += [f"- {n}" for n in comp["notes"]] + ([""] if comp["notes"] else [])
    lines += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(r.values()) + " |" for r in rows]
    lines += ["", "## Paired tests (top two per dataset, same test images)", ""]
    lines += [f"- {line}" for line in paired_lines(comp)]
    lines += ["", "## Plots", ""] + [f"![{n}]({ref})" for n, ref in images.items()]
    return "\n".join(lines) + "\n"


def html(pngs: dict[str, bytes], comp: dict) -> str:
    """A self-contained page (plots inlined as data URIs): the table, notes and the plots."""
    rows = table_rows(comp)
    notes = list(comp["notes"]) + paired_lines(comp)
    images = {n: base64.b64encode(b).decode() for n, b in pngs.items()}
    return _TEMPLATES.get_template("comparison.html").render(
        run_id=comp["run_id"], heads=list(rows[0]) if rows else [], rows=rows, notes=notes,
        images=images)


def write_comparison(run: str, comp: dict, study_pngs: dict[str, bytes]) -> tuple[Files, str]:
    """Write the plots, comparison.json/.md/.html into the run folder; returns the files and
    the markdown with its plots inlined (for the Prefect artifact, which has no folder)."""
    pngs = {**plots(comp), **study_pngs}
    files: Files = {f"plots/{n}": write_bytes(join(run, "plots", n), b) for n, b in pngs.items()}
    md_text = markdown(comp, {n: f"plots/{n}" for n in pngs})
    files["comparison.md"] = write_bytes(join(run, "comparison.md"), md_text.encode())
    files["comparison.html"] = write_bytes(join(run, "comparison.html"),
                                           html(pngs, comp).encode())
    slim = {**comp, "cells": {ds: {f: Cell.model_validate(c).dump(history=False)
                                   for f, c in fams.items()} for ds, fams in comp["cells"].items()}}
    files["comparison.json"] = write_json(join(run, "comparison.json"), slim)
    inline = {n: "data:image/png;base64," + base64.b64encode(b).decode() for n, b in pngs.items()}
    return files, markdown(comp, inline)
