"""`anyres-data cache`: write the training cache of a built dataset (format: `anyres_data.sampling.cache`).

One task per shard, on the build's engine (a Dask `LocalCluster`, a running scheduler, or this
process): read the shard, encode each wanted image's entry and write it to a temporary name, moved
into place when whole; then the shard's `_done/SHARD.json`, last, as its marker. An entry or shard
already there is skipped, so a run killed at any point (even `kill -9`) continues where it stopped
when run again. The originals are only read. When every shard is done, `cache.json` is written and
the cache is recorded in the dataset's `dataset.json` (key `cache`), where the loader finds it.
"""

from __future__ import annotations

import collections
import datetime
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import pyvips
from distributed import as_completed

from anyres_data import storage
from anyres_data.dataset.layout import Layout, load_info, read_manifest
from anyres_data.dataset.shards import image_bytes, read_shard
from anyres_data.jobs import Progress, ProgressFn, dask_client, reporting
from anyres_data.probe import read_header
from anyres_data.rejects import Rejected
from anyres_data.sampling.cache import CACHE_FORMAT, CacheFormat, encode_entry, entry_url
from anyres_data.settings import setting, to_dict

log = logging.getLogger(__name__)
OUTCOMES = ("written", "present", "not_wanted", "failed")


@dataclass(frozen=True)
class CacheSettings:
    """What `anyres-data cache OUT` writes, where, and on which engine."""

    to: str | None = setting(None, "where the cache goes: a folder or any fsspec URL (default: OUT/cache)")
    format: CacheFormat = setting(CacheFormat(), "how entries are encoded", cli_prefix="")
    workers: int = setting(2, "Dask worker processes on this machine (LocalCluster); 0: run in this process")
    scheduler: str | None = setting(None, "address of a running Dask scheduler, e.g. tcp://HOST:8786 (not --workers)")
    task_retries: int = setting(2, "times a failing shard task is retried before the run stops")
    progress: bool = setting(True, "show a progress bar")


@dataclass(frozen=True)
class ShardCache:
    """What one shard task did: outcome → images; bytes of the entries it wrote and of their originals."""

    shard: str
    counts: dict[str, int]
    entry_bytes: int
    original_bytes: int
    seconds: float


def cache_url(out: str, settings: CacheSettings) -> str:
    return storage.full_url(settings.to) if settings.to else storage.join(Layout.at(out).out, "cache")


def cache_shard(shard_url: str, cache: str, fmt: CacheFormat) -> ShardCache:
    """Write the entries of one shard's wanted images that are not there yet, then the shard's marker.

    An image that does not decode is logged and counted as `failed` (the loader reads its original).
    """
    pyvips.cache_set_max(0)  # each image is read once
    started = time.time()
    shard = shard_url.rstrip("/").rsplit("/", 1)[-1]
    marker = storage.join(cache, "_done", shard + ".json")
    if storage.exists(marker):
        return ShardCache(**storage.read_json(marker))
    tmp = storage.join(cache, "_tmp")
    counts: collections.Counter[str] = collections.Counter({outcome: 0 for outcome in OUTCOMES})
    entry_bytes = original_bytes = 0
    for sample in read_shard(shard_url):
        key, data = sample["__key__"], image_bytes(sample)
        url = entry_url(cache, key)
        try:
            header = read_header(data)
            if not fmt.wants(header.width, header.height):
                counts["not_wanted"] += 1
                continue
            if storage.exists(url):
                counts["present"] += 1
            else:
                entry = encode_entry(data, fmt)
                with storage.atomic_open(url, tmp) as f:
                    f.write(entry)
                counts["written"] += 1
            fs, path = storage.filesystem(url)
            entry_bytes += fs.size(path)
            original_bytes += len(data)
        except (Rejected, pyvips.Error, TypeError) as error:  # TypeError: a sample without an image
            log.warning("no cache entry for %s: %s: %s", key, type(error).__name__, error)
            counts["failed"] += 1
    summary = ShardCache(shard, dict(counts), entry_bytes, original_bytes, round(time.time() - started, 3))
    storage.write_json(summary.__dict__, marker, tmp_dir=tmp)
    return summary


