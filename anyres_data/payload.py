"""Fetched bytes that may live on disk: small files in memory, large ones in a temporary file.

A shard task holds up to 2 x threads images at once (downloads in progress and samples waiting for
their turn in the tar). Kept in memory, a few files of hundreds of megabytes — or gzip bombs, which
inflate to --fetch-max-bytes from a few kilobytes on the wire — would cost gigabytes. So a `Spool`
keeps the first `limit` bytes in memory and streams the rest to a temporary file; libvips then
reads the file itself (`vips_source`), the hash is computed in chunks and the tar member is copied
from the file, so such an image is never held whole in memory.

`Data` is what the build's stages pass along: `bytes`, or a `SpilledFile`.
"""

from __future__ import annotations

import hashlib
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyvips
from pyvips import ffi, vips_lib

CHUNK = 1 << 20


@dataclass(frozen=True)
class SpilledFile:
    """Image bytes in a temporary file (deleted by `discard`, or with the task's temporary folder)."""

    path: str
    size: int

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            while chunk := f.read(size):
                yield chunk


Data = bytes | SpilledFile


def size_of(data: Data) -> int:
    return data.size if isinstance(data, SpilledFile) else len(data)


def head(data: Data, n: int) -> bytes:
    """The first `n` bytes (fewer if the data is shorter)."""
    if isinstance(data, SpilledFile):
        with open(data.path, "rb") as f:
            return f.read(n)
    return data[:n]


def tail(data: Data, n: int) -> bytes:
    """The last `n` bytes (fewer if the data is shorter)."""
    if isinstance(data, SpilledFile):
        with open(data.path, "rb") as f:
            f.seek(max(0, data.size - n))
            return f.read()
    return data[-n:]


def sha256_hex(data: Data) -> str:
    if isinstance(data, SpilledFile):
        digest = hashlib.sha256()
        for chunk in data.chunks():
            digest.update(chunk)
        return digest.hexdigest()
    return hashlib.sha256(data).hexdigest()


def to_bytes(data: Data) -> bytes:
    """The bytes in memory (reads a spilled file whole: for callers that need bytes, such as `fetch`)."""
    if isinstance(data, SpilledFile):
        with open(data.path, "rb") as f:
            return f.read()
    return data


def discard(data: Data | None) -> None:
    """Delete a spilled file now (a no-op for bytes), so that disk use stays bounded too."""
    if isinstance(data, SpilledFile):
        Path(data.path).unlink(missing_ok=True)


def spill(data: Data, directory: str) -> SpilledFile:
    """The data in a file of `directory` (bytes are written out; a spilled file stays where it is)."""
    if isinstance(data, SpilledFile):
        return data
    with tempfile.NamedTemporaryFile(dir=directory, prefix="held-", delete=False) as f:
        f.write(data)
    return SpilledFile(f.name, len(data))


def _file_source(path: str) -> pyvips.Source:
    """A libvips source that reads the file in chunks, through Python.

    libvips maps a plain file source into memory, and sniffing or reading a damaged file can then
    touch every page: 256 MiB of zeros after a JPEG marker cost 256 MiB of resident memory per
    file. A custom source cannot be mapped; libvips reads what it needs, chunk by chunk.
    """
    f = open(path, "rb")  # noqa: SIM115 (closed when the source is collected)
    source = pyvips.SourceCustom()
    source.on_read(f.read)
    source.on_seek(f.seek)  # io.seek returns the new position, as libvips wants
    weakref.finalize(source, f.close)
    return source


def vips_image(data: Data, **options: object) -> pyvips.Image:
    """A libvips image of the data (lazy: only the header is read until pixels are asked for)."""
    if isinstance(data, SpilledFile):
        return pyvips.Image.new_from_source(_file_source(data.path), "", **options)  # the image keeps the source
    return pyvips.Image.new_from_buffer(data, "", **options)


def vips_thumbnail(data: Data, width: int, *, option_string: str = "", **options: object) -> pyvips.Image:
    """libvips' `thumbnail` (shrink-on-load, then Lanczos) of the data, from memory or from the file."""
    if isinstance(data, SpilledFile):
        source = _file_source(data.path)
        image = pyvips.Image.thumbnail_source(source, width, option_string=option_string, **options)
        image._references.append(source)  # pixels are read lazily: the source must live as long as the image
        return image
    return pyvips.Image.thumbnail_buffer(data, width, option_string=option_string, **options)


def recognised(data: Data) -> bool:
    """Whether some libvips loader recognises the data's format (sniffed from its first bytes).

    Asks libvips directly rather than reading an error: its error buffer is shared by all threads.
    """
    if isinstance(data, SpilledFile):
        source = _file_source(data.path)  # held while libvips calls back into it
        return vips_lib.vips_foreign_find_load_source(source.pointer) != ffi.NULL
    return vips_lib.vips_foreign_find_load_buffer(data, len(data)) != ffi.NULL


class Spool:
    """Collects a download: in memory up to `limit` bytes, then in a temporary file in `directory`.

    `directory` None keeps everything in memory (what `fetch` returns to a caller that wants bytes).
    Use as a context manager: leaving it with an exception deletes the file.
    """

    def __init__(self, *, limit: int, directory: str | None) -> None:
        self.limit = limit
        self.directory = directory
        self.size = 0
        self._memory = bytearray()
        self._file = None

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._file is None and (self.directory is None or len(self._memory) + len(chunk) <= self.limit):
            self._memory += chunk
            return
        if self._file is None:
            self._file = tempfile.NamedTemporaryFile(dir=self.directory, prefix="fetch-", delete=False)  # noqa: SIM115
            self._file.write(self._memory)
            self._memory = bytearray()
        self._file.write(chunk)

    def head(self, n: int) -> bytes:
        """The first `n` bytes written so far."""
        if self._file is None:
            return bytes(self._memory[:n])
        self._file.flush()
        with open(self._file.name, "rb") as f:
            return f.read(n)

    def result(self) -> Data:
        """The collected bytes, or the file that holds them (closed, owned by the caller now)."""
        if self._file is None:
            return bytes(self._memory)
        self._file.close()
        spilled, self._file = SpilledFile(self._file.name, self.size), None
        return spilled

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            discard(SpilledFile(self._file.name, self.size))
            self._file = None
