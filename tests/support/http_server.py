"""A real HTTP server on 127.0.0.1 that serves images, and misbehaves on request.

Each path answers as its `Route` says: a body with a content type (which may lie: HTML as
image/jpeg), a status, extra headers (a redirect's Location, Content-Encoding: gzip), a delay before
answering or between chunks (timeouts), a drip (one byte at a time, also the status line and
headers if asked: a server no per-read timeout catches), no Content-Length (the body ends when the
connection closes), a Content-Length larger than what is sent before the connection drops, or a
few failures (503 with Retry-After, or a reset connection) before the real answer. Files of a
directory can be served as well. Every request's path and User-Agent are recorded.

    with ImageServer() as server:
        url = server.add("/a.jpg", jpeg_bytes)
        url404 = server.add("/gone.jpg", b"", status=404)
"""

from __future__ import annotations

import collections
import contextlib
import mimetypes
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
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
    fail_first: int = 0  # fail this many requests first (as `fail_with` says), then answer
    fail_with: str = "503"  # "503" (with Retry-After) or "reset" (the connection is reset, no answer)
    retry_after: str = "0"
    headers: dict[str, str] = field(default_factory=dict)  # sent as they are (Location, Content-Encoding, ...)
    drip: float = 0.0  # seconds between bytes: the body is sent one byte at a time
    drip_head: bool = False  # with drip: the status line and headers too


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
                if route.fail_with == "reset":
                    return Route(b"", status=0)
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

        def handle(self) -> None:
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # a client that stopped reading
                super().handle()

        def do_GET(self) -> None:
            with server._lock:
                server.user_agents.append(self.headers.get("User-Agent", ""))
            route = server._route(self.path.split("?", 1)[0])
            if route is None:
                route = Route(b"<html><body>not found</body></html>", content_type="text/html", status=404)
            if route.delay:
                time.sleep(route.delay)
            if route.status == 0:  # a reset: close with SO_LINGER 0, so the client reads ECONNRESET
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            # the client gave up (timeout tests) or the server is shutting down
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
                self._answer(route)

        def _answer(self, route: Route) -> None:
            if route.drip and route.drip_head:
                self._drip_head(route)
            else:
                self.send_response(route.status)
                for name, value in _head(route):
                    self.send_header(name, value)
                self.end_headers()
            if not route.content_length:
                self.close_connection = True
            body = route.body if route.drop_after is None else route.body[: route.drop_after]
            if route.drip:
                self.wfile.flush()
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(route.drip)
                return
            for start in range(0, len(body), 1 << 16):
                if route.chunk_delay and start:
                    time.sleep(route.chunk_delay)
                self.wfile.write(body[start : start + (1 << 16)])
            if route.drop_after is not None:
                self.wfile.flush()
                self.close_connection = True

        def _drip_head(self, route: Route) -> None:
            head = f"HTTP/1.1 {route.status} X\r\n" + "".join(f"{n}: {v}\r\n" for n, v in _head(route)) + "\r\n"
            for i in range(len(head)):
                self.wfile.write(head[i].encode())
                self.wfile.flush()
                time.sleep(route.drip)

    return Handler


def _head(route: Route) -> list[tuple[str, str]]:
    """The headers of an answer."""
    head = [("Content-Type", route.content_type)]
    if route.status == 503:
        head.append(("Retry-After", route.retry_after))
    head.append(("Content-Length", str(len(route.body))) if route.content_length else ("Connection", "close"))
    return head + list(route.headers.items())
