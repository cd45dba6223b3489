"""The Flickr source: `flickr.photos.search` over the REST API, every result of a query, largest size first.

A Flickr search returns at most 4,000 results, however many match. So the client first asks for the
whole upload-date range; when the reported total is over the cap it bisects the range and asks again,
recursively, until every window's total fits, then pages through each window. Windows are visited in
time order and photos de-duplicated by id, so the default sort (date-posted-asc) gives one
chronological stream.

Calls are spaced by a client-side rate limiter (Flickr allows 3,600 calls per hour per key). 429
and 5xx answers, reset connections, truncated or invalid JSON bodies and Flickr's "service
unavailable" codes are retried with exponential backoff, honouring Retry-After; other Flickr error
codes raise `FlickrError` with the code and what to do.

The API key comes from the FLICKR_API_KEY environment variable or a key file, never from a flag
(shell history). It is sent in the POST body (not the URL, which HTTP libraries log), kept out of
every repr, and redacted from every message.
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import requests

from anyres_data.candidate import Candidate
from anyres_data.settings import setting

log = logging.getLogger(__name__)

FLICKR_ENDPOINT = "https://api.flickr.com/services/rest/"
USER_AGENT = "anyres/0.1 (+https://github.com/anyres)"
KEY_ENV = "FLICKR_API_KEY"
RESULT_CAP = 4000  # Flickr returns at most the first 4,000 results of any search
MAX_PER_PAGE = 500
MAX_RETRY_AFTER = 900.0  # seconds; a longer Retry-After is an error, not a wait
# sizes from the largest (url_l is the documented 1024 "Large"; url_b is asked for too, in case);
# the original ('o') is present only when the owner allows it
SIZES = ("o", "6k", "5k", "4k", "3k", "k", "h", "l", "b", "c", "z", "w", "n", "m")
EXTRAS = ",".join(["o_dims", "license", "owner_name", "date_upload", *(f"url_{s}" for s in SIZES)])
RETRYABLE_CODES = {10: "the search API is temporarily unavailable", 105: "the service is currently unavailable"}
SORTS = (
    "date-posted-asc",
    "date-posted-desc",
    "date-taken-asc",
    "date-taken-desc",
    "interestingness-desc",
    "interestingness-asc",
    "relevance",
)


@dataclass(frozen=True)
class FlickrSettings:
    """A Flickr search (what to ask for) and how to talk to the API. The key is not here: see api_key_file."""

    query: str | None = setting(None, "Flickr: free text searched in titles, descriptions and tags")
    tags: tuple[str, ...] = setting((), "Flickr: comma-separated tags to search for")
    tag_mode: Literal["any", "all"] = setting("any", "Flickr: photos with any of the tags, or all of them")
    sort: Literal[SORTS] = setting(
        "date-posted-asc", f"Flickr: result order within a date window, one of {', '.join(SORTS)}"
    )
    min_upload_date: str = setting("2004-01-01", "Flickr: earliest upload date (YYYY-MM-DD[ HH:MM:SS] UTC or unix)")
    max_upload_date: str | None = setting(
        None, "Flickr: latest upload date, inclusive (same forms; default: the start of today, UTC)"
    )
    content_type: int = setting(1, "Flickr: 1 photos, 4 photos+screenshots, 6 photos+other, 7 everything")
    safe_search: int = setting(1, "Flickr: 1 safe, 2 moderate, 3 restricted (restricted needs authentication)")
    bbox: str | None = setting(None, "Flickr: geographic box 'min_lon,min_lat,max_lon,max_lat' (geotagged only)")
    per_page: int = setting(MAX_PER_PAGE, "Flickr: results per API call, at most 500")
    max_photos: int | None = setting(None, "Flickr: stop after this many photos (default: every result)")
    api_endpoint: str = setting(FLICKR_ENDPOINT, "Flickr REST endpoint")
    api_key_file: Path | None = setting(None, f"file holding the Flickr API key (default: ${KEY_ENV})")
    api_calls_per_hour: float = setting(3000.0, "Flickr API calls per hour at most (Flickr allows 3,600 per key)")
    api_retries: int = setting(5, "Flickr: retries of a failed call (429, 5xx, reset, bad body) before giving up")
    api_backoff: float = setting(1.0, "Flickr: seconds before the first retry, doubled for each next one")
    api_timeout: float = setting(30.0, "Flickr: seconds to wait for a connection or an answer")


class FlickrError(RuntimeError):
    """The Flickr API refused or kept failing; the message says what to do. `code` is Flickr's, if any."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class FlickrKeyError(FlickrError):
    """No API key, or Flickr rejected it (code 100)."""


_KEY_HELP = (
    f"Get a key at https://www.flickr.com/services/apps/create/ and put it in the {KEY_ENV} environment "
    f"variable (export {KEY_ENV}=...) or in a file given with --api-key-file FILE."
)