def build_cache(out: str, settings: CacheSettings, *, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Write the cache of the dataset at `out` (see the module docstring); returns its cache.json.

    `progress` is called with the images done of the manifest's as shards finish (`anyres_data.jobs`;
    default: tqdm's bar if `settings.progress`).
    Raises ValueError when `out` is not a finished build, RuntimeError when a shard task keeps failing
    (what is written stays; run again to continue).
    """
    info = load_info(out)
    cache = cache_url(out, settings)
    images = read_manifest(out).groupby("shard").size().to_dict()
    _claim(cache, settings.format)
    started = time.time()
    done: list[ShardCache] = []
    total, finished = sum(images.values()), 0
    with reporting(progress, enabled=settings.progress, description="caching") as report:
        report(Progress(done=0, total=total))
        for summary in _run(settings, info.shards, cache):
            done.append(summary)
            finished += images.get(summary.shard, 0)
            report(Progress(done=finished, total=total))
    record = write_record(cache, settings.format, done, seconds=time.time() - started)
    layout = Layout.at(out)
    beside = cache == storage.join(layout.out, "cache")
    data = dict(info.data, cache={"url": "cache" if beside else cache, **{k: record[k] for k in ("format", "counts")}})
    storage.write_json(data, layout.dataset_json, tmp_dir=layout.tmp)
    return record


def _claim(cache: str, fmt: CacheFormat) -> None:
    """Record the entry format before the first entry; a cache written with another format is an error."""
    url, wanted = storage.join(cache, "_format.json"), to_dict(fmt)
    if storage.exists(url):
        found = storage.read_json(url)
        if found != wanted:
            raise ValueError(
                f"{cache} holds entries of another format ({found}); give another --to, or delete it to rebuild"
            )
        return
    storage.write_json(wanted, url, tmp_dir=storage.join(cache, "_tmp"))


def write_record(cache: str, fmt: CacheFormat, done: list[ShardCache], *, seconds: float) -> dict[str, Any]:
    """Write cache.json for the shards in `done` (what `open_cache` reads) and return it."""
    record = _record(fmt, cache, done, seconds=seconds)
    storage.write_json(record, storage.join(cache, "cache.json"), tmp_dir=storage.join(cache, "_tmp"))
    return record


def _record(fmt: CacheFormat, cache: str, done: list[ShardCache], *, seconds: float) -> dict[str, Any]:
    counts: collections.Counter[str] = collections.Counter({outcome: 0 for outcome in OUTCOMES})
    for summary in done:
        counts.update(summary.counts)
    entry_bytes = sum(s.entry_bytes for s in done)
    original_bytes = sum(s.original_bytes for s in done)
    return {
        "format": CACHE_FORMAT,
        "url": cache,
        "settings": to_dict(fmt),
        "ycbcr": fmt.ycbcr,
        "counts": dict(counts),
        "entry_bytes": entry_bytes,
        "original_bytes": original_bytes,
        "size_ratio": round(entry_bytes / original_bytes, 4) if original_bytes else None,
        "task_seconds": round(sum(s.seconds for s in done), 3),
        "run_seconds": round(seconds, 3),
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": {"anyres": version("anyres"), "libvips": ".".join(str(pyvips.version(i)) for i in range(3))},
    }


def _run(settings: CacheSettings, shards: list[str], cache: str) -> Iterator[ShardCache]:
    """`cache_shard` for every shard, in this process (workers 0) or on Dask; summaries as they finish."""
    if settings.workers == 0 and not settings.scheduler:
        for shard in shards:
            yield cache_shard(shard, cache, settings.format)
        return
    with dask_client(workers=settings.workers, scheduler=settings.scheduler) as client:
        futures = {
            client.submit(
                cache_shard,
                shard,
                cache,
                settings.format,
                key=f"anyres-cache-{i:06d}-{time.time_ns():x}",
                retries=settings.task_retries,
            ): shard
            for i, shard in enumerate(shards)
        }
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as err:
                raise RuntimeError(
                    f"caching {futures[future]} failed ({type(err).__name__}: {err}); what is written stays in "
                    f"{cache}: fix the cause and run again"
                ) from err
