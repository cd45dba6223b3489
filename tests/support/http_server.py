"""A real HTTP server on 127.0.0.1 that serves images, and misbehaves on request.

Each path answers as its `Route` says: a body with a content type (which may lie: HTML as
image/jpeg), a status, a delay before answering or between chunks (timeouts), no Content-Length
(the body ends when the connection closes), a Content-Length larger than what is sent before the
connection drops, or a few 503s with Retry-After before the real answer. Files of a directory can
be served as well. Every request's path and User-Agent are recorded.

    with ImageServer() as server:
        url = server.add("/a.jpg", jpeg_bytes)
        url404 = server.add("/gone.jpg", b"", status=404)
"""

from __future__ import annotations

import collections
import contextlib
import mimetypes
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Route:
    body: bytes
    content_type: str = "image/jpeg"
    status: int = 200
    delay: float = 0.0  # seconds before the status line
    chunk_delay: float = 0.0  # seconds between 64 KiB chunks of the body
    content_length: bool = True  # False: no Content-Length, the body ends with the connection
    drop_after: int | None = None  # send this many body bytes, then close (Content-Length says more)
    fail_first: int = 0  # answer 503 (with Retry-After) to this many requests first
    retry_after: str = "0"


class ImageServer:
    """ThreadingHTTPServer on 127.0.0.1 in a daemon thread; `routes` by path, `directory` for the rest."""

    def __init__(self, routes: dict[str, Route] | None = None, directory: Path | None = None) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.directory = directory
        self.hits: collections.Counter[str] = collections.Counter()
        self.user_agents: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._server.request_queue_size = 128
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, body: bytes, **route: object) -> str:
        """Serve `body` at `path` (Route options as keywords); returns its URL."""
        self.routes[path] = Route(body, **route)
        return self.url(path)

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _route(self, path: str) -> Route | None:
        with self._lock:
            self.hits[path] += 1
            route = self.routes.get(path)
            if route is not None and route.fail_first > 0:
                route.fail_first -= 1
                return Route(b"busy", content_type="text/plain", status=503, retry_after=route.retry_after)
        if route is None and self.directory is not None:
            file = (self.directory / path.lstrip("/")).resolve()
            if file.is_file() and self.directory.resolve() in file.parents:
                kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                return Route(file.read_bytes(), content_type=kind)
        return route


def _handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            with server._lock:
                server.user_agents.append(self.headers.get("User-Agent", ""))
            route = server._route(self.path.split("?", 1)[0])
            if route is None:
                route = Route(b"<html><body>not found</body></html>", content_type="text/html", status=404)
            if route.delay:
                time.sleep(route.delay)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                self._answer(route)

        def _answer(self, route: Route) -> None:
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            if route.status == 503:
                self.send_header("Retry-After", route.retry_after)
            if route.content_length:
                self.send_header("Content-Length", str(len(route.body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            body = route.body if route.drop_after is None else route.body[: route.drop_after]
            for start in range(0, len(body), 1 << 16):
                if route.chunk_delay and start:
                    time.sleep(route.chunk_delay)
                self.wfile.write(body[start : start + (1 << 16)])
            if route.drop_after is not None:
                self.wfile.flush()
                self.close_connection = True

    return Handler
