"""What a source proposes: one image candidate, before anything is fetched."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def sample_key(source: str, source_id: str) -> str:
    """The WebDataset key of a sample: `SOURCE-ID` with only [A-Za-z0-9_-] (no dots, see DESIGN.md).

    Characters outside the set become '_'; when that changes the id, a short hash of the original
    id is appended so that two ids differing only in unsafe characters never share a key.
    """
    raw = f"{source}-{source_id}"
    safe = _KEY_UNSAFE.sub("_", raw)
    if safe != raw:
        safe += "_" + hashlib.sha1(raw.encode()).hexdigest()[:8]
    return safe


@dataclass(frozen=True)
class Candidate:
    """An image a source proposes: where its bytes are and what the source already knows.

    `url` is an http(s) URL, an fsspec path (local sources only) or a `demo://` URL.
    `width`/`height` are the displayed size when the source knows it (Flickr's o_dims), so that
    the size filter can run before anything is downloaded. `extra` carries additional columns
    (img2dataset's `save_additional_columns`) into the sample's metadata.
    """

    source: str
    source_id: str
    url: str
    width: int | None = None
    height: int | None = None
    license: str | None = None
    owner: str | None = None
    title: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return sample_key(self.source, self.source_id)
