"""One candidate in, one sample (original bytes + metadata) or one named rejection out.

fetch -> probe the header -> filter on it -> decode check + perceptual hash -> [resize] -> metadata.
Each step is a plain function (fetch.py, probe.py, filters.py, dedup.py, resize.py); this module
strings them together so a shard task, a test or a notebook can ingest a candidate without Dask.
Resizing is off by default: the original bytes are stored. Pre-download filters
(`filters.check_candidate`) run earlier, when the build plans its candidates.
"""

from __future__ import annotations

import datetime
import hashlib
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import requests

from anyres_data.candidate import Candidate
from anyres_data.dedup import phash, phash_hex
from anyres_data.fetch import FetchSettings, fetch
from anyres_data.filters import FilterSettings, check_header
from anyres_data.probe import decode_thumbnail, read_header
from anyres_data.rejects import Rejected
from anyres_data.resize import ResizeSettings, resize
from anyres_data.sources import LOCAL_SOURCES, TarReader
from anyres_data.sources.columns import METADATA_NAMES

# Decodes that buffer the whole image (progressive JPEG, interlaced PNG) above this many pixels
# take turns, so a task's threads never hold several such images at once.
LARGE_BUFFERED_DECODE = 16_000_000
PROBE_NAMES = ("bands", "interpretation", "bit_depth", "n_pages", "interlaced")


@dataclass(frozen=True)
class Sample:
    """A kept image: `data` are the bytes as fetched (or resized), stored as `KEY.EXT` beside `KEY.json`."""

    key: str
    ext: str
    data: bytes
    metadata: dict[str, Any]


@dataclass(frozen=True)
class IngestContext:
    """What the candidates of one task share: settings, an HTTP session, a lock for big buffered decodes."""

    fetch: FetchSettings
    filters: FilterSettings
    fail_on: str = "error"
    session: requests.Session | None = None
    buffered_decode: threading.Lock | None = None
    tar_reader: TarReader | None = None  # reads tar:// members (folder source), indexing each tar once
    tar_lock: threading.Lock | None = None  # the reader's file position is shared: one read at a time
    resize: ResizeSettings = field(default_factory=ResizeSettings)  # mode none: the original bytes are stored


def ingest(candidate: Candidate, context: IngestContext) -> Sample:
    """Fetch, probe, filter and hash one candidate.

    Raises Rejected with the reason (fetch errors, not_an_image, unsupported_format, animated,
    too_many_pixels, below_min_size, extreme_aspect, truncated, corrupt). Duplicates are found later,
    over the whole dataset. Filters and the perceptual hash see the image as fetched; with a resize
    mode, the stored bytes (and `width`, `height`, `sha256`, `format`, ...) are the resized image's,
    `original_width`/`original_height` the size before resizing, and `resized` says whether it was.
    """
    crawled_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    data = _fetch(candidate, context)
    header = read_header(data)
    check_header(header, context.filters)
    big = header.interlaced and header.pixels > LARGE_BUFFERED_DECODE
    with context.buffered_decode if big and context.buffered_decode else nullcontext():
        grey = decode_thumbnail(data, header, fail_on=context.fail_on)
        stored = resize(data, header, key=candidate.key, settings=context.resize, fail_on=context.fail_on)
    original = header
    if stored is not data:
        data, header = stored, read_header(stored)
    metadata = {
        "key": candidate.key,
        "url": candidate.url,
        "width": header.width,
        "height": header.height,
        "original_width": original.width,
        "original_height": original.height,
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": candidate.source,
        "source_id": candidate.source_id,
        "license": candidate.license,
        "owner": candidate.owner,
        "title": candidate.title,
        "format": header.format,
        "orientation": header.orientation,
        "stored_width": header.stored_width,
        "stored_height": header.stored_height,
        "bytes": len(data),
        "phash": phash_hex(phash(grey)),
        "crawled_at": crawled_at,
        **{name: getattr(header, name) for name in PROBE_NAMES},
    }
    if context.resize.mode != "none":
        metadata["resized"] = header is not original
    for name, value in candidate.extra.items():
        taken = name in METADATA_NAMES or name in PROBE_NAMES
        metadata[f"source_{name}" if taken else name] = value
    return Sample(key=candidate.key, ext=header.format, data=data, metadata=metadata)


def _fetch(candidate: Candidate, context: IngestContext) -> bytes:
    local = candidate.source in LOCAL_SOURCES
    if local and candidate.url.startswith("tar://") and context.tar_reader is not None:
        try:
            with context.tar_lock or nullcontext():
                data = context.tar_reader.read(candidate.url)
        except (OSError, KeyError, ValueError) as err:
            raise Rejected("read_error", f"{type(err).__name__}: {err}") from None
        if len(data) > context.fetch.max_bytes:
            raise Rejected("too_large", f"more than {context.fetch.max_bytes} bytes")
        return data
    return fetch(candidate.url, context.fetch, local=local, session=context.session)
