"""Fetch a candidate's bytes: HTTP(S) with timeouts, a deadline, retries and a size cap; local reads for local sources.

`fetch` returns the bytes exactly as served (never decoded or re-encoded) or raises `Rejected` with a
named reason (`http_404`, `timeout`, `too_large`, `unsupported_scheme`, ...). `fetch_data` is what the
build uses: the same, but a download larger than `spill_bytes` goes to a temporary file (payload.py),
so memory is bounded whatever the files' sizes (or what a gzip bomb inflates to).

Three clocks bound a download. `first_byte_timeout`: from sending the request to the first byte of the
answer (a server that renders on demand may think for a while). `timeout`: to connect, and between
two received chunks. `deadline`: the whole download, retries included. A per-read timeout cannot hold
a deadline — a server that sends one byte a second never trips it — so each attempt has a watchdog
that shuts its socket down when the deadline passes, which ends a read blocked anywhere (connecting,
headers, body) at once.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from urllib.parse import urlsplit

import requests
import urllib3
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from anyres_data.payload import Data, Spool, discard, recognised, to_bytes
from anyres_data.probe import not_an_image
from anyres_data.rejects import Rejected
from anyres_data.settings import setting
from anyres_data.sources.demo import demo_bytes
from anyres_data.sources.folder import TarReader, open_file

USER_AGENT = f"anyres-data/{version('anyres')} (any-resolution image dataset builder; python-requests)"
RETRY_AFTER_MAX = 60.0  # seconds: a server asking for longer is treated as failing, not waited on
SNIFF_BYTES = 1 << 16  # a download whose first 64 KiB show no image format stops there (images_only)
CHUNK = 1 << 16


@dataclass(frozen=True)
class FetchSettings:
    timeout: float = setting(10.0, "seconds to connect, and at most between two received chunks")
    first_byte_timeout: float = setting(
        30.0, "seconds from sending a request to the first byte of the answer (servers that render on demand)"
    )
    deadline: float = setting(
        120.0, "seconds one whole download (all retries included) may take; enforced however slowly bytes arrive"
    )
    retries: int = setting(3, "extra attempts after a timeout, a broken connection, HTTP 429 or 5xx")
    backoff: float = setting(1.0, "seconds before the first retry, doubled for each next one (Retry-After wins)")
    max_bytes: int = setting(256 * 2**20, "largest file to download, in bytes; larger ones are rejected as too_large")
    spill_bytes: int = setting(
        8 * 2**20, "downloads larger than this many bytes go to a temporary file instead of memory (the build)"
    )
    user_agent: str = setting(USER_AGENT, "User-Agent header sent with every request (names the project)")


class _Retryable(Exception):
    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


# ---------------------------------------------------------------------------------------------- the watchdog

_current = threading.local()  # the _Watch of the attempt this thread is making (requests is synchronous)


class _Watch:
    """The connection one download attempt uses, shut down when the attempt's deadline passes.

    The pool classes below attach every connection the attempt takes (a fresh one once connected, a
    pooled one when taken), so the watchdog reaches it whatever phase the download is in.
    """

    def __init__(self) -> None:
        self.expired = False
        self._done = False
        self._connection: urllib3.connection.HTTPConnection | None = None
        self._lock = threading.Lock()

    def attach(self, connection: urllib3.connection.HTTPConnection) -> None:
        with self._lock:
            self._connection = connection
            if self.expired:
                _shut(connection)

    def expire(self) -> None:
        with self._lock:
            if self._done:  # the attempt ended first; its connection may serve another thread by now
                return
            self.expired = True
            if self._connection is not None:
                _shut(self._connection)

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._connection = None

    def read_timeout(self, seconds: float) -> None:
        """Set the socket's timeout for the next reads (the body: `timeout` between chunks)."""
        with self._lock:
            sock = getattr(self._connection, "sock", None)
            if sock is not None:
                sock.settimeout(seconds)


