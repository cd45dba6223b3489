"""WebDataset shards: samples in, a tar that appears whole; a tar in, its samples.

A sample is two members, `KEY.EXT` (the original bytes) and `KEY.json` (its metadata), and a third,
`KEY.txt`, when it has a caption (so that `to_tuple("jpg", "txt")` works as on img2dataset's shards). Writing goes
through webdataset's `TarWriter` into a temporary file that is moved into place on close (see
storage.py), and only once the first sample arrives: a shard that ends up empty is never written.
Reading uses webdataset's own tar iterators on an fsspec stream, so any fsspec URL works.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlparse

import braceexpand
import fsspec
import webdataset as wds
from fsspec.implementations.local import LocalFileSystem
from webdataset.tariterators import group_by_keys, tar_file_expander

from anyres_data import storage
from anyres_data.payload import Data, SpilledFile

# Members that hold the image, in order of preference; WebDataset lowercases them.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "tif", "tiff", "gif", "bmp", "avif", "heic", "heif", "jxl", "jp2")
WDS_SCHEMES = ("pipe", "http", "https")  # opened by webdataset's gopen (curl); everything else by fsspec


def resolve_shards(urls: str) -> list[str]:
    """Shard URLs from a dataset directory, a .tar URL, a brace pattern, a glob, or several joined by '::'.

    A directory yields its `shards/*.tar` (our layout) or else its `*.tar`; fsspec URLs are listed
    through fsspec; `pipe:` and http(s) URLs are brace-expanded only (they cannot be listed).
    Raises ValueError when nothing is found or a named (non-http) shard does not exist.
    """
    found: list[str] = []
    missing: list[str] = []
    for part in (u.strip() for u in urls.split("::")):
        if not part:
            continue
        for url in braceexpand.braceexpand(part):
            if urlparse(url).scheme in WDS_SCHEMES:
                found.append(url)
                continue
            fs, path = fsspec.core.url_to_fs(url)
            name = (lambda p: p) if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol
            if any(c in path for c in "*?["):
                found.extend(name(p) for p in sorted(fs.glob(path)))
            elif fs.isdir(path):
                inner = sorted(fs.glob(path.rstrip("/") + "/shards/*.tar")) or sorted(
                    fs.glob(path.rstrip("/") + "/*.tar")
                )
                found.extend(name(p) for p in inner)
            elif fs.exists(path):
                found.append(url)
            else:
                missing.append(url)
    if missing:
        raise ValueError(f"shard(s) not found: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    if not found:
        raise ValueError(
            f"no shards found at {urls!r}: give a dataset directory (with shards/*.tar), a .tar URL, "
            "a brace pattern such as shards/x-{000000..000009}.tar, or a glob"
        )
    return found


def open_shard(url: str) -> IO[bytes]:
    """A shard's bytes: pipe: and http(s) through webdataset's gopen, any other URL through fsspec."""
    if urlparse(url).scheme in WDS_SCHEMES:
        return wds.gopen(url, "rb")
    return fsspec.open(url, "rb").open()


def image_bytes(sample: dict[str, Any]) -> bytes | None:
    """The image member of a sample (first of IMAGE_EXTENSIONS present), or None."""
    for ext in IMAGE_EXTENSIONS:
        if ext in sample:
            return sample[ext]
    return None


@dataclass(frozen=True)
class Sample:
    """A kept image: `data` are the bytes as fetched (or resized), stored as `KEY.EXT` beside `KEY.json`.

    `data` is a `payload.SpilledFile` when the download was large and the context had a spill folder.
    """

    key: str
    ext: str
    data: Data
    metadata: dict[str, Any]


def encode_metadata(metadata: dict[str, Any]) -> bytes:
    return json.dumps(metadata, ensure_ascii=False, sort_keys=True).encode()


class ShardWriter:
    """Writes samples to the shard at `url`; the file appears (atomically) when the writer closes.

    Use as a context manager: leaving the block with an exception discards the partial shard.
    """

    def __init__(self, url: str, tmp_dir: str) -> None:
        self.url = url
        self.tmp_dir = tmp_dir
        self.count = 0
        self._stack = ExitStack()
        self._tar: wds.TarWriter | None = None

    def write(self, sample: Sample) -> None:
        members = {"__key__": sample.key, sample.ext: sample.data, "json": encode_metadata(sample.metadata)}
        caption = sample.metadata.get("caption")
        if isinstance(caption, str):
            members["txt"] = caption.encode()
        if isinstance(sample.data, SpilledFile):
            self._write_spilled(members)
        else:
            self.write_members(members)

    def write_members(self, members: dict[str, Any]) -> None:
        """Write one sample given as webdataset members: {"__key__": key, ext: bytes, ...}."""
        self._writer().write(members)
        self.count += 1

    def _writer(self) -> wds.TarWriter:
        if self._tar is None:
            f = self._stack.enter_context(storage.atomic_open(self.url, self.tmp_dir))
            self._tar = wds.TarWriter(f, encoder=False)
        return self._tar

    def _write_spilled(self, members: dict[str, Any]) -> None:
        """As TarWriter.write (same member order and fields), copying a spilled file's bytes from disk."""
        writer = self._writer()
        key = members["__key__"]
        for ext in sorted(name for name in members if name != "__key__"):
            value = members[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.mtime, info.mode, info.uname, info.gname = time.time(), writer.mode, writer.user, writer.group
            if isinstance(value, SpilledFile):
                info.size = value.size
                with open(value.path, "rb") as f:
                    writer.tarstream.addfile(info, f)
            else:
                info.size = len(value)
                writer.tarstream.addfile(info, io.BytesIO(value))
        self.count += 1

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tar is not None and exc[0] is None:
            self._tar.close()  # end-of-archive blocks; the stream itself is closed (and moved) by the stack
        self._stack.__exit__(*exc)


def read_shard(url: str) -> Iterator[dict[str, Any]]:
    """The samples of a shard as webdataset gives them: {"__key__": key, "jpg": bytes, "json": bytes, ...}."""
    with fsspec.open(url, "rb") as f:
        for sample in group_by_keys(tar_file_expander([{"url": url, "stream": f}])):
            yield {k: v for k, v in sample.items() if k != "__url__"}


def drop_samples(url: str, keys: set[str], *, tmp_dir: str) -> int:
    """Rewrite the shard at `url` without the samples whose key is in `keys`; remove it if none is left.

    Idempotent (keys already gone are ignored), so a finalize step that was interrupted can run again.
    Returns the number of samples left.
    """
    if not storage.exists(url):
        return 0
    samples = read_shard(url)
    with ShardWriter(url, tmp_dir) as writer:
        for sample in samples:
            if sample["__key__"] not in keys:
                writer.write_members(sample)
    if writer.count == 0:
        storage.remove(url)
    return writer.count
