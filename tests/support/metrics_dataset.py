"""A tiny any-resolution dataset on disk in the docs/design.md layout, for the metrics tests.

OUT/shards/NAME-00000k.tar with KEY.jpg (real JPEG bytes) + KEY.json, and OUT/manifest.parquet
with key, width, height. Images are `structured_image`s (content at every scale) of mixed sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import webdataset as wds

from tests.support.photos import encode, structured_image


def write_dataset(out: Path, sizes: list[tuple[int, int]], *, per_shard: int = 4, seed: int = 0) -> Path:
    """Write images of the given (width, height) sizes; returns `out`."""
    (out / "shards").mkdir(parents=True, exist_ok=True)
    rows = []
    for start in range(0, len(sizes), per_shard):
        with wds.TarWriter(str(out / "shards" / f"test-{start // per_shard:06d}.tar")) as sink:
            for i in range(start, min(start + per_shard, len(sizes))):
                width, height = sizes[i]
                key = f"img_{i:04d}"
                data = encode(structured_image(width, height, seed=seed * 1000 + i), "JPEG", quality=92)
                meta = {"key": key, "width": width, "height": height, "format": "jpeg", "bytes": len(data)}
                sink.write({"__key__": key, "jpg": data, "json": json.dumps(meta).encode()})
                rows.append(meta)
    pd.DataFrame(rows).to_parquet(out / "manifest.parquet", index=False)
    return out
