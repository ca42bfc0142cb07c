"""The prototype page and its JSON API: draw or upload a digit, see the input as the network
sees it, every layer's activations and the class probabilities. Run: `imgclf serve`."""
from __future__ import annotations

import asyncio
import base64
import io
import os
import threading
import time
import warnings
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, UnidentifiedImageError

from flows.errors import UserError
from flows.serve_models import Registry, UnknownModel
from flows.store import check_store, filesystem, join, read_json
from lightning_modules.activations import layer_outputs
from lightning_modules.bundle import BundleError
from lightning_modules.preprocess import to_model_input

MAX_BYTES = 2 * 1024 * 1024  # an upload over this is refused before it is read in full
HEADER_TIMEOUT_S = 5.0       # a client must send its request headers within this (server)
BODY_TIMEOUT_S = 10.0        # ... and its body within this (app): slow clients are dropped
QUEUE = 256                  # requests in progress at once; more wait in the listen backlog
MAX_PIXELS = 4096 * 4096     # decompression bombs: refused from the header, before decoding
PAGE = (Path(__file__).parent / "serve_page.html").read_text()
RUNS_PAGE = (Path(__file__).parent / "serve_runs.html").read_text()


def png_b64(a: np.ndarray) -> str:
    """A uint8 H×W (grey) or H×W×3 array as a base64 PNG."""
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _norm(a: torch.Tensor) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo + 1e-8) * 255).to(torch.uint8).numpy()


