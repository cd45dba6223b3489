"""A stand-in for the Flickr REST API on 127.0.0.1, written from Flickr's documentation.

`FlickrServer` serves `flickr.photos.search` (GET or POST, JSON with `nojsoncallback=1`, JSONP
without it) over a synthetic corpus of N photos, deterministic from a seed, uploaded over many
years, and the photos themselves as real JPEGs of the advertised sizes (rendered by the demo
source, so every size of one photo shows the same scene). What it models, as the real API does:

- `api_key` checked: code 100 "Invalid API Key (Key has invalid format)" / "(Key not found)";
- `text`, `tags` + `tag_mode`, `license` (comma list), `min_upload_date`/`max_upload_date` (unix
  seconds or MySQL datetimes, both inclusive), `bbox`, `sort`, `page`/`per_page` (≤ 500), `extras`;
  no limiting parameter gives code 3 (parameterless searches are disabled);
- numbers as Flickr sends them: `total` a string, `page`/`pages`/`perpage` ints, `license` and
  `dateupload` strings, `width_X`/`height_X` strings for some photos and ints for others;
- the 4,000-result cap: `total` and `pages` count every match, but results past the first 4,000 are
  not reachable: such pages repeat the last reachable page (or come back empty, `beyond_cap="empty"`);
- sizes: url_o only when the owner allows originals (most, not all); the other sizes (6k … z) exist
  only below the original's longer side;
- faults, queued with `fault(kind)` and used by the next matching requests: "429" (with Retry-After),
  "500", "503", "reset" (TCP reset, no answer), "truncated" (Content-Length larger than the body
  sent), "bad_json" (a complete answer whose JSON is cut), "fail105" / "fail10" (stat fail codes);
  and hostile answers: "deep_json" (valid JSON nested 200,000 deep), "malformed_photos" (the real
  answer with junk entries in its `photo` list: a number, a string, null, a list, an object without
  an id).

Every request is recorded in `calls` (receipt time, path, parameters, status, fault, total) so
tests can check rate limiting and backoff. Use as a context manager:

    with FlickrServer(n_photos=10_000) as server:
        ... FlickrSettings(api_endpoint=server.endpoint) ...
"""

from __future__ import annotations

import json
import math
import socket
import string
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyvips

from anyres_data.sources.demo import render_demo
from anyres_data.sources.flickr import SORTS

TEST_KEY = "0123456789abcdef0123456789abcdef"  # well-formed: Flickr keys are 32 hex digits
VOCABULARY = ("church", "cathedral", "bird", "mountain", "lake", "street", "flower", "bridge")
OWNERS = ("Ada L", "Grace H", "Alan T", "Edsger D", "Barbara L", "Ken T", "Margaret H", "Donald K")
LICENSES = tuple(str(i) for i in range(11))  # Flickr license ids 0 (all rights reserved) .. 10 (PDM)
# (label, longer side) of the sizes below the original, as named in `extras` (url_l is the 1024 'Large')
SIZE_EDGES = (("6k", 6144), ("5k", 5120), ("4k", 4096), ("3k", 3072), ("k", 2048), ("h", 1600))
SIZE_EDGES += (("l", 1024), ("c", 800), ("z", 640), ("w", 400), ("n", 320), ("m", 240))
_FAULT_STATUS = {"429": 429, "500": 500, "503": 503, "reset": 0, "truncated": 200, "bad_json": 200}
_FAULT_STATUS |= {"fail105": 200, "fail10": 200, "deep_json": 200, "malformed_photos": 200}
MALFORMED_PHOTOS = [7, "photo", None, ["id", "1"], {"title": "no id", "url_o": "http://127.0.0.1:9/x.jpg"}]
DEEP = 200_000
FAULTS = tuple(_FAULT_STATUS)


