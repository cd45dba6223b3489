"""Synthetic manifests in the build's layout (every MANIFEST_COLUMNS column), for the stats tests and benchmark.

Sizes follow a photo-like mix: shorter sides log-normal around ~1,100 px (a tail down to 64 and up to
~9,000), aspect ratios 1 to 2, 30% portrait; formats, licenses and text columns like a Flickr build's.
Writing OUT/manifest.parquet and OUT/dataset.json is enough for `anyres_data.stats.compute`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from anyres_data.dataset.layout import FORMAT, MANIFEST_COLUMNS, typed

FORMATS = np.array(["jpg", "png", "webp", "heic"])
LICENSES = np.array(["4", "5", "9", "10"])


def synthetic_manifest(n: int, *, seed: int = 0, shard_size: int = 1000) -> pd.DataFrame:
    """A manifest of n images with random sizes, formats and licenses (MANIFEST_COLUMNS, typed)."""
    rng = np.random.default_rng(seed)
    short = np.clip(np.exp(rng.normal(np.log(1100), 0.6, n)), 64, 9000).astype(np.int64)
    long = (short * rng.uniform(1.0, 2.0, n)).astype(np.int64)
    portrait = rng.random(n) < 0.3
    width, height = np.where(portrait, short, long), np.where(portrait, long, short)
    ids = np.arange(n).astype(str)
    frame = pd.DataFrame(
        {
            "key": np.char.add("flickr-", ids),
            "shard": np.char.mod("x-%06d.tar", np.arange(n) // shard_size),
            "url": np.char.add(np.char.add("https://live.example.org/photos/", ids), "_o.jpg"),
            "width": width,
            "height": height,
            "original_width": width,
            "original_height": height,
            "sha256": np.frombuffer(rng.bytes(32 * n).hex().encode(), dtype="S64").astype(str),
            "source": "flickr",
            "source_id": ids,
            "license": LICENSES[rng.integers(0, len(LICENSES), n)],
            "owner": "someone",
            "title": np.char.add("a photo of a church ", ids),
            "format": FORMATS[rng.choice(len(FORMATS), n, p=[0.85, 0.1, 0.04, 0.01])],
            "orientation": 1,
            "stored_width": width,
            "stored_height": height,
            "bytes": (width * height * rng.uniform(0.2, 0.6, n)).astype(np.int64),
            "phash": "0123456789abcdef",
            "crawled_at": "2026-01-01T00:00:00+00:00",
            "bands": 3,
            "interpretation": "srgb",
            "bit_depth": 8,
            "n_pages": 1,
            "interlaced": False,
            "extra": "{}",
        }
    )
    return typed(frame, MANIFEST_COLUMNS)


def write_manifest_dataset(
    out: Path, manifest: pd.DataFrame, *, name: str, rejected: dict[str, int] | None = None
) -> Path:
    """OUT/manifest.parquet and OUT/dataset.json (counts only) for `manifest`; no shards. Returns `out`."""
    out.mkdir(parents=True, exist_ok=True)
    manifest.to_parquet(out / "manifest.parquet", index=False)
    rejected = rejected or {}
    counts = {"candidates": len(manifest) + sum(rejected.values()), "kept": len(manifest), "rejected": rejected}
    info = {"format": FORMAT, "name": name, "counts": counts, "shards": sorted(set(manifest["shard"]))}
    (out / "dataset.json").write_text(json.dumps(info))
    return out