def load_api_key(settings: FlickrSettings) -> str:
    """The API key from `settings.api_key_file`, else from $FLICKR_API_KEY. Raises FlickrKeyError if neither."""
    if settings.api_key_file is not None:
        try:
            key = Path(settings.api_key_file).read_text().strip()
        except OSError as err:
            raise FlickrKeyError(f"cannot read the Flickr key file {settings.api_key_file}: {err.strerror}") from None
        if not key:
            raise FlickrKeyError(f"the Flickr key file {settings.api_key_file} is empty. {_KEY_HELP}")
        return key
    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise FlickrKeyError(f"no Flickr API key. {_KEY_HELP}")
    return key


class RateLimiter:
    """Spaces calls at least 3600 / calls_per_hour seconds apart, start to start. Thread-safe."""

    def __init__(
        self,
        calls_per_hour: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not calls_per_hour > 0:
            raise ValueError(f"calls per hour must be > 0, got {calls_per_hour}")
        self.interval = 3600.0 / calls_per_hour
        self._clock, self._sleep = clock, sleep
        self._next = -math.inf
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until the next call may start, and book that slot."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class SearchPage:
    """One page of `flickr.photos.search`; Flickr sends some numbers as strings, these are ints."""

    photos: list[dict[str, Any]]
    page: int
    pages: int
    total: int


class FlickrClient:
    """Calls the Flickr REST API with one requests.Session, a rate limiter, retries and backoff.

    Use as a context manager (closes the session). The key never appears in its repr or messages.
    """

    def __init__(
        self,
        api_key: str,
        *,
        endpoint: str = FLICKR_ENDPOINT,
        calls_per_hour: float = 3000.0,
        retries: int = 5,
        backoff: float = 1.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError(f"need retries ≥ 0, backoff ≥ 0, timeout > 0; got {retries}, {backoff}, {timeout}")
        self._key = api_key
        self.endpoint = endpoint
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.limiter = RateLimiter(calls_per_hour, sleep=sleep)
        self._sleep = sleep
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT

    def __repr__(self) -> str:
        return f"FlickrClient(endpoint={self.endpoint!r}, calls_per_hour={3600 / self.limiter.interval:g})"

    def __enter__(self) -> FlickrClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def redact(self, text: str) -> str:
        """`text` with the API key replaced by '***'."""
        return text.replace(self._key, "***") if self._key else text

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One API call, retried on transient failures: the decoded JSON answer (stat 'ok').

        Raises FlickrKeyError for a rejected key, FlickrError for other Flickr error codes, HTTP errors
        other than 429/5xx, a Retry-After longer than 15 minutes, or when retries run out.
        """
        form = {**params, "method": method, "api_key": self._key, "format": "json", "nojsoncallback": "1"}
        for attempt in range(self.retries + 1):
            self.limiter.wait()
            outcome = self._attempt(method, form)
            if isinstance(outcome, dict):
                return outcome
            problem, wait = outcome
            wait = self.backoff * 2**attempt if wait is None else wait
            if wait > MAX_RETRY_AFTER:
                raise FlickrError(f"Flickr asks to wait {wait:.0f} s before calling again ({problem}); try later")
            if attempt == self.retries:
                break
            log.warning("Flickr %s: %s; retry %d/%d in %.1f s", method, problem, attempt + 1, self.retries, wait)
            self._sleep(wait)
        raise FlickrError(f"Flickr {method} failed {self.retries + 1} times, last: {problem}")

    def _attempt(self, method: str, form: dict[str, Any]) -> dict[str, Any] | tuple[str, float | None]:
        """The answer, or (what went wrong, seconds to wait or None for the backoff) when worth a retry."""
        try:
            response = self._session.post(self.endpoint, data=form, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
            return f"{type(err).__name__}: {self.redact(str(err))}", None
        if response.status_code == 429 or response.status_code >= 500:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            return f"HTTP {response.status_code}", wait
        if response.status_code != 200:
            body = self.redact(response.text[:200])
            raise FlickrError(f"Flickr {method}: HTTP {response.status_code} from {self.endpoint}: {body}")
        try:
            data = response.json()
        except ValueError:
            return f"invalid JSON body ({len(response.content)} bytes, truncated?)", None
        except RecursionError:  # no glitch: no Flickr answer nests that deep
            raise FlickrError(
                f"Flickr {method}: {self.endpoint} answered with JSON nested too deeply to read "
                f"({len(response.content)} bytes); that is no Flickr API answer: check --api-endpoint"
            ) from None
        if not isinstance(data, dict):
            return "JSON body is not an object", None
        if data.get("stat") == "ok":
            return data
        code = _int(data.get("code"))
        message = self.redact(str(data.get("message", "")))
        if code in RETRYABLE_CODES:
            return f"code {code}: {message or RETRYABLE_CODES[code]}", None
        if code == 100:
            raise FlickrKeyError(f"Flickr rejected the API key (code 100: {message}). {_KEY_HELP}", code=code)
        raise FlickrError(f"Flickr {method} failed with code {code}: {message}", code=code)

    def search(self, params: dict[str, Any], *, page: int, per_page: int) -> SearchPage:
        """One page of flickr.photos.search."""
        data = self.call("flickr.photos.search", {**params, "page": page, "per_page": per_page})
        photos = data.get("photos")
        if not isinstance(photos, dict):
            raise FlickrError(f"flickr.photos.search answered without 'photos': {self.redact(str(data)[:200])}")
        photo = photos.get("photo") or []
        if not isinstance(photo, list):
            raise FlickrError(
                f"flickr.photos.search answered with 'photo' as a {type(photo).__name__}, not a list of photos"
            )
        return SearchPage(
            photos=photo,
            page=_int(photos.get("page")) or page,
            pages=_int(photos.get("pages")) or 0,
            total=_int(photos.get("total")) or 0,
        )


def _int(value: Any) -> int | None:
    """Flickr sends numbers as ints or strings ("5234"); None when absent or not a number."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a float infinity
        return None


def _text(value: Any) -> str | None:
    """A string field of a search result (numbers allowed); None when absent, empty or not text."""
    return str(value) if isinstance(value, str | int | float) and not isinstance(value, bool) and value != "" else None


def malformed_photo(photo: Any) -> str | None:
    """What makes a search result unusable (not an object, no id), or None. Names fields, never quotes values."""
    if not isinstance(photo, dict):
        return f"a search result that is a {type(photo).__name__}, not an object"
    if _text(photo.get("id")) is None:
        return f"a search result without an id (fields: {', '.join(sorted(map(str, photo))[:10]) or 'none'})"
    return None


def parse_date(text: str, *, what: str) -> int:
    """A unix timestamp from 'YYYY-MM-DD', 'YYYY-MM-DD HH:MM:SS' (UTC unless an offset is given) or digits."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{what}: {text!r} is not a date (use YYYY-MM-DD, 'YYYY-MM-DD HH:MM:SS' or unix seconds)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def search_params(settings: FlickrSettings, licenses: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fixed search parameters (everything but the date window and paging). Raises ValueError on bad settings."""
    if not (settings.query or settings.tags or settings.bbox):
        raise ValueError("a Flickr search needs --query, --tags or --bbox (Flickr refuses parameterless searches)")
    if not 1 <= settings.per_page <= MAX_PER_PAGE:
        raise ValueError(f"--per-page must be between 1 and {MAX_PER_PAGE}, got {settings.per_page}")
    if settings.max_photos is not None and settings.max_photos < 1:
        raise ValueError(f"--max-photos must be ≥ 1, got {settings.max_photos}")
    if settings.content_type not in range(1, 8):
        raise ValueError(f"--content-type must be 1 to 7, got {settings.content_type}")
    if settings.safe_search not in (1, 2, 3):
        raise ValueError(f"--safe-search must be 1, 2 or 3, got {settings.safe_search}")
    if not settings.api_calls_per_hour > 0:
        raise ValueError(f"--api-calls-per-hour must be > 0, got {settings.api_calls_per_hour}")
    if settings.api_retries < 0 or settings.api_backoff < 0 or not settings.api_timeout > 0:
        raise ValueError("need --api-retries ≥ 0, --api-backoff ≥ 0 and --api-timeout > 0")
    params: dict[str, Any] = {
        "sort": settings.sort,
        "content_type": settings.content_type,
        "media": "photos",
        "safe_search": settings.safe_search,
        "extras": EXTRAS,
    }
    if settings.query:
        params["text"] = settings.query
    if settings.tags:
        params["tags"] = ",".join(settings.tags)
        params["tag_mode"] = settings.tag_mode
    if settings.bbox:
        parts = settings.bbox.split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 4:
            raise ValueError(f"--bbox must be 'min_lon,min_lat,max_lon,max_lat', got {settings.bbox!r}")
        params["bbox"] = ",".join(p.strip() for p in parts)
    if licenses:
        params["license"] = ",".join(str(x) for x in licenses)
    return params


def date_range(settings: FlickrSettings, *, now: float | None = None) -> tuple[int, int]:
    """(first, last) upload times in unix seconds, both inclusive. Raises ValueError if out of order."""
    start = parse_date(settings.min_upload_date, what="--min-upload-date")
    if settings.max_upload_date is None:
        today = int(time.time() if now is None else now) // 86400 * 86400
        end = today  # the start of today, UTC: reruns on one day see the same range
    else:
        end = parse_date(settings.max_upload_date, what="--max-upload-date")
    if end < start:
        raise ValueError(f"--max-upload-date ({end}) is before --min-upload-date ({start})")
    return start, end


def iter_search_photos(
    client: FlickrClient,
    params: dict[str, Any],
    *,
    start: int,
    end: int,
    per_page: int,
    cap: int = RESULT_CAP,
) -> Iterator[dict[str, Any]]:
    """Every photo the search finds between upload times `start` and `end`, in window order (may repeat).

    Bisects the upload-date window until its total fits under `cap`. Windows share their boundary
    second, so a photo there comes twice whether Flickr's bounds are inclusive or not: the caller
    de-duplicates by id. A one-second window still over the cap yields its first `cap` results, with
    a warning.
    """
    windows = [(start, end)]  # a stack: the earliest window on top
    while windows:
        lo, hi = windows.pop()
        window = {"min_upload_date": lo, "max_upload_date": hi}
        first = client.search({**params, **window}, page=1, per_page=per_page)
        if first.total > cap and hi > lo:
            mid = (lo + hi) // 2
            later, earlier = ((mid, hi), (lo, mid)) if hi - lo > 1 else ((hi, hi), (lo, lo))
            windows += [later, earlier]
            log.debug("Flickr window %d..%d holds %d > %d results: split at %d", lo, hi, first.total, cap, mid)
            continue
        if first.total > cap:
            log.warning(
                "Flickr: %d photos were uploaded in the same second (%d); only the first %d are reachable",
                first.total,
                lo,
                cap,
            )
        yield from first.photos
        pages = min(first.pages, math.ceil(min(first.total, cap) / per_page))
        for page in range(2, pages + 1):
            result = client.search({**params, **window}, page=page, per_page=per_page)
            if not result.photos:
                break
            yield from result.photos


def photo_candidate(photo: dict[str, Any]) -> Candidate | None:
    """The candidate for one search result: its largest available size (the original first). None if no URL.

    `photo` must pass `malformed_photo`; fields of the wrong type count as absent.
    """
    for size in SIZES:
        url = photo.get(f"url_{size}")
        if isinstance(url, str) and url:
            break
    else:
        return None
    photo_id, owner_id = str(photo["id"]), _text(photo.get("owner")) or ""
    extra: dict[str, Any] = {"flickr_size": size, "flickr_owner_id": owner_id}
    if owner_id:
        extra["flickr_page_url"] = f"https://www.flickr.com/photos/{owner_id}/{photo_id}"
    if (uploaded := _int(photo.get("dateupload"))) is not None:
        extra["flickr_date_upload"] = uploaded
    for name in ("o_width", "o_height"):  # the original's size, sent even when the original is hidden
        if (value := _int(photo.get(name))) is not None:
            extra[f"flickr_{name}"] = value
    return Candidate(
        source="flickr",
        source_id=photo_id,
        url=url,
        width=_int(photo.get(f"width_{size}")),
        height=_int(photo.get(f"height_{size}")),
        license=_text(photo.get("license")),
        owner=_text(photo.get("ownername")),
        title=_text(photo.get("title")),
        extra=extra,
    )


def iter_flickr(settings: FlickrSettings, *, licenses: tuple[str, ...] = ()) -> Iterator[Candidate]:
    """Candidates for a Flickr search, each photo once, in upload-window order.

    `licenses` (Flickr license ids such as "4", "9") is sent as the search's `license` filter.
    Raises ValueError for bad settings and FlickrKeyError without a key (both at once), FlickrError
    when the API fails (while iterating).
    """
    params = search_params(settings, licenses)
    start, end = date_range(settings)
    key = load_api_key(settings)
    return _flickr_candidates(settings, key, params, start=start, end=end)


def _flickr_candidates(
    settings: FlickrSettings, key: str, params: dict[str, Any], *, start: int, end: int
) -> Iterator[Candidate]:
    client = FlickrClient(
        key,
        endpoint=settings.api_endpoint,
        calls_per_hour=settings.api_calls_per_hour,
        retries=settings.api_retries,
        backoff=settings.api_backoff,
        timeout=settings.api_timeout,
    )
    seen: set[str] = set()
    yielded = without_url = malformed = 0
    with client:
        for photo in iter_search_photos(client, params, start=start, end=end, per_page=settings.per_page):
            problem = malformed_photo(photo)
            if problem is not None:  # a rejection of its own (the id names its place in the stream)
                malformed += 1
                candidate = Candidate("flickr", f"malformed-{malformed}", "", error=("malformed", problem))
            else:
                photo_id = str(photo["id"])
                if photo_id in seen:
                    continue
                seen.add(photo_id)
                candidate = photo_candidate(photo)
            if candidate is None:
                without_url += 1
                continue
            yield candidate
            yielded += 1
            if settings.max_photos is not None and yielded >= settings.max_photos:
                break
    if without_url:
        log.warning("Flickr: %d photos had no downloadable size (no url_o and no url_* extra)", without_url)
