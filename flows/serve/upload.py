"""Reading an upload safely: size and time limits, multipart through Starlette's parser
(FastAPI's UploadFile), and decoding that refuses non-images and pixel bombs."""
from __future__ import annotations

import asyncio
import io
import warnings
from typing import AsyncIterator

from fastapi import HTTPException, Request
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

MAX_BYTES = 2 * 1024 * 1024  # an upload over this is refused before it is read in full
BODY_TIMEOUT_S = 10.0        # a body must arrive within this: slow clients are dropped
MAX_PIXELS = 4096 * 4096     # decompression bombs: refused from the header, before decoding
FRAMING = 64 * 1024          # multipart framing allowed on top of MAX_BYTES
FIELD = "image"              # the form field the page and the API document


async def read_limited(request: Request) -> bytes:
    """The body, refused with 413 as soon as it passes the limit (memory stays bounded)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BYTES + FRAMING:
        raise HTTPException(413, f"upload is {int(declared):,} bytes; the limit is {MAX_BYTES:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BYTES + FRAMING:
            raise HTTPException(413, f"upload is over the limit of {MAX_BYTES:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _one(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _form_file(request: Request, body: bytes) -> bytes:
    """The file of a multipart form (field `image`, else its first file), as UploadFile."""
    parser = MultiPartParser(request.headers, _one(body), max_files=1, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise HTTPException(400, f"the multipart form is malformed ({e.message})") from None
    upload = form.get(FIELD)
    if not isinstance(upload, UploadFile):
        upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
    if upload is None:
        raise HTTPException(400, f"the multipart form has no file part (use the field '{FIELD}')")
    data = await upload.read()
    await form.close()
    if len(data) > MAX_BYTES:
        raise HTTPException(413, f"upload is {len(data):,} bytes; the limit is {MAX_BYTES:,}")
    return data


async def image_bytes(request: Request) -> bytes:
    """The image of a request: a raw `image/*` body or a multipart form's file, within the
    size limit and BODY_TIMEOUT_S."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (kind.startswith("image/") or kind == "multipart/form-data"):
        raise HTTPException(415, f"content type {kind or '(none)'!r} is not accepted; send "
                                 "image/* or multipart/form-data")
    try:
        body = await asyncio.wait_for(read_limited(request), BODY_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise HTTPException(408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s") from None
    if kind.startswith("image/"):
        if len(body) > MAX_BYTES:
            raise HTTPException(413, f"upload is {len(body):,} bytes; the limit is {MAX_BYTES:,}")
        return body
    return await _form_file(request, body)


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
