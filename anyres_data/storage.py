"""Output I/O on any fsspec filesystem: a file appears whole or not at all.

Every file the build writes goes to a temporary name under `OUT/_work/tmp/` first and is then moved
into place, so a reader (or a resumed build) never sees half a file, and the last file a task writes
can mark it complete. On local disks the move is an atomic rename; on object stores an upload only
becomes visible when complete.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import fsspec
import pandas as pd


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path without protocol) of a URL or local path; local paths become absolute."""
    return fsspec.core.url_to_fs(url)


def full_url(url: str) -> str:
    """A URL that names the same file from any process: local paths become absolute, others keep their protocol."""
    fs, path = filesystem(url)
    return path if _is_local(fs) else fs.unstrip_protocol(path)


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *parts])


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def size(url: str) -> int:
    """A file's size in bytes."""
    fs, path = filesystem(url)
    return int(fs.size(path))


def listdir(url: str, suffix: str = "") -> list[str]:
    """Sorted names (not paths) of the files directly in a folder that end with `suffix`; [] if no folder."""
    fs, path = filesystem(url)
    if not fs.exists(path):
        return []
    names = [entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False)]
    return sorted(name for name in names if name.endswith(suffix))


def remove(url: str, *, recursive: bool = False) -> None:
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)


@contextmanager
def atomic_open(url: str, tmp_dir: str) -> Iterator[IO[bytes]]:
    """Open `url` for binary writing; it appears (replacing any old file) only when the block ends well."""
    tmp = join(tmp_dir, f"{url.rstrip('/').rsplit('/', 1)[-1]}.{uuid.uuid4().hex}")
    fs, tmp_path = filesystem(tmp)
    fs.makedirs(tmp_path.rsplit("/", 1)[0], exist_ok=True)
    try:
        with fs.open(tmp_path, "wb") as f:
            yield f
        _, path = filesystem(url)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.mv(tmp_path, path)
    finally:
        if fs.exists(tmp_path):
            fs.rm(tmp_path)


def write_parquet(frame: pd.DataFrame, url: str, *, tmp_dir: str) -> None:
    with atomic_open(url, tmp_dir) as f:
        frame.to_parquet(f, index=False)


def read_parquet(url: str, columns: list[str] | None = None) -> pd.DataFrame:
    with fsspec.open(url, "rb") as f:
        return pd.read_parquet(f, columns=columns)


def write_json(data: Any, url: str, *, tmp_dir: str) -> None:
    with atomic_open(url, tmp_dir) as f:
        f.write((json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())


def read_json(url: str) -> Any:
    with fsspec.open(url, "r") as f:
        return json.load(f)
