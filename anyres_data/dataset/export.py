"""Export a built dataset for other tools: Parquet files that Hugging Face `datasets` loads as is.

`load_dataset("webdataset", ...)` wants one member type per dataset (a crawl mixes JPEG, PNG and
WebP in one shard) and gives the metadata as one nested `json` column. The export writes one
Parquet file per shard, `DEST/data/train-00000-of-00006.parquet`, whose `image` column holds each
image's original bytes (declared as HF's `Image` feature in the files' schema metadata, which
decodes any format Pillow reads) beside the manifest's columns, one column each. Then
`load_dataset("parquet", data_dir=DEST)` (or `load_dataset(DEST)`) loads it, and `push_to_hub`
publishes it. Nothing is re-encoded: an image's bytes still match the manifest's `sha256`.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from anyres_data import storage
from anyres_data.dataset.layout import MANIFEST_COLUMNS, Layout, read_manifest
from anyres_data.dataset.shards import read_shard

ROWS_PER_GROUP = 100  # images per Parquet row group: what a reader holds at once (HF's default for images)
_ARROW = {"string": pa.string(), "Int64": pa.int64(), "boolean": pa.bool_()}
_HF_DTYPE = {"string": "string", "Int64": "int64", "boolean": "bool"}


def schema() -> pa.Schema:
    """`image` (struct of the original bytes and a file name, HF's `Image`) then the manifest's columns.

    The `huggingface` schema metadata names the features, so `datasets` decodes `image` as an image.
    """
    fields = [pa.field("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))]
    fields += [pa.field(name, _ARROW[dtype]) for name, dtype in MANIFEST_COLUMNS.items()]
    features = {"image": {"_type": "Image"}}
    features |= {name: {"dtype": _HF_DTYPE[dtype], "_type": "Value"} for name, dtype in MANIFEST_COLUMNS.items()}
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": features}})})


def export_parquet(out: str, dest: str, *, progress: bool = True) -> list[str]:
    """Write the dataset in `out` as Parquet files under `dest` (any fsspec URL); return their URLs.

    Raises ValueError when `out` is not a finished build or a shard disagrees with the manifest
    (`anyres-data verify OUT` says more).
    """
    manifest = read_manifest(out)
    layout = Layout.at(out)
    target = storage.full_url(dest).rstrip("/")
    tmp = storage.join(target, "_tmp")
    shards = sorted(manifest["shard"].unique())
    written = []
    for i, shard in enumerate(tqdm(shards, desc="exporting", unit="shard", disable=not progress)):
        rows = manifest[manifest["shard"] == shard]
        images = {}
        for sample in read_shard(layout.shard(shard)):
            images[sample["__key__"]] = sample
        missing = sorted(set(rows["key"]) - set(images))
        if missing:
            raise ValueError(f"{shard} lacks {len(missing)} samples of the manifest (e.g. {missing[0]}): see verify")
        columns = {
            "image": [
                {"bytes": images[key][fmt], "path": f"{key}.{fmt}"}
                for key, fmt in zip(rows["key"], rows["format"], strict=True)
            ]
        }
        for name in MANIFEST_COLUMNS:
            columns[name] = rows[name].astype(object).where(rows[name].notna(), None).tolist()
        table = pa.Table.from_pydict(columns, schema=schema())
        url = storage.join(target, "data", f"train-{i:05d}-of-{len(shards):05d}.parquet")
        with storage.atomic_open(url, tmp) as f:
            pq.write_table(table, f, row_group_size=ROWS_PER_GROUP)
        written.append(url)
    storage.remove(tmp, recursive=True)
    return written
