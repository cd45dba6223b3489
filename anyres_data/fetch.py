"""Fetch a candidate's bytes: HTTP(S) with timeouts, retries and a size cap; local paths only for local sources.

`fetch` returns the bytes exactly as served (never decoded or re-encoded) or raises `Rejected` with a
named reason (`http_404`, `timeout`, `too_large`, `unsupported_scheme`, ...). Downloads stream, so
memory is bounded by `max_bytes` however large the file claims to be.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from importlib.metadata import version
from urllib.parse import urlsplit

import fsspec
import requests
import urllib3

from anyres_data.rejects import Rejected
from anyres_data.settings import setting
from anyres_data.sources.demo import demo_bytes

USER_AGENT = f"anyres-data/{version('anyres')} (any-resolution image dataset builder; python-requests)"
RETRY_AFTER_MAX = 60.0  # seconds: a server asking for longer is treated as failing, not waited on


@dataclass(frozen=True)
class FetchSettings:
    timeout: float = setting(10.0, "seconds to connect, and at most between two received chunks")
    deadline: float = setting(120.0, "seconds one whole download (all retries included) may take")
    retries: int = setting(3, "extra attempts after a timeout, a broken connection, HTTP 429 or 5xx")
    backoff: float = setting(1.0, "seconds before the first retry, doubled for each next one (Retry-After wins)")
    max_bytes: int = setting(256 * 2**20, "largest file to download, in bytes; larger ones are rejected as too_large")
    user_agent: str = setting(USER_AGENT, "User-Agent header sent with every request (names the project)")


class _Retryable(Exception):
    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


def new_session(pool_size: int) -> requests.Session:
    """An HTTP session that threads of one shard task share (connection pooling, no built-in retries)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def fetch(url: str, settings: FetchSettings, *, local: bool = False, session: requests.Session | None = None) -> bytes:
    """The bytes at `url`.

    http(s) URLs are downloaded; `demo://` URLs are generated and other fsspec URLs (paths,
    `file://`, `s3://`, `tar://member::file.tar`) are read only when `local` is true (a folder or
    demo source), so a web URL list cannot make the build read local files.
    Raises Rejected (unsupported_scheme, http_<status>, timeout, connection_error, too_large, read_error).
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return _fetch_http(url, settings, session or new_session(1))
    if not local:
        raise Rejected("unsupported_scheme", f"{scheme or 'local path'} URLs are read only for local sources: {url}")
    if scheme == "demo":
        return demo_bytes(url)
    return _fetch_fsspec(url, settings)


def _fetch_fsspec(url: str, settings: FetchSettings) -> bytes:
    try:
        with fsspec.open(url, "rb") as f:
            data = f.read(settings.max_bytes + 1)
    except (OSError, ValueError) as err:
        raise Rejected("read_error", f"{type(err).__name__}: {err}") from None
    if len(data) > settings.max_bytes:
        raise Rejected("too_large", f"more than {settings.max_bytes} bytes")
    return data


def _fetch_http(url: str, settings: FetchSettings, session: requests.Session) -> bytes:
    start = time.monotonic()
    for attempt in range(settings.retries + 1):
        try:
            return _get(url, settings, session, start)
        except _Retryable as err:
            failure = err
        wait = failure.retry_after if failure.retry_after is not None else settings.backoff * 2**attempt
        if attempt == settings.retries or time.monotonic() - start + wait > settings.deadline:
            break
        time.sleep(wait)
    tries = f" (after {attempt + 1} attempts)" if attempt else ""
    raise Rejected(failure.reason, failure.message + tries)


def _get(url: str, settings: FetchSettings, session: requests.Session, start: float) -> bytes:
    try:
        with session.get(
            url,
            stream=True,
            timeout=(settings.timeout, settings.timeout),
            headers={"User-Agent": settings.user_agent},
        ) as response:
            status = response.status_code
            if status == 429 or status >= 500:
                retry_after = _retry_after(response.headers.get("Retry-After"))
                raise _Retryable(f"http_{status}", f"HTTP {status} {response.reason}", retry_after)
            if status >= 400:
                raise Rejected(f"http_{status}", f"HTTP {status} {response.reason}")
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > settings.max_bytes:
                raise Rejected("too_large", f"Content-Length {length} > {settings.max_bytes} bytes")
            data = bytearray()
            for chunk in response.iter_content(chunk_size=1 << 16):
                data += chunk
                if len(data) > settings.max_bytes:
                    raise Rejected("too_large", f"more than {settings.max_bytes} bytes")
                if time.monotonic() - start > settings.deadline:
                    raise Rejected("timeout", f"download took longer than {settings.deadline} s")
            return bytes(data)
    except requests.Timeout as err:
        raise _Retryable("timeout", f"no answer within {settings.timeout} s") from err
    except requests.ConnectionError as err:
        # requests reports a read timeout in the middle of a body as a ConnectionError.
        if err.args and isinstance(err.args[0], urllib3.exceptions.ReadTimeoutError):
            raise _Retryable("timeout", f"no data for {settings.timeout} s") from err
        raise _Retryable("connection_error", f"{type(err).__name__}: {err}") from err
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as err:
        raise _Retryable("connection_error", f"{type(err).__name__}: {err}") from err
    except requests.RequestException as err:  # invalid URL, too many redirects, ...
        raise Rejected("connection_error", f"{type(err).__name__}: {err}") from err


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
