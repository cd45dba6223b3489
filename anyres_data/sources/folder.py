"""The folder source: images under a folder (any fsspec location), including img2dataset's output.

Every file whose extension is an image extension is a candidate, found recursively and proposed in
sorted path order; its `source_id` is its path relative to the folder. Two layouts of img2dataset
output are understood:

- "files": `00000/000000001.jpg` beside `000000001.json` (url, caption, size, saved columns) and
  `000000001.txt` (caption). The JSON's fields go into the candidate's `extra` (the original URL as
  `source_url`: names the build writes itself get a `source_` prefix, see `columns.py`), its
  `license`/`owner`/`title` into the candidate's own fields.
- "webdataset": `.tar` shards whose members `KEY.jpg` + `KEY.json` (+ `KEY.txt`) form a sample.
  A member's URL is the fsspec URL `tar://MEMBER::TAR_URL`; `TarReader` reads such URLs indexing
  each tar once (plain `fsspec.open` re-indexes the whole tar for every member).

Candidates carry fsspec URLs (`file:///...`, `s3://...`, `tar://...::...`): the build's fetcher reads
them because the source is local.
"""

from __future__ import annotations

import json
import logging
import posixpath
import tarfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec

from anyres_data.candidate import Candidate
from anyres_data.settings import setting
from anyres_data.sources.columns import extra_name, jsonable

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp", "gif", "avif", "heic", "heif", "jxl", "jp2")
_DROPPED = frozenset({"status", "error_message", "exif"})  # img2dataset bookkeeping, re-derived by the build
_PROMOTED = ("license", "owner", "title")


@dataclass(frozen=True)
class FolderSettings:
    """Where the images are and which files count as images."""

    folder: str | None = setting(None, "folder of images, img2dataset output or .tar shards; any fsspec URL")
    folder_extensions: tuple[str, ...] = setting(
        IMAGE_EXTENSIONS, "comma-separated file extensions taken as images (any case)"
    )
    folder_tars: bool = setting(True, "also read images inside .tar files (WebDataset / img2dataset shards)")


def _split_ext(name: str) -> tuple[str, str]:
    """('dir/photo.v2', 'jpg') for 'dir/photo.v2.JPG': a file's extension follows its last dot."""
    stem, ext = posixpath.splitext(name)
    return stem, ext[1:].lower()


def _split_key(name: str) -> tuple[str, str]:
    """('dir/000000001', 'jpg') for 'dir/000000001.jpg': a WebDataset key ends at the basename's first dot."""
    directory, base = posixpath.split(name)
    stem, dot, ext = base.partition(".")
    return posixpath.join(directory, stem), ext.lower() if dot else ""


def _metadata(meta: dict[str, Any], caption: str | None) -> tuple[dict[str, Any], dict[str, str | None]]:
    """(extra, promoted fields) from an img2dataset-style JSON record and caption text."""
    extra: dict[str, Any] = {}
    promoted: dict[str, str | None] = {}
    for name, value in meta.items():
        if name in _DROPPED:
            continue
        if name in _PROMOTED:
            promoted[name] = None if value in (None, "") else str(value)
            continue
        extra[extra_name(name)] = jsonable(value)
    if caption is not None and "caption" not in extra:
        extra["caption"] = caption
    return extra, promoted


def _json_record(data: bytes, where: str) -> dict[str, Any]:
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, ValueError) as err:
        log.warning("%s: unreadable JSON sidecar ignored (%s)", where, err)
        return {}
    return record if isinstance(record, dict) else {}


def iter_folder(settings: FolderSettings) -> Iterator[Candidate]:
    """A candidate per image file (and per image inside .tar files), in sorted path order.

    Raises ValueError at once when --folder is not given or does not exist.
    """
    if not settings.folder:
        raise ValueError("--source folder needs --folder PATH (a folder, a .tar, or any fsspec URL)")
    fs, root = fsspec.core.url_to_fs(settings.folder)
    if not fs.exists(root):
        raise ValueError(f"--folder {settings.folder!r}: no such folder or file")
    return _folder_candidates(settings, fs, root)


