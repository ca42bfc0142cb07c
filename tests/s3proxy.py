"""A loopback HTTP proxy in front of moto's S3 server that fails chosen requests with 503:
a real flaky or dead endpoint for the publishing tests (nothing inside s3fs is patched)."""
from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import urlparse

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "content-length"}
_SLOWDOWN = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ServiceUnavailable</Code>"
             b"<Message>injected outage</Message></Error>")


class FlakyS3:
    """`fail_first` requests answer 503, then requests pass; with `down_after` set, every
    request after that many answers 503 (the endpoint went down and stays down); with
    `down_from` set, every request from the first whose "METHOD path" contains it. `log` lists
    the "METHOD path" of every request."""

    def __init__(self, target: str, fail_first: int = 0, down_after: Optional[int] = None,
                 down_from: Optional[str] = None):
        self.target = urlparse(target)
        self.fail_first, self.down_after, self.down_from = fail_first, down_after, down_from
        self.requests = self.failures = 0
        self.log: list[str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def should_fail(self, request: str = "") -> bool:
        with self.lock:
            self.requests += 1
            self.log.append(request)
            if self.down_from and self.down_from in request:
                self.down_after = self.requests - 1
            fail = self.requests <= self.fail_first or (
                self.down_after is not None and self.requests > self.down_after)
            self.failures += fail
            return fail

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.should_fail(f"{self.command} {self.path}"):
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(_SLOWDOWN)))
                    self.end_headers()
                    self.wfile.write(_SLOWDOWN)
                    return
                conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port,
                                                  timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                # A HEAD answer has no body but the size of the object it describes.
                size = resp.getheader("Content-Length") if self.command == "HEAD" else len(data)
                self.send_header("Content-Length", str(size or 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        return Handler