def _shut(connection: urllib3.connection.HTTPConnection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    # shutdown (not close) wakes a recv blocked in another thread; the base method, also for TLS sockets
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _attach(connection: urllib3.connection.HTTPConnection) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(connection)


class _AttachOnConnect:
    """Connection mixin: a fresh connection is attached to this thread's watch once connected."""

    def connect(self) -> None:
        super().connect()
        _attach(self)


class _AttachOnTake:
    """Pool mixin: a pooled connection is attached to this thread's watch when taken."""

    def _get_conn(self, timeout: float | None = None) -> urllib3.connection.HTTPConnection:
        connection = super()._get_conn(timeout)
        _attach(connection)
        return connection


class _WatchedHTTPPool(_AttachOnTake, HTTPConnectionPool):
    ConnectionCls = type("_WatchedHTTPConnection", (_AttachOnConnect, urllib3.connection.HTTPConnection), {})


class _WatchedHTTPSPool(_AttachOnTake, HTTPSConnectionPool):
    ConnectionCls = type("_WatchedHTTPSConnection", (_AttachOnConnect, urllib3.connection.HTTPSConnection), {})


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter with connection pools whose connections the deadline watchdog can reach."""

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}

    def proxy_manager_for(self, *args: object, **kwargs: object) -> urllib3.PoolManager:
        manager = super().proxy_manager_for(*args, **kwargs)
        if type(manager) is urllib3.ProxyManager:  # SOCKS proxies have pool classes of their own
            manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
        return manager


def new_session(pool_size: int) -> requests.Session:
    """An HTTP session that threads of one shard task share (connection pooling, no built-in retries).

    Only downloads through such a session are held to the deadline while a server trickles bytes.
    """
    session = requests.Session()
    adapter = _WatchedAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# ---------------------------------------------------------------------------------------------- fetching


def fetch(url: str, settings: FetchSettings, *, local: bool = False, session: requests.Session | None = None) -> bytes:
    """The bytes at `url`.

    http(s) URLs are downloaded; `demo://` URLs are generated and other fsspec URLs (paths,
    `file://`, `s3://`, `tar://member::file.tar`) are read only when `local` is true (a folder or
    demo source), so a web URL list cannot make the build read local files.
    Raises Rejected (unsupported_scheme, http_<status>, timeout, connection_error, too_large, read_error).
    """
    return to_bytes(fetch_data(url, settings, local=local, session=session))


def fetch_data(
    url: str,
    settings: FetchSettings,
    *,
    local: bool = False,
    session: requests.Session | None = None,
    spill_dir: str | None = None,
    images_only: bool = False,
    tar_reader: TarReader | None = None,
    tar_lock: threading.Lock | None = None,
) -> Data:
    """`fetch`, for the build: the bytes, or a file in `spill_dir` that holds them when they are large.

    spill_dir: a folder for downloads above `settings.spill_bytes`; None keeps everything in memory.
    images_only: stop a download whose first 64 KiB hold no image format (not_an_image, unsupported_format).
    tar_reader, tar_lock: read `tar://` members with this reader (each tar indexed once), one at a time.
    Raises Rejected as `fetch` does; on a rejection no file is left behind.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return _fetch_http(url, settings, session or new_session(1), spill_dir=spill_dir, images_only=images_only)
    if not local:
        raise Rejected("unsupported_scheme", f"{scheme or 'local path'} URLs are read only for local sources: {url}")
    if scheme == "demo":
        return demo_bytes(url)
    with contextlib.ExitStack() as stack:
        spool = stack.enter_context(Spool(limit=settings.spill_bytes, directory=spill_dir))
        if scheme != "tar":
            return _read_file(url, settings, spool)
        if tar_lock is not None:
            stack.enter_context(tar_lock)
        reader = tar_reader or stack.enter_context(TarReader())
        return _read_tar_member(url, settings, reader, spool)


def _read_tar_member(url: str, settings: FetchSettings, reader: TarReader, spool: Spool) -> Data:
    try:
        size = reader.member_size(url)
    except (OSError, KeyError, ValueError, tarfile.TarError) as err:
        raise Rejected("read_error", f"{type(err).__name__}: {err}") from None
    if size > settings.max_bytes:
        raise Rejected("too_large", f"{size} bytes > {settings.max_bytes}")
    return _copy(reader.chunks(url), spool, settings)


def _read_file(url: str, settings: FetchSettings, spool: Spool) -> Data:
    """A file of one fsspec filesystem. The URL is never parsed as a chain: `a::b.jpg` is a file name."""
    try:
        f = open_file(url)
    except (OSError, ValueError) as err:
        raise Rejected("read_error", f"{type(err).__name__}: {err}") from None
    with f:
        return _copy(iter(lambda: f.read(CHUNK), b""), spool, settings)


def _copy(chunks: Iterator[bytes], spool: Spool, settings: FetchSettings) -> Data:
    """Chunks into the spool, up to the size cap. A failed read is a read_error; a failed write (a full
    disk) is no fault of the candidate and propagates."""
    while True:
        try:
            chunk = next(chunks, b"")
        except (OSError, KeyError, ValueError, tarfile.TarError) as err:
            raise Rejected("read_error", f"{type(err).__name__}: {err}") from None
        if not chunk:
            return spool.result()
        spool.write(chunk)
        if spool.size > settings.max_bytes:
            raise Rejected("too_large", f"more than {settings.max_bytes} bytes")


def _fetch_http(
    url: str, settings: FetchSettings, session: requests.Session, *, spill_dir: str | None, images_only: bool
) -> Data:
    start = time.monotonic()
    for attempt in range(settings.retries + 1):
        try:
            with Spool(limit=settings.spill_bytes, directory=spill_dir) as spool:
                return _get(url, settings, session, start, spool, images_only=images_only)
        except _Retryable as err:
            failure = err
        wait = failure.retry_after if failure.retry_after is not None else settings.backoff * 2**attempt
        if attempt == settings.retries or time.monotonic() - start + wait > settings.deadline:
            break
        time.sleep(wait)
    tries = f" (after {attempt + 1} attempts)" if attempt else ""
    raise Rejected(failure.reason, failure.message + tries)


def _get(
    url: str, settings: FetchSettings, session: requests.Session, start: float, spool: Spool, *, images_only: bool
) -> Data:
    """One attempt, with the deadline's watchdog armed for the time that is left."""
    left = settings.deadline - (time.monotonic() - start)
    late = Rejected("timeout", f"the download took longer than the {settings.deadline} s deadline")
    if left <= 0:
        raise late
    watch = _Watch()
    timer = threading.Timer(left, watch.expire)
    timer.daemon = True
    _current.watch = watch
    timer.start()
    data = None
    try:
        data = _download(url, settings, session, watch, spool, connect=min(settings.timeout, left), sniff=images_only)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as err:
        if not watch.expired:
            raise _failure(err, settings) from err
    except OSError:  # from a socket the watchdog shut down; any other (a full disk) is no network failure
        if not watch.expired:
            raise
    finally:
        timer.cancel()
        watch.finish()
        _current.watch = None
    if watch.expired:  # a late answer, even one that looks complete (the body ended when the socket did)
        discard(data)
        raise late
    return data


def _download(
    url: str,
    settings: FetchSettings,
    session: requests.Session,
    watch: _Watch,
    spool: Spool,
    *,
    connect: float,
    sniff: bool,
) -> Data:
    headers = {"User-Agent": settings.user_agent}
    with session.get(url, stream=True, timeout=(connect, settings.first_byte_timeout), headers=headers) as response:
        watch.read_timeout(settings.timeout)  # the answer has begun: from now on, `timeout` between chunks
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise _Retryable(f"http_{status}", f"HTTP {status} {response.reason}", retry_after)
        if status >= 400:
            raise Rejected(f"http_{status}", f"HTTP {status} {response.reason}")
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > settings.max_bytes:
            raise Rejected("too_large", f"Content-Length {length} > {settings.max_bytes} bytes")
        sniffed = not sniff
        for chunk in response.iter_content(chunk_size=CHUNK):
            spool.write(chunk)
            if spool.size > settings.max_bytes:
                raise Rejected("too_large", f"more than {settings.max_bytes} bytes")
            if not sniffed and spool.size >= SNIFF_BYTES:
                _sniff(spool)
                sniffed = True
        if not sniffed and spool.size:
            _sniff(spool)
        return spool.result()


def _sniff(spool: Spool) -> None:
    """Stop a download that is no image (an HTML error page, a gzip bomb of zeros) after its first bytes."""
    start = spool.head(SNIFF_BYTES)
    if not recognised(start):
        raise not_an_image(start[:512], spool.size)


def _failure(err: Exception, settings: FetchSettings) -> Exception:
    """The rejection (or retryable failure) for an exception of requests/urllib3."""
    if isinstance(err, requests.exceptions.InvalidSchema):  # e.g. a redirect to file:// or ftp://
        found = re.search(r"'([A-Za-z][A-Za-z0-9+.-]*):", str(err))
        scheme = found.group(1).lower() if found else "non-http"
        return Rejected("unsupported_scheme", f"redirected to a {scheme} URL; only http(s) is fetched")
    if isinstance(err, requests.ConnectTimeout):
        return _Retryable("timeout", f"no connection within {settings.timeout} s")
    if isinstance(err, requests.Timeout):
        return _Retryable("timeout", f"no answer within {settings.first_byte_timeout} s")
    if isinstance(err, requests.ConnectionError):
        # requests reports a read timeout in the middle of a body as a ConnectionError.
        if err.args and isinstance(err.args[0], urllib3.exceptions.ReadTimeoutError):
            return _Retryable("timeout", f"no data for {settings.timeout} s")
        return _Retryable("connection_error", f"{type(err).__name__}: {err}")
    if isinstance(err, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return _Retryable("connection_error", f"{type(err).__name__}: {err}")
    if isinstance(err, requests.RequestException):  # invalid URL, too many redirects, ...
        return Rejected("connection_error", f"{type(err).__name__}: {err}")
    return _Retryable("connection_error", f"{type(err).__name__}: {err}")  # urllib3's own (a broken read)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped at RETRY_AFTER_MAX."""
    if not value:
        return None
    if value.strip().isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)