def describe_layer(name: str, out: torch.Tensor, max_maps: int = 16, max_units: int = 128) -> dict:
    """Conv layers as a grid of feature maps (PNG), dense layers as unit values."""
    if out.dim() == 3:
        maps = out[:max_maps]
        cols = min(4, len(maps))
        rows = -(-len(maps) // cols)
        h, w = maps.shape[1:]
        grid = np.zeros((rows * (h + 1), cols * (w + 1)), dtype=np.uint8)
        for i, m in enumerate(maps):
            r, c = divmod(i, cols)
            grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = _norm(m)
        return {"name": name, "kind": "conv", "shape": list(out.shape), "maps": len(maps),
                "png": png_b64(grid)}
    units = out.flatten()
    top = units[:max_units]
    peak = float(top.abs().max()) or 1.0
    return {"name": name, "kind": "dense", "shape": list(out.shape),
            "values": [round(float(v) / peak, 4) for v in top]}


def decode_image(body: bytes) -> Image.Image:
    """Bytes → a PIL image, refusing non-images, truncated files and oversized pixel counts."""
    if not body:
        raise HTTPException(400, "empty body: send an image (PNG, JPEG, ...)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(body))
            if img.width * img.height > MAX_PIXELS:
                raise HTTPException(413, f"image is {img.width}×{img.height} pixels; the limit "
                                         f"is {MAX_PIXELS:,} pixels")
            img.load()
    except HTTPException:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise HTTPException(400, "the body is not an image this server can read") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise HTTPException(400, f"the image is corrupt or truncated ({type(e).__name__})") \
            from None
    return img


async def read_limited(request: Request) -> bytes:
    """The body, refused with 413 as soon as it passes MAX_BYTES (memory stays bounded)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BYTES:
        raise HTTPException(413, f"upload is {int(declared):,} bytes; the limit is {MAX_BYTES:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BYTES + 64 * 1024:  # multipart framing allowance
            raise HTTPException(413, f"upload is over the limit of {MAX_BYTES:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def image_from_request(ctype: str, body: bytes) -> bytes:
    """The image bytes from a raw `image/*` body or a multipart form's first file part."""
    kind = ctype.split(";")[0].strip().lower()
    if kind.startswith("image/"):
        return body
    if kind == "multipart/form-data":
        msg = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + body)
        for part in msg.iter_parts() if msg.is_multipart() else []:
            if part.get_filename() is not None or part.get_param("name", header="content-disposition") == "image":
                return part.get_payload(decode=True) or b""
        raise HTTPException(400, "the multipart form has no file part (use the field 'image')")
    raise HTTPException(415, f"content type {kind or '(none)'!r} is not accepted; send image/* "
                             "or multipart/form-data")


def create_app(store: str, max_concurrent: int = 4) -> FastAPI:
    app = FastAPI(title="imgclf prototype", version="1",
                  description="Classify a drawn or uploaded image with a published model and "
                              "see every layer's activations.")
    registry = Registry(store)
    # Inference at once; the rest wait their turn (a thread semaphore: classify runs in
    # worker threads, whatever event loop serves the request).
    gate = threading.BoundedSemaphore(max_concurrent)

    @app.exception_handler(UserError)
    async def _user_error(_: Request, e: UserError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=404 if isinstance(e, UnknownModel)
                            else 400)

    @app.exception_handler(BundleError)
    async def _bundle_error(_: Request, e: BundleError) -> JSONResponse:
        return JSONResponse({"detail": f"model unavailable: {e}"}, status_code=503)

    @app.exception_handler(FileNotFoundError)
    async def _missing(_: Request, e: FileNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": "not found in the store"}, status_code=404)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"detail": "internal error"}, status_code=500)  # no trace leaks

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE

    @app.get("/runs", response_class=HTMLResponse, include_in_schema=False)
    def runs_page() -> str:
        return RUNS_PAGE

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
    def latest_run() -> dict:
        latest = read_json(join(registry.store, "runs", "latest.json"))
        comp = read_json(join(latest["uri"], "comparison.json")) if latest else None
        if comp is None:
            raise HTTPException(404, "no published run in this store yet")
        return comp

    @app.get("/runs/latest/comparison.html", response_class=HTMLResponse,
             summary="the latest run's comparison report")
    def latest_report() -> str:
        latest = read_json(join(registry.store, "runs", "latest.json"))
        if latest is None:
            raise HTTPException(404, "no published run in this store yet")
        fs, path = filesystem(join(latest["uri"], "comparison.html"))
        return fs.cat_file(path).decode()

    @app.post("/predict", summary="classify one image",
              description="Body: the image (`image/*`) or multipart/form-data with a file field "
                          "`image`. Returns the top class as `label`, the probabilities, the "
                          "input as the network sees it and each layer's activations.",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "image/*": {"schema": {"type": "string", "format": "binary"}},
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "image": {"type": "string", "format": "binary"}}}}}}})
    async def predict(request: Request, model: str = Query(..., description="dataset/family "
                                                           "(its champion) or dataset/family@run"),
                      centre: Optional[bool] = None) -> dict:
        try:
            body = await asyncio.wait_for(read_limited(request), BODY_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise HTTPException(408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s") \
                from None
        raw = image_from_request(request.headers.get("content-type", ""), body)
        img = decode_image(raw)
        pred, meta = await asyncio.to_thread(registry.get, model)

        def gated() -> dict:
            with gate:
                return classify(pred, meta, img, centre)
        return await asyncio.to_thread(gated)

    return app


def classify(pred: Any, meta: dict, img: Image.Image, centre: Optional[bool]) -> dict:
    """The whole classification process for one image."""
    t = time.perf_counter()
    if centre is None:  # MNIST-like digits are centred by mass; clothes and colour are fitted
        centre = pred.shape[0] == 1 and "fashion" not in meta["dataset"]
    x = torch.from_numpy(to_model_input(img, pred.shape, centre))[None]
    logits, layers = layer_outputs(pred.net, pred.preprocess(x))
    probs = logits.softmax(dim=1)[0]
    top = int(probs.argmax())
    seen = x[0].numpy()
    return {"model": meta["id"], "label": pred.classes[top], "label_index": top,
            "probabilities": {c: round(float(p), 6) for c, p in zip(pred.classes, probs)},
            "input": {"shape": list(seen.shape),
                      "png": png_b64(seen[0] if seen.shape[0] == 1 else seen.transpose(1, 2, 0))},
            "layers": [describe_layer(f"layer {i} ({n})", o)
                       for i, (n, o) in enumerate(layers, 1)],
            "ms": round((time.perf_counter() - t) * 1000, 2)}


STORE_ENV = "IMGCLF_SERVE_STORE"


def app_from_env() -> FastAPI:
    """The app for the server's worker processes (they get the store through the environment)."""
    return create_app(os.environ[STORE_ENV])


def serve(store: str, host: str = "127.0.0.1", port: int = 8000,
          header_timeout_s: float = HEADER_TIMEOUT_S, queue: int = QUEUE) -> None:
    """Serve the app with Granian (Rust, hyper): it answers 414 for an over-long URL and 431 for
    over-large headers before the app sees them, drops a client that has not sent its headers
    within `header_timeout_s` (idle and slow clients cannot hold the server), and takes at most
    `queue` requests at once; more wait in the listen backlog instead of getting 503.
    uvicorn has no header read timeout, so half-sent requests held its slots for minutes."""
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels
    from granian.http import HTTP1Settings
    from granian.server import Server

    os.environ[STORE_ENV] = check_store(store, write=False)
    print(f"serving the page on http://{host}:{port}/ (models from {os.environ[STORE_ENV]}); "
          "Ctrl-C stops", flush=True)
    Server("flows.serve:app_from_env", factory=True, address=host, port=port,
           interface=Interfaces.ASGI, http=HTTPModes.http1, workers=1, backlog=2048,
           backpressure=queue, log_level=LogLevels.warning,
           http1_settings=HTTP1Settings(header_read_timeout=int(header_timeout_s * 1000)),
           ).serve()
