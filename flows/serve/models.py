"""The published models the prototype page serves: champions and the latest run's models,
loaded only when their run's manifest vouches for the bundle's bytes."""
from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from typing import Any

from flows.pointers import latest_run, read_pointer
from lightning_modules import layout
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO, WEIGHTS, BundleError, Predictor, load_bundle
from lightning_modules.config import NAME_PATTERN
from lightning_modules.errors import UserError
from lightning_modules.nets import FAMILIES
from lightning_modules.store import filesystem, join, normalize, read_json

_NAME = NAME_PATTERN.strip("^$")
# `dataset/family[@run]`, the families from their registry.
MODEL_ID = re.compile(rf"^(?P<ds>{_NAME})/(?P<fam>{'|'.join(map(re.escape, FAMILIES))})"
                      rf"(@(?P<run>{_NAME}))?$")


class UnknownModel(UserError):
    """A model id that names nothing published."""


class Registry:
    """Lists published models and keeps a few loaded (LRU), thread-safe."""

    def __init__(self, store: str, keep: int = 8) -> None:
        self.store, self.keep = normalize(store), keep
        self._loaded: OrderedDict[str, tuple[Predictor, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def champions(self) -> dict[tuple[str, str], dict]:
        fs, path = filesystem(layout.champions_dir(self.store))
        out = {}
        for f in sorted(fs.glob(join(path, "*", "*.json"))):
            c = read_pointer(join(layout.champions_dir(self.store), f[len(path) + 1:]),
                             {"dataset", "family", "run_id", M.TEST_ACC})
            if c:
                out[(c["dataset"], c["family"])] = c
        return out

    def models(self) -> list[dict[str, Any]]:
        """Every champion, plus each model of the latest run; champions marked."""
        champs = self.champions()
        rows = {(c["dataset"], c["family"], c["run_id"]): c[M.TEST_ACC] for c in champs.values()}
        latest = latest_run(self.store)
        comp = read_json(join(latest["uri"], "comparison.json")) if latest else None
        for ds, fams in (comp or {}).get("cells", {}).items():
            for fam, cell in fams.items():
                if cell.get("status") == "ok":
                    rows.setdefault((ds, fam, comp["run_id"]), cell[M.TEST_ACC])
        return [{"id": f"{ds}/{fam}@{rid}", "dataset": ds, "family": fam, "run_id": rid,
                 M.TEST_ACC: acc, "champion": champs.get((ds, fam), {}).get("run_id") == rid}
                for (ds, fam, rid), acc in sorted(rows.items())]

    def resolve(self, model_id: str) -> tuple[str, str, str]:
        """(dataset, family, run id) for `ds/family` (its champion) or `ds/family@run`."""
        m = MODEL_ID.match(model_id or "")
        if not m:
            raise UnknownModel(f"model {model_id!r} is not of the form dataset/family[@run]")
        ds, fam, run = m["ds"], m["fam"], m["run"]
        if run is None:
            champ = self.champions().get((ds, fam))
            if champ is None:
                raise UnknownModel(f"no champion for {ds}/{fam}; see GET /models")
            run = champ["run_id"]
        return ds, fam, run

    def get(self, model_id: str) -> tuple[Predictor, dict]:
        ds, fam, run = self.resolve(model_id)
        key = f"{ds}/{fam}@{run}"
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        loaded = self._load(ds, fam, run)
        with self._lock:
            self._loaded[key] = loaded
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
        return loaded

    def _load(self, ds: str, fam: str, run: str) -> tuple[Predictor, dict]:
        run_uri = layout.run_uri(self.store, run)
        manifest = read_json(join(run_uri, layout.MANIFEST))
        if manifest is None:
            raise UnknownModel(f"run {run!r} is not published (no manifest)")
        fs, path = filesystem(run_uri)
        for name in (INFO, WEIGHTS):
            listed = manifest["files"].get(f"{ds}/{fam}/{name}")
            if listed is None:
                raise UnknownModel(f"{ds}/{fam} is not in run {run!r}")
            data = fs.cat_file(join(path, ds, fam, name))
            if hashlib.sha256(data).hexdigest() != listed["sha256"]:
                raise BundleError(f"{run}/{ds}/{fam}/{name} does not match the run's manifest")
        pred = load_bundle(join(run_uri, ds, fam))
        metrics = read_json(join(run_uri, ds, fam, layout.METRICS)) or {}
        return pred, {"id": f"{ds}/{fam}@{run}", "dataset": ds, "family": fam, "run_id": run,
                      "uri": join(run_uri, ds, fam), "metrics": metrics}
