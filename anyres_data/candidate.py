"""What a source proposes: one image candidate, before anything is fetched."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# Longest key: KEY.json must stay a valid file name everywhere (255 bytes on most file systems), so
# that `tar x` of a shard works; longer keys are cut and end in a hash of the whole id.
MAX_KEY_LENGTH = 200


def sample_key(source: str, source_id: str) -> str:
    """The WebDataset key of a sample: `SOURCE-ID` with only [A-Za-z0-9_-] (no dots, see docs/design.md).

    Characters outside the set become '_'; when that changes the id, a short hash of the original
    id is appended so that two ids differing only in unsafe characters never share a key. A key
    longer than MAX_KEY_LENGTH is cut to that length, its last 9 characters `_` + the hash.
    """
    raw = f"{source}-{source_id}"
    safe = _KEY_UNSAFE.sub("_", raw)
    digest = "_" + hashlib.sha1(raw.encode()).hexdigest()[:8]
    if safe != raw:
        safe += digest
    if len(safe) > MAX_KEY_LENGTH:
        safe = safe[: MAX_KEY_LENGTH - len(digest)] + digest
    return safe


@dataclass(frozen=True)
class Candidate:
    """An image a source proposes: where its bytes are and what the source already knows.

    `url` is an http(s) URL, an fsspec path (local sources only) or a `demo://` URL.
    `width`/`height` are the displayed size when the source knows it (Flickr's o_dims), so that
    the size filter can run before anything is downloaded. A candidate read from a copy made by
    another tool (img2dataset's output) names the image's own URL in `original_url` (`url` is where
    the copy is read from) and, if that tool resized it, the size before in `original_width`/
    `original_height`. `extra` carries additional columns
    (img2dataset's `save_additional_columns`) into the sample's metadata. `error` is set by a source
    that already knows the candidate cannot be used (a tar that does not read, a malformed search
    result): (reason, message), and the build rejects it so before anything is fetched.
    """

    source: str
    source_id: str
    url: str
    width: int | None = None
    height: int | None = None
    license: str | None = None
    owner: str | None = None
    title: str | None = None
    original_url: str | None = None
    original_width: int | None = None
    original_height: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: tuple[str, str] | None = None

    @property
    def key(self) -> str:
        return sample_key(self.source, self.source_id)