@dataclass(frozen=True)
class Photo:
    """One photo of the corpus."""

    id: str
    owner: str
    ownername: str
    secret: str
    server: str
    title: str
    tags: tuple[str, ...]
    license: str
    dateupload: int
    datetaken: str
    width: int
    height: int
    has_original: bool
    latitude: float
    longitude: float
    interestingness: float
    string_numbers: bool  # sends width_X/height_X as strings

    def sizes(self) -> dict[str, tuple[int, int]]:
        """{label: (width, height)} of the sizes Flickr serves for this photo."""
        longest = max(self.width, self.height)
        out = {"o": (self.width, self.height)} if self.has_original else {}
        for label, edge in SIZE_EDGES:
            if edge < longest:
                out[label] = (max(1, round(self.width * edge / longest)), max(1, round(self.height * edge / longest)))
        return out


@dataclass(frozen=True)
class Call:
    """One request the server received."""

    time: float  # time.monotonic() at receipt
    path: str
    params: dict[str, str]
    status: int
    fault: str | None = None
    total: int | None = None  # for a successful search: the total it reported
    user_agent: str = ""


@dataclass
class _Fault:
    kind: str
    retry_after: str | None
    target: str  # "rest" or "photos"


class _SearchFailed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def make_corpus(
    n_photos: int,
    *,
    seed: int = 0,
    no_original_fraction: float = 0.2,
    min_side: int = 500,
    max_side: int = 6000,
    first_upload: str = "2005-01-01",
    last_upload: str = "2024-12-31",
    burst: int = 0,
) -> list[Photo]:
    """A deterministic corpus, in upload order. Uploads grow denser over time; `burst` photos share one second."""
    rng = np.random.default_rng(seed)
    t0 = int(datetime.fromisoformat(first_upload).replace(tzinfo=UTC).timestamp())
    t1 = int(datetime.fromisoformat(last_upload).replace(tzinfo=UTC).timestamp())
    uploads = np.sort(t0 + ((t1 - t0) * rng.random(n_photos) ** 0.6).astype(np.int64))
    if burst:
        uploads[:burst] = (t0 + t1) // 2
        uploads = np.sort(uploads)
    longer = np.exp(rng.uniform(math.log(min_side), math.log(max_side), n_photos))
    aspect = rng.uniform(1.0, 1.8, n_photos)
    portrait = rng.random(n_photos) < 0.3
    license_weights = np.array([30, 4, 6, 4, 10, 8, 3, 5, 1, 5, 3], float)
    licenses = rng.choice(len(LICENSES), n_photos, p=license_weights / license_weights.sum())
    letters = np.array(list(string.ascii_lowercase + string.digits))
    corpus = []
    for i in range(n_photos):
        long_side = round(longer[i])
        short_side = max(1, round(long_side / aspect[i]))
        width, height = (short_side, long_side) if portrait[i] else (long_side, short_side)
        n_tags = int(rng.integers(1, 4))
        tags = tuple(sorted(set(rng.choice(VOCABULARY, n_tags, replace=False).tolist())))
        owner = int(rng.integers(len(OWNERS)))
        taken = int(uploads[i]) - int(rng.integers(0, 86400 * 60))
        corpus.append(
            Photo(
                id=str(5_000_000_000 + 17 * i + int(rng.integers(0, 17))),
                owner=f"{10_000_000 + owner * 7919}@N0{owner % 8}",
                ownername=OWNERS[owner],
                secret="".join(rng.choice(letters, 10)),
                server=str(65535 - int(rng.integers(0, 3))),
                title=f"{tags[0]} {i}",
                tags=tags,
                license=LICENSES[licenses[i]],
                dateupload=int(uploads[i]),
                datetaken=datetime.fromtimestamp(taken, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                width=width,
                height=height,
                has_original=bool(rng.random() >= no_original_fraction),
                latitude=float(rng.uniform(-60, 70)),
                longitude=float(rng.uniform(-180, 180)),
                interestingness=float(rng.random()),
                string_numbers=bool(rng.random() < 0.5),
            )
        )
    return corpus


def _timestamp(value: str) -> int:
    value = value.strip()
    if value.lstrip("-").isdigit():
        return int(value)
    return int(datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp())  # MySQL datetime, UTC


@lru_cache(maxsize=64)
def _jpeg(seed: int, width: int, height: int) -> bytes:
    pixels = render_demo(seed, width, height)
    return pyvips.Image.new_from_memory(pixels.data, width, height, 3, "uchar").write_to_buffer(".jpg", Q=90)


class FlickrServer:
    """The stand-in server: a ThreadingHTTPServer on 127.0.0.1 in a thread. See the module docstring."""

    def __init__(
        self,
        *,
        n_photos: int = 10_000,
        seed: int = 0,
        api_key: str = TEST_KEY,
        cap: int = 4000,
        beyond_cap: str = "repeat",
        **corpus_options: Any,
    ) -> None:
        assert beyond_cap in ("repeat", "empty")
        self.api_key, self.cap, self.beyond_cap = api_key, cap, beyond_cap
        self.corpus = make_corpus(n_photos, seed=seed, **corpus_options)
        self.by_id = {p.id: p for p in self.corpus}
        self.calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._orders = {
            "date-posted-asc": sorted(self.corpus, key=lambda p: (p.dateupload, p.id)),
            "date-taken-asc": sorted(self.corpus, key=lambda p: (p.datetaken, p.id)),
            "interestingness-asc": sorted(self.corpus, key=lambda p: (p.interestingness, p.id)),
        }
        for name in list(self._orders):
            self._orders[name.replace("-asc", "-desc")] = self._orders[name][::-1]
        self._orders["relevance"] = self._orders["interestingness-desc"]
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FlickrServer:
        handler = type("Handler", (_Handler,), {"flickr": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="flickr-stand-in", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FlickrServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def endpoint(self) -> str:
        """The REST endpoint, for FlickrSettings.api_endpoint."""
        return self.base_url + "/services/rest/"

    # -- test controls

    def fault(self, kind: str, *, times: int = 1, retry_after: str | None = None, target: str = "rest") -> None:
        """Make the next `times` requests to `target` ("rest" or "photos") fail with `kind` (see FAULTS)."""
        assert kind in FAULTS, kind
        assert target in ("rest", "photos"), target
        with self._lock:
            self._faults += [_Fault(kind, retry_after, target) for _ in range(times)]

    def rest_calls(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path.startswith("/services/rest")]

    def matching(
        self,
        *,
        text: str | None = None,
        tags: Iterable[str] = (),
        tag_mode: str = "any",
        licenses: Iterable[str] = (),
        min_upload: int | None = None,
        max_upload: int | None = None,
    ) -> list[Photo]:
        """The corpus photos a search with these parameters matches (no cap), in upload order."""
        params = {"tag_mode": tag_mode}
        if text:
            params["text"] = text
        if tags:
            params["tags"] = ",".join(tags)
        if licenses:
            params["license"] = ",".join(licenses)
        if min_upload is not None:
            params["min_upload_date"] = str(min_upload)
        if max_upload is not None:
            params["max_upload_date"] = str(max_upload)
        return [p for p in self._orders["date-posted-asc"] if self._matches(p, self._filters(params))]

    # -- the API

    def _take_fault(self, target: str) -> _Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if f.target == target:
                    return self._faults.pop(i)
        return None

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _filters(self, params: dict[str, str]) -> dict[str, Any]:
        words = params.get("text", "").lower().split()
        tags = {t.strip().lower() for t in params.get("tags", "").split(",") if t.strip()}
        licenses = {x.strip() for x in params.get("license", "").split(",") if x.strip()}
        bbox = None
        if params.get("bbox"):
            try:
                bbox = [float(v) for v in params["bbox"].split(",")]
            except ValueError:
                raise _SearchFailed(18, "Illogical arguments") from None
            if len(bbox) != 4:
                raise _SearchFailed(18, "Illogical arguments")
        try:
            lo = _timestamp(params["min_upload_date"]) if params.get("min_upload_date") else None
            hi = _timestamp(params["max_upload_date"]) if params.get("max_upload_date") else None
        except ValueError:
            raise _SearchFailed(18, "Illogical arguments") from None
        return {
            "words": words,
            "tags": tags,
            "all_tags": params.get("tag_mode", "any") == "all",
            "licenses": licenses,
            "bbox": bbox,
            "lo": lo,
            "hi": hi,
        }

    @staticmethod
    def _matches(p: Photo, f: dict[str, Any]) -> bool:
        if f["lo"] is not None and p.dateupload < f["lo"]:
            return False
        if f["hi"] is not None and p.dateupload > f["hi"]:
            return False
        if f["licenses"] and p.license not in f["licenses"]:
            return False
        if f["words"]:
            haystack = set(p.title.lower().split()) | set(p.tags)
            if not all(w in haystack for w in f["words"]):
                return False
        if f["tags"]:
            have = f["tags"] & set(p.tags)
            if not have or (f["all_tags"] and have != f["tags"]):
                return False
        if f["bbox"] is not None:
            min_lon, min_lat, max_lon, max_lat = f["bbox"]
            if not (min_lon <= p.longitude <= max_lon and min_lat <= p.latitude <= max_lat):
                return False
        return True

    def search(self, params: dict[str, str]) -> dict[str, Any]:
        """The JSON answer of flickr.photos.search for these parameters (may raise _SearchFailed)."""
        key = params.get("api_key", "")
        if len(key) != 32 or any(c not in string.hexdigits for c in key):
            raise _SearchFailed(100, "Invalid API Key (Key has invalid format)")
        if key != self.api_key:
            raise _SearchFailed(100, "Invalid API Key (Key not found)")
        limiting = ("text", "tags", "bbox", "min_upload_date", "max_upload_date", "user_id", "group_id")
        if not any(params.get(p) for p in limiting):
            raise _SearchFailed(3, "Parameterless searches have been disabled. Please use flickr.photos.getRecent.")
        sort = params.get("sort", "date-posted-desc")
        if sort not in SORTS:
            sort = "date-posted-desc"  # Flickr ignores an unknown sort
        try:
            page = max(1, int(params.get("page", "1")))
            per_page = min(500, max(1, int(params.get("per_page", "100"))))
        except ValueError:
            raise _SearchFailed(18, "Illogical arguments") from None
        filters = self._filters(params)
        found = [p for p in self._orders[sort] if self._matches(p, filters)]
        total = len(found)
        reachable = found[: self.cap]
        first = (page - 1) * per_page
        if first >= len(reachable) and reachable:
            if self.beyond_cap == "repeat" and total > self.cap:
                first = (len(reachable) - 1) // per_page * per_page  # the last reachable page, again
            else:
                first = len(reachable)
        chosen = reachable[first : first + per_page]
        extras = {e.strip() for e in params.get("extras", "").split(",") if e.strip()}
        return {
            "photos": {
                "page": page,
                "pages": math.ceil(total / per_page),
                "perpage": per_page,
                "total": str(total),
                "photo": [self._photo_json(p, extras) for p in chosen],
            },
            "stat": "ok",
        }

    def photo_url(self, p: Photo, label: str) -> str:
        suffix = "b" if label == "l" else label  # the 1024 'Large' is url_l, its file ends in _b
        return f"{self.base_url}/photos/{p.server}/{p.id}_{p.secret}_{suffix}.jpg"

    def _photo_json(self, p: Photo, extras: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": p.id,
            "owner": p.owner,
            "secret": p.secret,
            "server": p.server,
            "farm": 66,
            "title": p.title,
            "ispublic": 1,
            "isfriend": 0,
            "isfamily": 0,
        }
        if "license" in extras:
            out["license"] = p.license
        if "owner_name" in extras:
            out["ownername"] = p.ownername
        if "date_upload" in extras:
            out["dateupload"] = str(p.dateupload)
        if "date_taken" in extras:
            out.update(datetaken=p.datetaken, datetakengranularity=0, datetakenunknown="0")
        if "tags" in extras:
            out["tags"] = " ".join(p.tags)
        if "geo" in extras:
            out.update(latitude=p.latitude, longitude=p.longitude, accuracy=16)
        if "o_dims" in extras:
            out.update(o_width=str(p.width), o_height=str(p.height))
        number = str if p.string_numbers else int
        for label, (w, h) in p.sizes().items():
            if f"url_{label}" in extras:
                out[f"url_{label}"] = self.photo_url(p, label)
                out[f"height_{label}"] = number(h)
                out[f"width_{label}"] = number(w)
        return out

    def photo_file(self, path: str) -> bytes | None:
        """JPEG bytes for /photos/SERVER/ID_SECRET_SUFFIX.jpg, rendered at that size; None if unknown."""
        name = path.rsplit("/", 1)[-1]
        if not name.endswith(".jpg") or name.count("_") != 2:
            return None
        photo_id, secret, suffix = name[: -len(".jpg")].split("_")
        p = self.by_id.get(photo_id)
        label = "l" if suffix == "b" else suffix
        if p is None or p.secret != secret or label not in p.sizes():
            return None
        width, height = p.sizes()[label]
        return _jpeg(int(p.id), width, height)


class _Handler(BaseHTTPRequestHandler):
    flickr: FlickrServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._handle(parse_qs(urlsplit(self.path).query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        params = parse_qs(urlsplit(self.path).query)
        params.update(parse_qs(body))
        self._handle(params)

    def _handle(self, query: dict[str, list[str]]) -> None:
        params = {k: v[-1] for k, v in query.items()}
        path = urlsplit(self.path).path
        received = time.monotonic()
        agent = self.headers.get("User-Agent", "")
        target = "rest" if path.rstrip("/") == "/services/rest" else "photos"
        fault = self.flickr._take_fault(target)
        if fault is not None and fault.kind == "malformed_photos":
            status, body, content_type, total = self._rest(params)
            answer = json.loads(body)
            if "photos" in answer:
                answer["photos"]["photo"][1:1] = MALFORMED_PHOTOS
            self.flickr._record(Call(received, path, params, status, fault.kind, total, agent))
            self._send(status, json.dumps(answer).encode(), content_type)
            return
        if fault is not None:  # recorded first: the client may act on the answer before this thread goes on
            status = _FAULT_STATUS[fault.kind]
            self.flickr._record(Call(received, path, params, status, fault.kind, None, agent))
            self._fault(fault)
            return
        if target == "rest":
            status, body, content_type, total = self._rest(params)
        else:
            data = self.flickr.photo_file(path)
            status, body, content_type, total = (
                (200, data, "image/jpeg", None) if data else (404, b"", "text/plain", None)
            )
        self.flickr._record(Call(received, path, params, status, None, total, agent))
        self._send(status, body, content_type)

    def _rest(self, params: dict[str, str]) -> tuple[int, bytes, str, int | None]:
        method = params.get("method", "")
        total = None
        try:
            if params.get("format", "rest") != "json":
                raise _SearchFailed(111, f'Format "{params.get("format", "rest")}" not found')
            if method != "flickr.photos.search":
                raise _SearchFailed(112, f'Method "{method}" not found')
            answer = self.flickr.search(params)
            total = int(answer["photos"]["total"])
        except _SearchFailed as failed:
            answer = {"stat": "fail", "code": failed.code, "message": failed.message}
        text = json.dumps(answer)
        if params.get("nojsoncallback") != "1":
            text = f"jsonFlickrApi({text})"
        return 200, text.encode(), "application/json; charset=utf-8", total

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _fault(self, fault: _Fault) -> None:
        kind = fault.kind
        if kind == "429":
            self._send(429, b"Too Many Requests", "text/plain", {"Retry-After": fault.retry_after or "1"})
            return
        if kind in ("500", "503"):
            self._send(int(kind), b"<html>Internal error</html>", "text/html")
            return
        if kind in ("fail105", "fail10"):
            code = int(kind[4:])
            message = (
                "Service currently unavailable" if code == 105 else "Sorry, the Flickr search API is not available"
            )
            self._send(200, json.dumps({"stat": "fail", "code": code, "message": message}).encode(), "application/json")
            return
        if kind == "deep_json":
            self._send(200, b'{"photos": ' + b"[" * DEEP + b"]" * DEEP + b', "stat": "ok"}', "application/json")
            return
        if kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        body = json.dumps({"photos": {"page": 1, "pages": 1, "perpage": 1, "total": "1", "photo": []}, "stat": "ok"})
        cut = body.encode()[: len(body) // 2]
        if kind == "bad_json":
            self._send(200, cut, "application/json")
            return
        assert kind == "truncated"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(cut)
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


__all__ = ["FAULTS", "TEST_KEY", "Call", "FlickrServer", "Photo", "make_corpus"]
