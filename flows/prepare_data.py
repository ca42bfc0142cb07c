"""Stage 1: prepare a dataset. Run locally: `python -m flows.prepare_data` or `imgclf prepare`."""
from __future__ import annotations

import base64
import json

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.config import PrepConfig
from flows.prep.build import prepare
from flows.prep.card import render_card
from flows.retry import transient_only
from lightning_modules import layout
from lightning_modules.errors import UserError
from lightning_modules.store import filesystem, join, normalize, read_json


def latest_dataset(store: str, name: str) -> str:
    """The URI of the newest prepared version of a dataset name in a store."""
    pointer = read_json(layout.latest(layout.dataset_dir(store, name)))
    if pointer is None:
        raise UserError(f"no prepared dataset {name!r} in {normalize(store)}; "
                        "run imgclf prepare")
    return pointer["uri"]


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient_only,
      task_run_name="prepare {cfg.dataset}")
def prepare_task(cfg: PrepConfig) -> str:
    """Prepare (or find, on a cache hit) the dataset; returns its store URI."""
    return prepare(cfg).uri


@task(task_run_name="dataset card {name}")
def publish_card(uri: str, name: str) -> str:
    """Show the dataset card, with its sample grid inlined, as a Prefect markdown artifact."""
    fs, path = filesystem(uri)
    manifest = json.loads(fs.cat_file(join(path, layout.MANIFEST)))
    png = base64.b64encode(fs.cat_file(join(path, "samples.png"))).decode()
    md = render_card(manifest, image_ref=f"data:image/png;base64,{png}")
    key = "dataset-card-" + "".join(ch if ch.isalnum() else "-" for ch in name.lower())
    return str(create_markdown_artifact(key=key, markdown=md, description=f"dataset {name}"))


@flow(name="prepare-data")
def prepare_data(cfg: PrepConfig = PrepConfig()) -> str:
    """Turn a raw source into a prepared, content-addressed dataset; returns its URI.

    Args:
        cfg: the source (kind, path or URL, name), the image size and channels, the
            validation split, how bad files are handled, and the store.
    """
    uri = prepare_task(cfg)
    publish_card(uri, cfg.resolved_name())
    return uri


if __name__ == "__main__":
    print(prepare_data(PrepConfig()))
