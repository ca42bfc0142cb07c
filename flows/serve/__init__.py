"""The prototype page and its JSON API (`imgclf serve`): app.py (routes, the server),
models.py (the published models it serves), upload.py (limits, multipart, decoding),
render.py (what a classification shows), page.html and runs.html."""
from flows.serve.app import HEADER_TIMEOUT_S, QUEUE, create_app, serve
from flows.serve.upload import BODY_TIMEOUT_S, MAX_BYTES, MAX_PIXELS

__all__ = ["create_app", "serve", "HEADER_TIMEOUT_S", "QUEUE", "BODY_TIMEOUT_S", "MAX_BYTES",
           "MAX_PIXELS"]
