"""The folder source: images under a folder (any fsspec location), including img2dataset's output.

Every file whose extension is an image extension is a candidate, found recursively and proposed in
sorted path order; its `source_id` is its path relative to the folder. Two layouts of img2dataset
output are understood:

- "files": `00000/000000001.jpg` beside `000000001.json` (url, caption, size, saved columns) and
  `000000001.txt` (caption). The JSON's `url` becomes the candidate's `original_url` (the sample's
  `url`; the file it is read from is kept as `read_from`), its `original_width`/`original_height`
  the size before img2dataset resized it (so the sample says `resized`), its `width`/`height` are
  measured again, its `license`/`owner`/`title` go into the candidate's own fields and the rest
  into `extra` (names the build writes itself get a `source_` prefix, see `columns.py`).
- "webdataset": `.tar` shards whose members `KEY.jpg` + `KEY.json` (+ `KEY.txt`) form a sample.
  A member's URL is the fsspec URL `tar://MEMBER::TAR_URL`; `TarReader` reads such URLs indexing
  each tar once (plain `fsspec.open` re-indexes the whole tar for every member).

Candidates carry fsspec URLs (`file:///...`, `s3://...`, `tar://...::...`): the build's fetcher reads
them because the source is local. Names come from a listing, so they are opened as names, never
parsed as URL chains (`a::b.jpg` is a file name; see `open_file` and `split_tar_url`). Only regular
files are read: a named pipe with an image's name is a `read_error` candidate (opening it would wait
forever for a writer), as is a `.tar` that does not read — after the members read before the damage.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import stat
import tarfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem

from anyres_data.candidate import Candidate
from anyres_data.settings import setting
from anyres_data.sources.columns import extra_name, jsonable

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp", "gif", "avif", "heic", "heif", "jxl", "jp2")
# img2dataset bookkeeping and the size of the copy: re-derived by the build
_DROPPED = frozenset({"status", "error_message", "exif", "width", "height"})
_PROMOTED = ("license", "owner", "title")
CHUNK = 1 << 20
_TAR_URL = re.compile(r"::(?=[A-Za-z][A-Za-z0-9+.-]*://)")  # where TAR_URL (a URL with a protocol) begins


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


def _metadata(meta: dict[str, Any], caption: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(extra, the candidate's own fields) from an img2dataset-style JSON record and caption text."""
    extra: dict[str, Any] = {}
    promoted: dict[str, Any] = {}
    for name, value in meta.items():
        if name in _DROPPED:
            continue
        if name in _PROMOTED:
            promoted[name] = None if value in (None, "") else str(value)
        elif name == "url" and isinstance(value, str) and value:
            promoted["original_url"] = value
        elif name in ("original_width", "original_height") and _is_side(value):
            promoted[name] = int(value)
        else:
            extra[extra_name(name)] = jsonable(value)
    if "original_width" not in promoted or "original_height" not in promoted:  # half a size is no size
        promoted.pop("original_width", None)
        promoted.pop("original_height", None)
    if caption is not None and "caption" not in extra:
        extra["caption"] = caption
    return extra, promoted


