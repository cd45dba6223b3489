"""A built dataset on disk: what the build writes and every other stage reads (docs/design.md, "Dataset on disk").

`layout` names its files and columns and reads them back (manifest, rejects, dataset.json); `shards`
writes and reads the WebDataset tars; `verify` checks the shards against the manifest; `export`
writes it as Parquet for Hugging Face `datasets`.
"""

from anyres_data.dataset.layout import (
    MANIFEST_COLUMNS,
    REJECT_COLUMNS,
    DatasetInfo,
    Layout,
    extra_fields,
    load_info,
    read_manifest,
    read_rejects,
)

__all__ = [
    "MANIFEST_COLUMNS",
    "REJECT_COLUMNS",
    "DatasetInfo",
    "Layout",
    "extra_fields",
    "load_info",
    "read_manifest",
    "read_rejects",
]