def _folder_candidates(settings: FolderSettings, fs: fsspec.AbstractFileSystem, root: str) -> Iterator[Candidate]:
    extensions = {e.lower().lstrip(".") for e in settings.folder_extensions}
    if fs.isfile(root):
        root, paths = posixpath.dirname(root), [root]
    else:
        paths = sorted(fs.find(root))
    present = set(paths)
    for path in paths:
        relative = posixpath.relpath(path, root) if root else path
        stem, ext = _split_ext(path)
        if ext in extensions:
            meta = _json_record(fs.cat_file(stem + ".json"), stem + ".json") if stem + ".json" in present else {}
            caption = fs.cat_file(stem + ".txt").decode(errors="replace") if stem + ".txt" in present else None
            extra, promoted = _metadata(meta, caption)
            yield Candidate(
                source="folder",
                source_id=relative,
                url=fs.unstrip_protocol(path),
                extra=extra,
                **promoted,
            )
        elif ext == "tar" and settings.folder_tars:
            yield from _iter_tar(fs, path, relative, extensions)


def _iter_tar(fs: fsspec.AbstractFileSystem, path: str, relative: str, extensions: set[str]) -> Iterator[Candidate]:
    """Candidates for the images in one tar, in member order; sidecars of the same key give metadata."""
    tar_url = fs.unstrip_protocol(path)
    with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
        samples: OrderedDict[str, dict[str, tarfile.TarInfo]] = OrderedDict()
        for member in tar:  # headers only: member data is skipped by seeking
            if member.isfile():
                key, ext = _split_key(member.name)
                samples.setdefault(key, {})[ext] = member
        for key, members in samples.items():
            images = [ext for ext in members if ext in extensions]
            if not images:
                continue
            meta = (
                _json_record(tar.extractfile(members["json"]).read(), f"{tar_url}:{key}.json")
                if "json" in members
                else {}
            )
            caption = tar.extractfile(members["txt"]).read().decode(errors="replace") if "txt" in members else None
            extra, promoted = _metadata(meta, caption)
            for ext in images:
                name = members[ext].name
                yield Candidate(
                    source="folder",
                    source_id=f"{relative}/{name}",
                    url=f"tar://{name}::{tar_url}",
                    extra=extra,
                    **promoted,
                )


class TarReader:
    """Reads `tar://MEMBER::TAR_URL` URLs, keeping the member index of the last few tars.

    `fsspec.open` on such a URL re-reads every header of the tar (its tar filesystem is not cached),
    which makes reading a whole shard quadratic; this reads each tar's headers once. Not thread-safe:
    one reader per thread or task.
    """

    def __init__(self, max_open: int = 4) -> None:
        self.max_open = max_open
        self._open: OrderedDict[str, tuple[Any, dict[str, tarfile.TarInfo], tarfile.TarFile]] = OrderedDict()

    def read(self, url: str) -> bytes:
        """The bytes of one member. Raises ValueError for a URL not of that form, KeyError for a missing member."""
        if not url.startswith("tar://") or "::" not in url:
            raise ValueError(f"not a tar member URL: {url!r} (expected tar://MEMBER::TAR_URL)")
        member, tar_url = url[len("tar://") :].split("::", 1)
        if tar_url not in self._open:
            f = fsspec.open(tar_url, "rb").open()
            tar = tarfile.open(fileobj=f, mode="r:")  # noqa: SIM115 (kept open across reads, closed by close())
            self._open[tar_url] = (f, {m.name: m for m in tar if m.isfile()}, tar)
            while len(self._open) > self.max_open:
                self._close(self._open.popitem(last=False)[1])
        self._open.move_to_end(tar_url)
        f, index, tar = self._open[tar_url]
        if member not in index:
            raise KeyError(f"{tar_url} has no member {member!r}")
        info = index[member]
        f.seek(info.offset_data)
        return f.read(info.size)

    @staticmethod
    def _close(entry: tuple[Any, dict[str, tarfile.TarInfo], tarfile.TarFile]) -> None:
        entry[2].close()
        entry[0].close()

    def close(self) -> None:
        while self._open:
            self._close(self._open.popitem()[1])

    def __enter__(self) -> TarReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
