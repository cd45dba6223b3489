"""One candidate in, one sample (original bytes + metadata) or one named rejection out.

fetch -> probe the header -> filter on it -> decode check + perceptual hash -> [resize] -> metadata.
Each step is a plain function (fetch, dedup and resize here; `anyres_data.probe`, `anyres_data.filters`); this module
strings them together so a shard task, a test or a notebook can ingest a candidate without Dask.
Resizing is off by default: the original bytes are stored. Pre-download filters
(`filters.check_candidate`) run earlier, when the build plans its candidates.

Memory stays bounded per task: large downloads live in temporary files (`IngestContext.spill_dir`,
payload.py), and decodes that hold a whole image share a budget (`DecodeBudget`) of
--max-decode-bytes, which no single image may exceed (the filters reject it first).
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import requests

from anyres_data.build.dedup import phash, phash_hex
from anyres_data.build.fetch import FetchSettings, fetch_data
from anyres_data.build.resize import ResizeSettings, resize
from anyres_data.candidate import Candidate
from anyres_data.dataset.shards import Sample
from anyres_data.filters import FilterSettings, check_header
from anyres_data.payload import Data, discard, sha256_hex, size_of
from anyres_data.probe import decode_thumbnail, read_header
from anyres_data.sources import LOCAL_SOURCES, TarReader
from anyres_data.sources.columns import METADATA_NAMES

PROBE_NAMES = ("bands", "interpretation", "bit_depth", "n_pages", "interlaced")


class DecodeBudget:
    """Bytes that decodes holding a whole image may hold together; a decode waits until its share is free.

    Each decode asks for at most `capacity` (larger images are rejected before), and holds nothing
    else while it waits, so waiting always ends. Thread-safe.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        nbytes = min(nbytes, self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= nbytes)
            self._free -= nbytes
        try:
            yield
        finally:
            with self._changed:
                self._free += nbytes
                self._changed.notify_all()


@dataclass(frozen=True)
class IngestContext:
    """What the candidates of one task share: settings, an HTTP session, a lock for big buffered decodes."""

    fetch: FetchSettings
    filters: FilterSettings
    fail_on: str = "error"
    session: requests.Session | None = None
    decode_budget: DecodeBudget | None = None  # shared by the task's threads; None: no limit across threads
    tar_reader: TarReader | None = None  # reads tar:// members (folder source), indexing each tar once
    tar_lock: threading.Lock | None = None  # the reader's file position is shared: one read at a time
    resize: ResizeSettings = field(default_factory=ResizeSettings)  # mode none: the original bytes are stored
    spill_dir: str | None = None  # a folder for large downloads (deleted with the task); None: all in memory


def ingest(candidate: Candidate, context: IngestContext) -> Sample:
    """Fetch, probe, filter and hash one candidate.

    Raises Rejected with the reason (fetch errors, not_an_image, unsupported_format, animated,
    too_many_pixels, too_large_to_decode, below_min_size, extreme_aspect, truncated, corrupt).
    Duplicates are found later, over the whole dataset. Filters and the perceptual hash see the image
    as fetched; with a resize mode, the stored bytes (and `width`, `height`, `sha256`, `format`, ...)
    are the resized image's, `original_width`/`original_height` the size before resizing, and
    `resized` says whether it was. A candidate read from another tool's copy (`original_url`) keeps
    that URL as `url` and the copy's location as `read_from`, and the size before that tool's resize.
    A rejected candidate leaves no spilled file behind.
    """
    crawled_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    local = candidate.source in LOCAL_SOURCES
    data = fetch_data(
        candidate.url,
        context.fetch,
        local=local,
        session=context.session,
        spill_dir=context.spill_dir,
        images_only=True,
        tar_reader=context.tar_reader if local else None,
        tar_lock=context.tar_lock,
    )
    try:
        return _probe(candidate, data, context, crawled_at=crawled_at)
    except BaseException:
        discard(data)
        raise


def _probe(candidate: Candidate, data: Data, context: IngestContext, *, crawled_at: str) -> Sample:
    header = read_header(data)
    check_header(header, context.filters)
    budget = context.decode_budget
    with budget.hold(header.decode_bytes) if budget and header.decode_bytes else nullcontext():
        grey = decode_thumbnail(data, header, fail_on=context.fail_on)
        stored = resize(data, header, key=candidate.key, settings=context.resize, fail_on=context.fail_on)
    fetched = header
    if stored is not data:
        discard(data)
        data, header = stored, read_header(stored)
    # the size before any resize: another tool's (img2dataset's sidecar), else the fetched image's
    original = (candidate.original_width or fetched.width, candidate.original_height or fetched.height)
    metadata = {
        "key": candidate.key,
        "url": candidate.original_url or candidate.url,
        "width": header.width,
        "height": header.height,
        "original_width": original[0],
        "original_height": original[1],
        "sha256": sha256_hex(data),
        "source": candidate.source,
        "source_id": candidate.source_id,
        "license": candidate.license,
        "owner": candidate.owner,
        "title": candidate.title,
        "format": header.format,
        "orientation": header.orientation,
        "stored_width": header.stored_width,
        "stored_height": header.stored_height,
        "bytes": size_of(data),
        "phash": phash_hex(phash(grey)),
        "crawled_at": crawled_at,
        **{name: getattr(header, name) for name in PROBE_NAMES},
    }
    if candidate.original_url:
        metadata["read_from"] = candidate.url
    if context.resize.mode != "none" or candidate.original_width:
        metadata["resized"] = header is not fetched or original != (fetched.width, fetched.height)
    for name, value in candidate.extra.items():
        taken = name in METADATA_NAMES or name in PROBE_NAMES
        metadata[f"source_{name}" if taken else name] = value
    return Sample(key=candidate.key, ext=header.format, data=data, metadata=metadata)