def _is_side(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 1 and float(value).is_integer()


def _json_record(data: bytes, where: str) -> dict[str, Any]:
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
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
        root, entries = posixpath.dirname(root), {root: fs.info(root)}
    else:
        entries = fs.find(root, detail=True)
    paths = sorted(entries)
    odd = {path: kind for path in paths if (kind := _not_a_file(fs, path, entries[path]))}
    present = set(paths) - set(odd)  # regular files (or links to them) only
    for path in paths:
        relative = posixpath.relpath(path, root) if root else path
        stem, ext = _split_ext(path)
        wanted = ext in extensions or (ext == "tar" and settings.folder_tars)
        if wanted and path in odd:
            message = f"{relative}: not a regular file ({odd[path]})"
            yield Candidate("folder", relative, fs.unstrip_protocol(path), error=("read_error", message))
        elif ext in extensions:
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
    """Candidates for the images in one tar, in member order; sidecars of the same key give metadata.

    A tar that does not read (not a tar, cut short) gives the candidates of the members read before
    the damage, then one read_error candidate named after the tar itself.
    """
    tar_url = fs.unstrip_protocol(path)
    candidates: list[Candidate] = []
    try:
        with open_file(tar_url) as f, tarfile.open(fileobj=f, mode="r:") as tar:
            samples, damage = _tar_index(tar)
            for key, members in samples.items():
                images = [ext for ext in members if ext in extensions]
                if not images:
                    continue
                record = _sidecar(tar, members.get("json"))
                meta = {} if record is None else _json_record(record, f"{tar_url}:{key}.json")
                caption = _sidecar(tar, members.get("txt"))
                extra, promoted = _metadata(meta, None if caption is None else caption.decode(errors="replace"))
                for ext in images:
                    name = members[ext].name
                    url = f"tar://{name}::{tar_url}"
                    candidates.append(Candidate("folder", f"{relative}/{name}", url, extra=extra, **promoted))
    except (OSError, tarfile.TarError) as err:
        damage = err
    yield from candidates
    if damage is not None:
        message = f"{relative}: {type(damage).__name__}: {damage} (members read before it are candidates)"
        yield Candidate("folder", relative, tar_url, error=("read_error", message))


def _tar_index(tar: tarfile.TarFile) -> tuple[OrderedDict[str, dict[str, tarfile.TarInfo]], Exception | None]:
    """{key: {ext: member}} of a tar's regular files, in order, and the error that ended reading early, if any."""
    samples: OrderedDict[str, dict[str, tarfile.TarInfo]] = OrderedDict()
    members, damage = _tar_members(tar)
    for member in members:
        key, ext = _split_key(member.name)
        samples.setdefault(key, {})[ext] = member
    return samples, damage


def _tar_members(tar: tarfile.TarFile) -> tuple[list[tarfile.TarInfo], Exception | None]:
    """A tar's regular files, in order, and the error that ended reading early (damaged or cut short), if any."""
    members = []
    try:
        for member in tar:  # headers only: member data is skipped by seeking
            if member.isfile():
                members.append(member)
    except (OSError, tarfile.TarError) as err:
        return members, err
    return members, None


def _sidecar(tar: tarfile.TarFile, member: tarfile.TarInfo | None) -> bytes | None:
    """A sidecar member's bytes; None when absent or unreadable (a cut-off tar)."""
    if member is None:
        return None
    try:
        return tar.extractfile(member).read()
    except (OSError, tarfile.TarError) as err:
        log.warning("%s: unreadable sidecar ignored (%s)", member.name, err)
        return None


def open_file(url: str) -> IO[bytes]:
    """Open a path, or a URL of one fsspec filesystem, for reading; never parsed as a URL chain.

    `fsspec.open("x/a::b.jpg")` would read `b.jpg` through a filesystem named `x/a`; here it is the
    file `x/a::b.jpg`. Local files are opened without blocking and only if regular: a named pipe
    would wait for a writer forever. Raises OSError (not found, not a regular file, ...) or
    ValueError (an unknown protocol).
    """
    protocol = urlsplit(url).scheme.lower() if "://" in url else "file"
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ImportError as err:
        raise ValueError(f"{protocol}:// needs a package that is not installed ({err})") from None
    fs = cls(**cls._get_kwargs_from_urls(url))
    path = cls._strip_protocol(url)
    if not isinstance(fs, LocalFileSystem):
        return fs.open(path, "rb")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file ({_file_kind(mode)})")
    return os.fdopen(fd, "rb")


def _not_a_file(fs: fsspec.AbstractFileSystem, path: str, info: dict[str, Any]) -> str | None:
    """What a listed entry is when it is not a regular file ('a named pipe', 'a broken link', ...), else None.

    Links are followed: a link to a photo is a photo (and a link to anything else is read, then rejected).
    """
    if info.get("type") == "file":
        return None
    if not isinstance(fs, LocalFileSystem):
        return str(info.get("type", "not a file"))
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a broken link"
    return None if stat.S_ISREG(mode) else _file_kind(mode)


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")]
    kinds += [(stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]
    return next((name for is_kind, name in kinds if is_kind(mode)), "not a file")


def split_tar_url(url: str) -> tuple[str, str]:
    """(MEMBER, TAR_URL) of `tar://MEMBER::TAR_URL`. Raises ValueError for a URL not of that form.

    A member name may itself hold '::' (even `x::/etc/passwd`): TAR_URL comes last and begins with a
    protocol (the folder source writes `file:///...`, `s3://...`), so the split is at the last '::'
    followed by one — or, for a bare path, at the last '::'. A member name can never move the split.
    """
    rest = url[len("tar://") :] if url.startswith("tar://") else ""
    splits = list(_TAR_URL.finditer(rest))
    at = splits[-1].start() if splits else rest.rfind("::")
    if at <= 0:
        raise ValueError(f"not a tar member URL: {url!r} (expected tar://MEMBER::TAR_URL)")
    return rest[:at], rest[at + 2 :]


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
        """The bytes of one member. Raises ValueError for a URL not of that form, KeyError for a missing member,
        OSError or tarfile.TarError when the tar does not read (or the member is cut short)."""
        return b"".join(self.chunks(url))

    def member_size(self, url: str) -> int:
        """The size of one member in bytes (from its header). Raises as `read`."""
        return self._member(url)[1].size

    def chunks(self, url: str, size: int = CHUNK) -> Iterator[bytes]:
        """One member's bytes in chunks of at most `size`. Raises as `read`."""
        f, info = self._member(url)
        left = info.size
        f.seek(info.offset_data)
        while left:
            chunk = f.read(min(size, left))
            if not chunk:
                raise OSError(f"member {info.name!r} is cut short: {info.size - left} of {info.size} bytes")
            left -= len(chunk)
            yield chunk

    def _member(self, url: str) -> tuple[Any, tarfile.TarInfo]:
        member, tar_url = split_tar_url(url)
        if tar_url not in self._open:
            f = open_file(tar_url)
            try:
                tar = tarfile.open(fileobj=f, mode="r:")  # noqa: SIM115 (kept open across reads, closed by close())
            except BaseException:
                f.close()
                raise
            members, _ = _tar_members(tar)  # a cut-off tar: the members before the cut still read
            self._open[tar_url] = (f, {m.name: m for m in members}, tar)
            while len(self._open) > self.max_open:
                self._close(self._open.popitem(last=False)[1])
        self._open.move_to_end(tar_url)
        f, index, _ = self._open[tar_url]
        if member not in index:
            raise KeyError(f"{tar_url} has no member {member!r}")
        return f, index[member]

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
