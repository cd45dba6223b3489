"""The URL-list source: img2dataset-style lists (txt, csv, tsv, json, jsonl, parquet; gzip too) via fsspec.

`url_list` is one file, a glob, or a folder of such files, on any fsspec filesystem; files are read
in sorted order, in chunks (memory stays bounded however long the list), and each URL is proposed
once: a URL seen before (in any file) is skipped. A candidate's `source_id` is a hash of its URL, so
it does not change when the list is reordered or split. URLs are proposed as given: the build's
fetcher accepts only http(s) from this source and records others as `unsupported_scheme`.

Options follow img2dataset's names (`url_col`, `caption_col`, `save_additional_columns`,
`input_format`); `license_col`, `width_col` and `height_col` name columns the build can filter on
before downloading (e.g. LAION's LICENSE, WIDTH, HEIGHT).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal

import fsspec
import pandas as pd
import pyarrow.parquet as pq

from anyres_data.candidate import Candidate
from anyres_data.settings import setting
from anyres_data.sources.columns import extra_name, jsonable

log = logging.getLogger(__name__)

INPUT_FORMATS = ("txt", "txt.gz", "csv", "csv.gz", "tsv", "tsv.gz", "json", "json.gz", "jsonl", "jsonl.gz", "parquet")
CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class UrlListSettings:
    """Where the URL list is and which of its columns mean what (img2dataset's option names)."""

    url_list: str | None = setting(None, "URL list: a file, a glob or a folder of files, any fsspec URL")
    input_format: Literal[INPUT_FORMATS] | None = setting(
        None, f"format of the list files, one of {', '.join(INPUT_FORMATS)} (default: from each file's name)"
    )
    url_col: str = setting("url", "column holding the URL (csv, tsv, json, jsonl, parquet)")
    caption_col: str | None = setting(None, "column holding a caption, kept in the metadata as 'caption'")
    save_additional_columns: tuple[str, ...] = setting((), "comma-separated columns kept in the metadata")
    license_col: str | None = setting(None, "column holding each image's license (for --license filtering)")
    width_col: str | None = setting(None, "column holding each image's width, for size filtering before download")
    height_col: str | None = setting(None, "column holding each image's height, for size filtering before download")


def url_source_id(url: str) -> str:
    """Stable id of a URL: 20 hex digits of its SHA-256."""
    return hashlib.sha256(url.encode()).hexdigest()[:20]


def file_format(name: str, given: str | None = None) -> str:
    """The input format of a list file: `given`, else from the file name. Raises ValueError if unknown."""
    if given is not None:
        return given
    lower = name.lower()
    for fmt in sorted(INPUT_FORMATS, key=len, reverse=True):
        if lower.endswith("." + fmt):
            return fmt
    raise ValueError(
        f"cannot tell the format of {name!r} from its name; give --input-format ({', '.join(INPUT_FORMATS)})"
    )


def list_files(url_list: str, input_format: str | None = None) -> list[str]:
    """The list files `url_list` names, sorted, as fsspec URLs. Raises ValueError when there are none."""
    fs, path = fsspec.core.url_to_fs(url_list)
    if any(c in path for c in "*?["):
        paths = sorted(fs.glob(path))
    elif fs.isdir(path):
        suffixes = ("." + input_format,) if input_format else tuple("." + f for f in INPUT_FORMATS)
        paths = sorted(p for p in fs.find(path) if p.lower().endswith(suffixes))
    elif fs.exists(path):
        paths = [path]
    else:
        raise ValueError(f"--url-list {url_list!r}: no such file or folder")
    if not paths:
        raise ValueError(f"--url-list {url_list!r}: no URL list files found there")
    return [fs.unstrip_protocol(p) for p in paths]


def _chunks(url: str, fmt: str, columns: list[str]) -> Iterator[pd.DataFrame]:
    """DataFrames of at most CHUNK_ROWS rows from one list file."""
    compression = "gzip" if fmt.endswith(".gz") else None
    base = fmt.removesuffix(".gz")
    with fsspec.open(url, "rb", compression=compression) as f:
        if base == "txt":
            yield from _txt_chunks(f)
        elif base in ("csv", "tsv"):
            sep = "," if base == "csv" else "\t"
            yield from pd.read_csv(f, sep=sep, chunksize=CHUNK_ROWS)
        elif base == "jsonl":
            yield from pd.read_json(f, lines=True, chunksize=CHUNK_ROWS, dtype=False, precise_float=True)
        elif base == "json":
            yield pd.read_json(f, dtype=False, precise_float=True)
        else:
            assert base == "parquet", base
            parquet = pq.ParquetFile(f)
            missing = [c for c in columns if c not in parquet.schema_arrow.names]
            if missing:
                _missing_columns(url, missing, parquet.schema_arrow.names)
            for batch in parquet.iter_batches(batch_size=CHUNK_ROWS, columns=columns):
                yield batch.to_pandas()


def _txt_chunks(f: IO[bytes]) -> Iterator[pd.DataFrame]:
    lines: list[str] = []
    for line in io.TextIOWrapper(f, encoding="utf-8"):
        lines.append(line.strip())
        if len(lines) == CHUNK_ROWS:
            yield pd.DataFrame({"url": lines})
            lines = []
    if lines:
        yield pd.DataFrame({"url": lines})


def _missing_columns(url: str, missing: list[str], have: list[str]) -> None:
    raise ValueError(f"{url}: no column(s) {', '.join(map(repr, missing))}; its columns are {', '.join(have)}")


def _size(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number > 0 else None


def _text(value: Any) -> str | None:
    value = jsonable(value)
    return None if value is None or value == "" else str(value)


def iter_url_list(settings: UrlListSettings) -> Iterator[Candidate]:
    """A candidate per distinct URL of the list files, in file and row order.

    Rows without a URL are skipped (counted in a warning). Raises ValueError at once when --url-list
    is not given or names nothing or a file's format is unknown, and while iterating when a named
    column is missing.
    """
    if not settings.url_list:
        raise ValueError("--source urls needs --url-list FILE|GLOB|FOLDER")
    files = list_files(settings.url_list, settings.input_format)
    formats = [file_format(f, settings.input_format) for f in files]
    return _url_candidates(settings, files, formats)


def _url_candidates(settings: UrlListSettings, files: list[str], formats: list[str]) -> Iterator[Candidate]:
    wanted = {
        "caption": settings.caption_col,
        "license": settings.license_col,
        "width": settings.width_col,
        "height": settings.height_col,
    }
    extras = list(settings.save_additional_columns)
    seen: set[str] = set()
    empty = repeated = 0
    for url_file, fmt in zip(files, formats, strict=True):
        url_col = "url" if fmt.startswith("txt") else settings.url_col
        columns = list(dict.fromkeys([url_col, *(c for c in wanted.values() if c), *extras]))
        if fmt.startswith("txt") and columns != ["url"]:
            raise ValueError(f"{url_file}: a txt list has URLs only; caption, size and extra columns need csv/parquet")
        for chunk in _chunks(url_file, fmt, columns):
            missing = [c for c in columns if c not in chunk.columns]
            if missing:
                _missing_columns(url_file, missing, list(chunk.columns))
            records = chunk[columns].to_dict("records")
            for row in records:
                url = _text(row[url_col])
                url = url.strip() if url else None
                if not url:
                    empty += 1
                    continue
                source_id = url_source_id(url)
                if source_id in seen:
                    repeated += 1
                    continue
                seen.add(source_id)
                extra = {extra_name(c): jsonable(row[c]) for c in extras}
                if settings.caption_col:
                    extra["caption"] = _text(row[settings.caption_col])
                yield Candidate(
                    source="urls",
                    source_id=source_id,
                    url=url,
                    width=_size(row[settings.width_col]) if settings.width_col else None,
                    height=_size(row[settings.height_col]) if settings.height_col else None,
                    license=_text(row[settings.license_col]) if settings.license_col else None,
                    extra=extra,
                )
    if empty or repeated:
        log.warning("URL list: skipped %d rows without a URL and %d repeated URLs", empty, repeated)
