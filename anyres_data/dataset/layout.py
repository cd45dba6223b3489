"""A built dataset on disk (docs/design.md, "Dataset on disk"): where its files are, their columns, reading it back.

```
OUT/
  shards/NAME-000000.tar   KEY.EXT (original bytes) + KEY.json (metadata) [+ KEY.txt (caption)] per sample
  manifest.parquet         one row per kept image (MANIFEST_COLUMNS)
  rejects.parquet          one row per rejected candidate (REJECT_COLUMNS)
  wids.json                the shard list (URL, sample count) of webdataset's indexed reader, wids
  dataset.json             settings, counts by reason, versions, timing; written last
  _work/                   build state for --resume: candidate partitions, per-shard records
```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from anyres_data import storage

# Column -> pandas dtype. Nullable dtypes, so a missing value stays missing in every shard's table.
MANIFEST_COLUMNS: dict[str, str] = {
    "key": "string",
    "shard": "string",  # shard file name, relative to OUT/shards/
    "url": "string",
    "width": "Int64",  # as displayed (after EXIF orientation)
    "height": "Int64",
    "original_width": "Int64",  # img2dataset's name for the size before any resize (ours or the source's)
    "original_height": "Int64",
    "sha256": "string",  # of the stored bytes
    "source": "string",
    "source_id": "string",
    "license": "string",
    "owner": "string",
    "title": "string",
    "format": "string",  # extension of the sniffed format (jpg, png, webp, tif, gif, heic, avif, ...)
    "orientation": "Int64",  # EXIF orientation 1..8
    "stored_width": "Int64",  # as stored, before orientation
    "stored_height": "Int64",
    "bytes": "Int64",
    "phash": "string",  # 64-bit DCT perceptual hash, 16 hex digits
    "crawled_at": "string",  # ISO 8601, UTC
    "bands": "Int64",
    "interpretation": "string",  # libvips: srgb, cmyk, b-w, grey16, rgb16, ...
    "bit_depth": "Int64",
    "n_pages": "Int64",
    "interlaced": "boolean",
    "caption": "string",  # the source's caption, also the sample's KEY.txt member (missing: none)
    "extra": "string",  # JSON object of the source's own columns (top-level fields in KEY.json)
}
REJECT_COLUMNS: dict[str, str] = {
    "key": "string",
    "source": "string",
    "source_id": "string",
    "url": "string",
    "reason": "string",  # see anyres_data.rejects.REASONS
    "message": "string",
    "shard": "string",  # the shard a duplicate was removed from
    "duplicate_of": "string",  # key of the kept image a duplicate matches
}
FORMAT = "anyres-dataset/1"


def shard_name(name: str, index: int) -> str:
    return f"{name}-{index:06d}.tar"


@dataclass(frozen=True)
class Layout:
    """Paths of a dataset's files under `out` (any fsspec URL, local paths made absolute)."""

    out: str

    @classmethod
    def at(cls, out: str) -> Layout:
        return cls(storage.full_url(out).rstrip("/"))

    def shard(self, name: str) -> str:
        return storage.join(self.out, "shards", name)

    @property
    def shards(self) -> str:
        return storage.join(self.out, "shards")

    @property
    def manifest(self) -> str:
        return storage.join(self.out, "manifest.parquet")

    @property
    def rejects(self) -> str:
        return storage.join(self.out, "rejects.parquet")

    @property
    def dataset_json(self) -> str:
        return storage.join(self.out, "dataset.json")

    @property
    def wids_json(self) -> str:
        """The shard list of webdataset's indexed reader (`wids.ShardListDataset(OUT/wids.json)`)."""
        return storage.join(self.out, "wids.json")

    @property
    def work(self) -> str:
        return storage.join(self.out, "_work")

    @property
    def tmp(self) -> str:
        return storage.join(self.work, "tmp")

    @property
    def build_json(self) -> str:
        """Settings the build started with; a resumed build must match them."""
        return storage.join(self.work, "build.json")

    @property
    def settings_yaml(self) -> str:
        """The same settings as a --config file: `anyres-data build --config OUT/_work/settings.yaml --resume`."""
        return storage.join(self.work, "settings.yaml")

    @property
    def plan_json(self) -> str:
        """Written when every candidate of the source is in a partition."""
        return storage.join(self.work, "plan.json")

    @property
    def partitions(self) -> str:
        return storage.join(self.work, "candidates")

    def partition(self, index: int) -> str:
        return storage.join(self.partitions, f"{index:06d}.parquet")

    @property
    def records(self) -> str:
        return storage.join(self.work, "records")

    def record(self, index: int) -> str:
        """One row per candidate of shard `index`; written last, it marks the shard complete."""
        return storage.join(self.records, f"{index:06d}.parquet")

    @property
    def drops(self) -> str:
        """Images finalize removes from their shards as duplicates; written before they are removed."""
        return storage.join(self.work, "drops.parquet")


def typed(rows: list[dict[str, Any]] | pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """A table with exactly `columns`, in order, with their dtypes (missing columns become empty)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    for name in columns:
        if name not in frame:
            frame[name] = None
    return frame[list(columns)].astype(columns)


@dataclass(frozen=True)
class DatasetInfo:
    """dataset.json of a finished build."""

    out: str
    data: dict[str, Any]

    @property
    def shards(self) -> list[str]:
        """URLs of the shards, in order."""
        layout = Layout.at(self.out)
        return [layout.shard(name) for name in self.data["shards"]]

    @property
    def counts(self) -> dict[str, Any]:
        return self.data["counts"]


def load_info(out: str) -> DatasetInfo:
    """Read OUT/dataset.json. Raises ValueError when OUT is not a finished build."""
    layout = Layout.at(out)
    if not storage.exists(layout.dataset_json):
        hint = " (an unfinished build: rerun it with --resume)" if storage.exists(layout.work) else ""
        raise ValueError(f"{out} has no dataset.json: not a dataset built by anyres-data build{hint}")
    data = storage.read_json(layout.dataset_json)
    if data.get("format") != FORMAT:
        raise ValueError(f"{layout.dataset_json}: format {data.get('format')!r}, expected {FORMAT!r}")
    return DatasetInfo(out=layout.out, data=data)


def read_manifest(out: str) -> pd.DataFrame:
    """The manifest of a finished build: one row per kept image, in shard order (MANIFEST_COLUMNS)."""
    load_info(out)
    return storage.read_parquet(Layout.at(out).manifest)


def read_rejects(out: str) -> pd.DataFrame:
    load_info(out)
    return storage.read_parquet(Layout.at(out).rejects)


def extra_fields(row: pd.Series | dict[str, Any]) -> dict[str, Any]:
    """The source's own columns of a manifest row (its `extra` JSON)."""
    text = row["extra"]
    return {} if text is None or pd.isna(text) else json.loads(text)
