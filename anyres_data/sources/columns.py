"""Carrying a source's own columns into a sample's metadata without clashing with the build's names."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

# names the build writes itself (docs/design.md, "Dataset on disk"): a source column of the same name is
# kept as `source_NAME` (an img2dataset `url` becomes `source_url`, its `width` `source_width`)
METADATA_NAMES = frozenset(
    {
        "key",
        "url",
        "width",
        "height",
        "original_width",
        "original_height",
        "sha256",
        "source",
        "source_id",
        "license",
        "owner",
        "title",
        "format",
        "orientation",
        "stored_width",
        "stored_height",
        "bytes",
        "phash",
        "crawled_at",
        "resized",
        "read_from",
        "status",
        "error_message",
    }
)


def extra_name(name: str) -> str:
    """The metadata name for a source column `name`."""
    return f"source_{name}" if name in METADATA_NAMES else name


def jsonable(value: Any) -> Any:
    """`value` as plain JSON types: numpy scalars unwrapped, NaN/NA/NaT → None, dates → ISO text, bytes → hex."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, np.ndarray | list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return str(value)  # Decimal, Timedelta, ...: their text
