"""The prototype page and its JSON API: draw or upload a digit, see the input as the network
sees it, every layer's activations and the class probabilities. Run: `imgclf serve`."""
from __future__ import annotations

import asyncio
import functools
import os
import threading
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from flows.pointers import latest_run
from flows.serve.models import Registry, UnknownModel
from flows.serve.render import classify
from flows.serve.upload import FIELD, decode_image, image_bytes
from lightning_modules import metrics as M
from lightning_modules.bundle import BundleError
from lightning_modules.errors import StoreError, UserError
from lightning_modules.store import filesystem, is_local, join, normalize, read_json
from lightning_modules.store_check import check_store

HEADER_TIMEOUT_S = 5.0  # a client must send its request headers within this (server)
QUEUE = 256             # requests in progress at once; more wait in the listen backlog
_PAGES = Environment(loader=FileSystemLoader(Path(__file__).parent),
                     autoescape=select_autoescape(["html"]))


def page(name: str) -> str:
    """A page of the app, told the metric names it shows (one registry, no literals)."""
    return _PAGES.get_template(name).render(TEST_ACC=M.TEST_ACC, TEST_F1=M.TEST_F1,
                                            TEST_ECE=M.TEST_ECE, FIELD=FIELD)


def create_app(store: str, max_concurrent: int = 4) -> FastAPI:
    app = FastAPI(title="imgclf prototype", version="1",
                  description="Classify a drawn or uploaded image with a published model and "
                              "see every layer's activations.")
    registry = Registry(store)
    # Inference at once; the rest wait their turn (a thread semaphore: classify runs in
    # worker threads, whatever event loop serves the request).
    gate = threading.BoundedSemaphore(max_concurrent)

    root = normalize(store).rstrip("/")

    def public(e: Exception) -> str:
        """An error's line as a client may read it: store paths relative to the store."""
        return str(e).replace(root, "<store>")

    @app.exception_handler(UserError)
    async def _user_error(_: Request, e: UserError) -> JSONResponse:
        return JSONResponse({"detail": public(e)},
                            status_code=404 if isinstance(e, UnknownModel) else 400)

    @app.exception_handler(BundleError)
    async def _bundle_error(_: Request, e: BundleError) -> JSONResponse:
        return JSONResponse({"detail": f"model unavailable: {public(e)}"}, status_code=503)

    @app.exception_handler(FileNotFoundError)
    async def _missing(_: Request, e: FileNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": "not found in the store"}, status_code=404)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"detail": "internal error"}, status_code=500)  # no trace leaks

    pages = {"page": page("page.html"), "runs": page("runs.html")}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def main_page() -> str:
        return pages["page"]

    @app.get("/runs", response_class=HTMLResponse, include_in_schema=False)
    def runs_page() -> str:
        return pages["runs"]

    @app.get("/models", summary="published models (champions marked)")
    def models() -> list[dict[str, Any]]:
        return registry.models()

    @app.get("/models/{dataset}/{family}/metrics", summary="a model's test metrics")
    def metrics(dataset: str, family: str, run: Optional[str] = None) -> dict:
        _, meta = registry.get(f"{dataset}/{family}" + (f"@{run}" if run else ""))
        return {k: v for k, v in meta["metrics"].items() if k not in ("predictions",)}

    @app.get("/models/{dataset}/{family}/confusion.png", summary="confusion matrix plot")
    def confusion(dataset: str, family: str, run: Optional[str] = None) -> Response:
        _, meta = registry.get(f"{dataset}/{family}" + (f"@{run}" if run else ""))
        fs, path = filesystem(join(meta["uri"], "confusion.png"))
        return Response(fs.cat_file(path), media_type="image/png")

    @app.get("/runs/latest", summary="the latest run's comparison (JSON)")
    def latest_comparison() -> dict:
        latest = latest_run(registry.store)
        comp = read_json(join(latest["uri"], "comparison.json")) if latest else None
        if comp is None:
            raise HTTPException(404, "no published run in this store yet")
        return comp

    @app.get("/runs/latest/comparison.html", response_class=HTMLResponse,
             summary="the latest run's comparison report")
    def latest_report() -> str:
        latest = latest_run(registry.store)
        if latest is None:
            raise HTTPException(404, "no published run in this store yet")
        fs, path = filesystem(join(latest["uri"], "comparison.html"))
        return fs.cat_file(path).decode()

    @app.post("/predict", summary="classify one image",
              description="Body: the image (`image/*`) or multipart/form-data with a file field "
                          f"`{FIELD}`. Returns the top class as `label`, the probabilities, the "
                          "input as the network sees it and each layer's activations.",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "image/*": {"schema": {"type": "string", "format": "binary"}},
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      FIELD: {"type": "string", "format": "binary"}}}}}}})
    async def predict(request: Request, model: str = Query(..., description="dataset/family "
                                                           "(its champion) or dataset/family@run"),
                      centre: Optional[bool] = None) -> dict:
        img = decode_image(await image_bytes(request))
        pred, meta = await asyncio.to_thread(registry.get, model)

        def gated() -> dict:
            with gate:
                return classify(pred, meta, img, centre)
        return await asyncio.to_thread(gated)

    return app


def serving_store(store: str) -> str:
    """The store to serve, checked: a bucket that exists, or a local folder that exists."""
    url = check_store(store, write=False)
    if is_local(url):
        path = url.removeprefix("file://")
        if not os.path.exists(path):
            raise StoreError(f"--store {store}: no such folder (run `imgclf pipeline` or "
                             "`imgclf publish` first, or name the store that holds the runs)")
        if not os.path.isdir(path):
            raise StoreError(f"--store {store}: a file, not a folder or a bucket")
    return url


def serve(store: str, host: str = "127.0.0.1", port: int = 8000,
          header_timeout_s: float = HEADER_TIMEOUT_S, queue: int = QUEUE) -> None:
    """Serve the app with Granian (Rust, hyper): it answers 414 for an over-long URL and 431 for
    over-large headers before the app sees them, drops a client that has not sent its headers
    within `header_timeout_s` (idle and slow clients cannot hold the server), and takes at most
    `queue` requests at once; more wait in the listen backlog instead of getting 503.
    uvicorn has no header read timeout, so half-sent requests held its slots for minutes."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    url = serving_store(store)
    print(f"serving the page on http://{host}:{port}/ (models from {url}); Ctrl-C stops",
          flush=True)
    server = Server("flows.serve.app:create_app", factory=True, address=host, port=port,
                    interface=Interfaces.ASGI, http=HTTPModes.http1, workers=1, backlog=2048,
                    backpressure=queue, log_level=LogLevels.warning,
                    http1_settings=HTTP1Settings(
                        header_read_timeout=int(header_timeout_s * 1000)))
    # The worker process builds its app from this loader (pickled with the store's URL), not
    # from the environment.
    server.serve(target_loader=functools.partial(create_app, url), wrap_loader=False)
