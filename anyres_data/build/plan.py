"""Plan: a source's candidates persisted in partitions, one per output shard, before anything is fetched.

A partition is written (whole, atomically) once it holds `shard_size` candidates to fetch, together
with the candidates rejected before download on the way (license, the size a source reports, a key
seen before, a candidate its source could not read). Shard tasks read their partition, so a re-run
task and a resumed build work on exactly the inputs of the first run, even if a web source has
changed since. A resumed plan skips as many candidates of the source as the partitions on disk
hold, and goes on from there.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pandas as pd

from anyres_data import storage
from anyres_data.candidate import Candidate
from anyres_data.dataset.layout import Layout, typed
from anyres_data.filters import FilterSettings, check_candidate
from anyres_data.rejects import Rejected

PARTITION_COLUMNS: dict[str, str] = {
    "position": "Int64",  # order of the candidate within its partition (the source's order)
    "key": "string",
    "source": "string",
    "source_id": "string",
    "url": "string",
    "width": "Int64",
    "height": "Int64",
    "license": "string",
    "owner": "string",
    "title": "string",
    "original_url": "string",  # the image's own URL when `url` is a copy's location (img2dataset output)
    "original_width": "Int64",  # the size before another tool resized the copy
    "original_height": "Int64",
    "extra": "string",  # JSON
    "reason": "string",  # missing: to fetch; else why it was rejected before download
    "message": "string",
}


@dataclass(frozen=True)
class Partition:
    index: int
    to_fetch: int  # candidates the shard task fetches
    rows: int  # all candidates of the partition, rejected ones included
    rejected: dict[str, int]  # reason -> candidates rejected before download


def _partition(index: int, reasons: pd.Series) -> Partition:
    rejected = reasons.dropna().value_counts().to_dict()
    return Partition(index=index, to_fetch=int(reasons.isna().sum()), rows=len(reasons), rejected=rejected)


def plan(
    candidates: Iterable[Candidate], layout: Layout, *, shard_size: int, filters: FilterSettings
) -> Iterator[Partition]:
    """Yield the partitions of `candidates` as they are written, those already on disk first.

    Stops reading `candidates` once OUT/_work/plan.json says an earlier run read them all.
    """
    assert shard_size > 0
    seen: set[str] = set()
    consumed = 0
    names = storage.listdir(layout.partitions, ".parquet")
    for index, name in enumerate(names):
        if name != f"{index:06d}.parquet":
            raise ValueError(
                f"{layout.partitions}: found {name} where {index:06d}.parquet belongs; the build state is damaged"
            )
        frame = storage.read_parquet(layout.partition(index), columns=["key", "reason"])
        seen.update(frame["key"])
        consumed += len(frame)
        yield _partition(index, frame["reason"])
    index = len(names)
    if storage.exists(layout.plan_json):
        return
    rows: list[dict] = []
    to_fetch = 0
    for candidate in itertools.islice(candidates, consumed, None):
        reason = message = None
        try:
            if candidate.key in seen:
                raise Rejected("duplicate_key", f"key {candidate.key} proposed before")
            if candidate.error is not None:
                raise Rejected(*candidate.error)
            check_candidate(candidate, filters)
        except Rejected as rejected:
            reason, message = rejected.reason, rejected.message
        seen.add(candidate.key)
        rows.append(_row(candidate, position=len(rows), reason=reason, message=message))
        to_fetch += reason is None
        if to_fetch == shard_size:
            yield _write(layout, index, rows)
            consumed += len(rows)
            index, rows, to_fetch = index + 1, [], 0
    if rows:
        yield _write(layout, index, rows)
        consumed += len(rows)
        index += 1
    storage.write_json({"partitions": index, "candidates": consumed}, layout.plan_json, tmp_dir=layout.tmp)


def read_partition(layout: Layout, index: int) -> pd.DataFrame:
    """Partition `index` (PARTITION_COLUMNS), in the source's order."""
    return storage.read_parquet(layout.partition(index))


def row_candidate(row: pd.Series) -> Candidate:
    """The Candidate a partition row was made from."""

    def value(name: str) -> object:
        item = row.get(name)  # a partition from an older version lacks the newer columns
        return None if item is None or pd.isna(item) else item

    def size(name: str) -> int | None:
        return None if value(name) is None else int(row[name])

    return Candidate(
        source=row["source"],
        source_id=row["source_id"],
        url=row["url"],
        width=size("width"),
        height=size("height"),
        license=value("license"),
        owner=value("owner"),
        title=value("title"),
        original_url=value("original_url"),
        original_width=size("original_width"),
        original_height=size("original_height"),
        extra=json.loads(row["extra"]),
    )


def _row(candidate: Candidate, *, position: int, reason: str | None, message: str | None) -> dict:
    return {
        "position": position,
        "key": candidate.key,
        "source": candidate.source,
        "source_id": candidate.source_id,
        "url": candidate.url,
        "width": candidate.width,
        "height": candidate.height,
        "license": candidate.license,
        "owner": candidate.owner,
        "title": candidate.title,
        "original_url": candidate.original_url,
        "original_width": candidate.original_width,
        "original_height": candidate.original_height,
        "extra": json.dumps(candidate.extra, ensure_ascii=False, sort_keys=True),
        "reason": reason,
        "message": message,
    }


def _write(layout: Layout, index: int, rows: list[dict]) -> Partition:
    frame = typed(rows, PARTITION_COLUMNS)
    storage.write_parquet(frame, layout.partition(index), tmp_dir=layout.tmp)
    return _partition(index, frame["reason"])
