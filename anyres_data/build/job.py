"""The build job: a source's candidates -> native-resolution WebDataset shards, orchestrated by Dask.

PLAN      stream the source's candidates into partitions, one per shard (plan.py).
EXECUTE   one Dask task per shard (`build_shard`): ingest its candidates on a few threads, write the
          tar, then the shard's record table, last, as the marker that the shard is complete. A task
          that runs again (retry, dead worker, --resume) rewrites both: nothing duplicated or lost.
RETRY     after a pause, the candidates that failed transiently (timeout, connection_error, HTTP 429
          and 5xx: `rejects.is_transient`) are tried once more (`retry_shard`), shard by shard; each
          shard that gains an image is rewritten, then its record. --resume does this again, also
          for a finished build.
FINALIZE  exact and near duplicates over the whole dataset, dropped from their shards (rewritten
          atomically); then manifest.parquet, rejects.parquet, wids.json (the shard list of webdataset's
          indexed reader) and, last, dataset.json. A build that
          keeps nothing says so and fails (EmptyBuildError) unless allow_empty.

Plan and execute overlap: a shard's task is submitted as soon as its partition is written, with a
bounded number in flight. `workers=0` runs every shard in this process, without Dask.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import datetime
import importlib.util
import json
import logging
import math
import platform
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal

import pandas as pd
import pyvips
import yaml
from distributed import Client, as_completed

from anyres_data import storage
from anyres_data.build.dedup import find_duplicates
from anyres_data.build.fetch import FetchSettings, new_session
from anyres_data.build.ingest import DecodeBudget, IngestContext, ingest
from anyres_data.build.plan import PARTITION_COLUMNS, Partition, plan, read_partition, row_candidate
from anyres_data.build.resize import ResizeSettings
from anyres_data.build.subset import SubsetSettings, subset_candidates
from anyres_data.candidate import Candidate
from anyres_data.dataset.layout import FORMAT, MANIFEST_COLUMNS, REJECT_COLUMNS, Layout, shard_name, typed
from anyres_data.dataset.shards import Sample, ShardWriter, drop_samples, read_shard
from anyres_data.filters import FilterSettings
from anyres_data.jobs import LOCAL_WORKERS, Progress, ProgressFn, dask_client, reporting
from anyres_data.payload import discard, spill
from anyres_data.rejects import Rejected, is_transient
from anyres_data.settings import changed_settings, flatten, setting, to_dict
from anyres_data.sources import SourceName, SourceSettings, TarReader, iter_candidates
from anyres_data.vips import setup_vips_worker

RECORD_COLUMNS = {**MANIFEST_COLUMNS, "position": "Int64", "status": "string", "message": "string"}
# Settings that change how a build runs, not what it produces: a resumed build may change them.
RUN_FIELDS = (
    "workers",
    "threads",
    "scheduler",
    "task_retries",
    "resume",
    "progress",
    "retry_transient",
    "retry_pause",
    "allow_empty",
)
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_SECRET = re.compile(r"(^|_)(api_key|secret|token|password)$")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildSettings:
    source: SourceName | None = setting(None, "where candidates come from: flickr, urls, folder or demo")
    out: str | None = setting(None, "output folder: a path or any fsspec URL (file://, s3://, gs://, ...)")
    name: str | None = setting(None, "dataset name, the shards' prefix NAME-000000.tar (default: --out's last part)")
    sources: SourceSettings = setting(SourceSettings(), "settings of the sources", cli_prefix="")
    subset: SubsetSettings = setting(SubsetSettings(), "a seeded subset of the candidates", cli_prefix="subset_")
    filters: FilterSettings = setting(FilterSettings(), "what is kept", cli_prefix="")
    fetch: FetchSettings = setting(FetchSettings(), "downloads", cli_prefix="fetch_")
    resize: ResizeSettings = setting(ResizeSettings(), "resizing before storing (default: none)", cli_prefix="resize_")
    fail_on: Literal["truncated", "error", "warning"] = setting(
        "error", "libvips decode check: reject on truncated data only, on any decode error, or on warnings too"
    )
    shard_size: int = setting(100, "candidates per shard to fetch, so at most this many images per shard")
    workers: int | None = setting(
        None,
        f"Dask worker processes on this machine (LocalCluster); 0: run in this process (default: {LOCAL_WORKERS}; "
        "not with --scheduler, whose cluster has its own)",
    )
    threads: int = setting(8, "download and probe threads per shard task (one shard task per worker at a time)")
    scheduler: str | None = setting(None, "address of a running Dask scheduler, e.g. tcp://HOST:8786 (not --workers)")
    task_retries: int = setting(2, "times a failing shard task is retried before the build stops")
    resume: bool = setting(
        False,
        "continue an interrupted build in --out (same settings) to the same result; a finished build retries "
        "its transient rejects",
    )
    retry_transient: bool = setting(
        True,
        "once every shard is done, try the candidates that failed transiently (timeout, connection_error, "
        "HTTP 429/5xx) once more",
    )
    retry_pause: float = setting(30.0, "seconds to wait before that retry (a flaky server or network may recover)")
    allow_empty: bool = setting(False, "a build that keeps no image succeeds (else it fails, saying why)")
    progress: bool = setting(True, "show a progress bar")


@dataclass(frozen=True)
class ShardSummary:
    """What one shard task did: outcome -> candidates ("kept" or a rejection reason)."""

    index: int
    counts: dict[str, int]


class BuildError(RuntimeError):
    """A shard task kept failing; what is built so far stays, and --resume continues from it."""


class EmptyBuildError(BuildError):
    """The build is complete but kept no image (all candidates rejected, or none proposed); `info`: its dataset.json."""

    def __init__(self, message: str, info: dict[str, Any]) -> None:
        super().__init__(message)
        self.info = info


def resolve_settings(settings: BuildSettings) -> BuildSettings:
    """Check settings and fill in derived values (the name). Raises ValueError saying what to fix."""
    if not settings.source:
        raise ValueError("choose a source with --source flickr|urls|folder|demo")
    if not settings.out:
        raise ValueError("give an output folder with --out PATH (or any fsspec URL)")
    name = settings.name or re.sub(r"[^A-Za-z0-9_-]", "_", settings.out.rstrip("/").rsplit("/", 1)[-1]) or "anyres"
    if not _NAME.match(name):
        raise ValueError(f"--name {name!r}: use only letters, digits, '_' and '-' (shard keys must not contain dots)")
    if settings.scheduler and settings.workers is not None:
        raise ValueError(
            "--scheduler runs the build on that cluster's workers: drop --workers (it sizes a cluster on this machine)"
        )
    checks = [
        (settings.shard_size >= 1, "--shard-size must be at least 1"),
        (settings.workers is None or settings.workers >= 0, "--workers must be 0 (this process) or more"),
        (settings.threads >= 1, "--threads must be at least 1"),
        (settings.task_retries >= 0, "--task-retries must be 0 or more"),
        (settings.filters.max_aspect >= 1, "--max-aspect must be at least 1"),
        (-1 <= settings.filters.near_duplicate_distance <= 32, "--near-duplicate-distance must be -1 (off) to 32"),
        (settings.fetch.max_bytes > 0 and settings.fetch.retries >= 0, "--fetch-max-bytes > 0, --fetch-retries >= 0"),
        (settings.fetch.spill_bytes >= 0, "--fetch-spill-bytes must be 0 or more"),
        (min(settings.fetch.timeout, settings.fetch.first_byte_timeout) > 0, "fetch timeouts must be > 0 seconds"),
        (settings.fetch.deadline > 0, "--fetch-deadline must be > 0 seconds"),
        (settings.filters.max_decode_bytes > 0, "--max-decode-bytes must be > 0"),
        (settings.retry_pause >= 0, "--retry-pause must be 0 or more seconds"),
        (
            not (settings.out.startswith("memory://") and settings.workers != 0),  # None: LOCAL_WORKERS or --scheduler
            "--out memory://... lives in this process only, where Dask workers cannot see it: "
            "add --workers 0, or choose an --out that every worker reaches (a folder, s3://...)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    return dataclasses.replace(settings, name=name, out=storage.full_url(settings.out))


def build(
    settings: BuildSettings, *, candidates: Iterable[Candidate] | None = None, progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Build the dataset `settings` describe and return its dataset.json (its counts by outcome under `counts`).

    `candidates` replaces the source named in the settings (for recipes and tests); a resumed build
    must be given the same ones. `progress` is called with the candidates done, planned and their
    outcomes as shards finish (`anyres_data.jobs`; default: tqdm's bar if `settings.progress`);
    messages go to this module's logger. A build that fails before any shard is done leaves OUT as it found
    it (so the corrected command runs as a first one). Raises ValueError for bad settings or an OUT that is in the way,
    BuildError when a shard task keeps failing (rerun with resume=True after fixing the cause),
    EmptyBuildError when the build is complete but kept nothing (unless `allow_empty`).
    """
    settings = resolve_settings(settings)
    layout = Layout.at(settings.out)
    started = time.time()
    existed, fresh = storage.exists(layout.out), not storage.listdir(layout.out)
    complete = _prepare(layout, settings)
    retry = complete and settings.retry_transient and bool(_transient_shards(layout))
    if complete and not retry:
        log.info("%s is already complete; nothing to do.", settings.out)
        return storage.read_json(layout.dataset_json)
    try:
        with (
            reporting(progress, enabled=settings.progress, description="building") as report,
            _Runner(settings) as runner,
        ):
            tally = _Tally(report)
            if not complete:
                if candidates is None:
                    candidates = iter_candidates(settings.source, settings.sources, licenses=settings.filters.license)
                candidates = subset_candidates(candidates, settings.subset)
                partitions = plan(candidates, layout, shard_size=settings.shard_size, filters=settings.filters)
                _execute(runner, layout, partitions, tally)
            else:
                tally.resumed(layout)
            if settings.retry_transient:
                _retry_transient(runner, layout, tally)
    except BaseException as err:
        if fresh and not storage.listdir(layout.records):  # not one shard done: leave OUT as it was found
            fs, path = storage.filesystem(layout.out)
            storage.remove(layout.out, recursive=True)
            if existed:
                fs.makedirs(path, exist_ok=True)
            if isinstance(err, BuildError):
                raise BuildError(f"{err}; nothing was written to {settings.out}: fix the cause and run again") from err
        elif isinstance(err, BuildError):
            raise BuildError(
                f"{err}; what is built so far is kept in {settings.out}: fix the cause and continue with "
                f"{_resume_command(layout)}"
            ) from err
        raise
    info = finalize(settings, layout, run_started=started)
    _check_not_empty(settings, info)
    return info


def _check_not_empty(settings: BuildSettings, info: dict[str, Any]) -> None:
    """Say loudly when nothing was kept; raise EmptyBuildError unless the settings allow it."""
    counts = info["counts"]
    if counts["kept"]:
        return
    rejected = counts["rejected"]
    if not counts["candidates"]:
        message = "the source proposed no candidates"
    elif len(rejected) == 1:
        (reason,) = rejected
        example = storage.read_parquet(Layout.at(settings.out).rejects, columns=["url", "message"]).iloc[0]
        message = (
            f"all {counts['candidates']} candidates were rejected as {reason} (the first: {example['url']}: "
            f"{example['message']})"
        )
    else:
        message = f"no candidate was kept ({', '.join(f'{r} {n}' for r, n in rejected.items())})"
    if settings.allow_empty:
        log.warning(message)
        return
    hint = " After fixing the network or the server, --resume retries them." if all(map(is_transient, rejected)) else ""
    raise EmptyBuildError(
        f"nothing was kept: {message}. The dataset in {settings.out} is complete but empty; check the source "
        f"and the filters, or pass --allow-empty if that is expected.{hint}",
        info,
    )


def _prepare(layout: Layout, settings: BuildSettings) -> bool:
    """Check that OUT is free (or, with resume, holds this build); True if the build is already complete."""
    current = _public(to_dict(settings))
    if storage.listdir(layout.out):
        if not storage.exists(layout.build_json):
            raise ValueError(f"{settings.out} is not empty and holds no anyres build: choose another --out")
        if not settings.resume:
            done = len(storage.listdir(layout.records, ".parquet"))
            state = (
                "a finished build"
                if storage.exists(layout.dataset_json)
                else f"an unfinished build ({done} shards done)"
            )
            raise ValueError(
                f"{settings.out} holds {state}: continue it with {_resume_command(layout)}; "
                f"to start over, {_start_over(layout)}"
            )
        # a setting the first run's version did not have yet counts as its default
        first = flatten(_public(to_dict(BuildSettings()))) | flatten(storage.read_json(layout.build_json)["settings"])
        changed = [
            f"{name}: {before!r} -> {after!r}"
            for name, before, after in changed_settings(
                first, current, may_change=lambda name: name.split(".")[0] in RUN_FIELDS
            )
        ]
        if changed:
            raise ValueError(
                "cannot resume with other settings than the first run's ("
                + "; ".join(changed)
                + f"): continue with the first run's settings with {_resume_command(layout)}; "
                + f"to build with the new ones, {_start_over(layout)}"
            )
        storage.remove(layout.tmp, recursive=True)
        return storage.exists(layout.dataset_json)
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    with storage.atomic_open(layout.settings_yaml, layout.tmp) as f:  # what --config reads to resume
        f.write(yaml.safe_dump(current, sort_keys=False).encode())
    storage.write_json({"settings": current, "started_at": started_at}, layout.build_json, tmp_dir=layout.tmp)
    return False


def _resume_command(layout: Layout) -> str:
    """The command that continues the build in `layout` with the settings it started with."""
    if storage.exists(layout.settings_yaml):
        return f"`anyres-data build --config {layout.settings_yaml} --resume`"
    return "the first run's command with --resume"  # a build from before settings.yaml was written


def _start_over(layout: Layout) -> str:
    path = storage.filesystem(layout.out)[1]
    remove = f"`rm -r {path}`" if storage.full_url(layout.out) == path else f"remove {layout.out}"
    return f"{remove} first, or choose another --out"


def _public(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings without anything that could be a secret (API keys are never settings, but be sure)."""
    return {
        name: _public(value) if isinstance(value, dict) else value
        for name, value in settings.items()
        if not _SECRET.search(name)
    }


# ---------------------------------------------------------------------------------------------- execute


def build_shard(settings: BuildSettings, index: int) -> ShardSummary:
    """Ingest the candidates of partition `index` into its shard, then write the shard's record (the marker).

    Runs in a Dask worker (or in this process). Candidates are ingested on `settings.threads` threads,
    at most 2 x threads of them held at once (large ones in temporary files), and written in
    partition order.
    """
    layout = Layout.at(settings.out)
    partition = read_partition(layout, index)
    todo = [row for _, row in partition.iterrows() if pd.isna(row["reason"])]
    name = shard_name(settings.name, index)
    records = []
    with _ingesting(settings) as (ingest_rows, _), ShardWriter(layout.shard(name), layout.tmp) as writer:
        for row, outcome in ingest_rows(todo):
            if isinstance(outcome, Sample):
                writer.write(outcome)
                discard(outcome.data)
                records.append(_kept_record(outcome, shard=name, position=row["position"]))
            else:
                records.append(_rejected_record(row, outcome))
    return _write_record(layout, index, records)


def retry_shard(settings: BuildSettings, index: int) -> ShardSummary:
    """Try the transiently failed candidates of shard `index` once more; rewrite the shard if any is kept now.

    The new tar holds the samples the record keeps (read back from the old tar, which lacks those
    finalize dropped as duplicates) and the new ones, in candidate order; the record is written
    last. Run again after an interruption, it gives the same shard: the old tar is only read for
    samples the record keeps.
    """
    layout = Layout.at(settings.out)
    record = storage.read_parquet(layout.record(index))
    positions = set(record.loc[record["status"].map(is_transient), "position"])
    if not positions:
        return ShardSummary(index=index, counts=record["status"].value_counts().to_dict())
    partition = read_partition(layout, index)
    todo = [row for _, row in partition.iterrows() if row["position"] in positions]
    name = shard_name(settings.name, index)
    fresh: dict[int, Sample] = {}
    changed: dict[int, dict[str, Any]] = {}
    with _ingesting(settings) as (ingest_rows, spill_dir):
        for row, outcome in ingest_rows(todo):
            position = int(row["position"])
            if isinstance(outcome, Sample):  # held until all are done: on disk, not in memory
                fresh[position] = dataclasses.replace(outcome, data=spill(outcome.data, spill_dir))
                changed[position] = _kept_record(outcome, shard=name, position=position)
            else:
                changed[position] = _rejected_record(row, outcome)
        if fresh:
            kept = record[record["status"] == "kept"]
            old = dict(zip(kept["key"], kept["position"], strict=True))
            _merge_into_shard(layout.shard(name), layout.tmp, old, fresh)
    records = [changed.get(int(row["position"]), row) for row in record.to_dict("records")]
    return _write_record(layout, index, records)


def _merge_into_shard(url: str, tmp_dir: str, old: dict[str, int], fresh: dict[int, Sample]) -> None:
    """Rewrite shard `url`: its samples whose key is in `old` (key -> position) and `fresh` ones, by position."""
    previous = read_shard(url) if storage.exists(url) else iter(())
    waiting = collections.deque(sorted(fresh.items()))

    def write_fresh_before(position: float) -> None:
        while waiting and waiting[0][0] < position:
            sample = waiting.popleft()[1]
            writer.write(sample)
            discard(sample.data)

    with ShardWriter(url, tmp_dir) as writer:
        for sample in previous:
            if sample["__key__"] in old:
                write_fresh_before(old[sample["__key__"]])
                writer.write_members(sample)
        write_fresh_before(math.inf)


@contextmanager
def _ingesting(settings: BuildSettings) -> Iterator[tuple[Callable[[list[pd.Series]], Iterator[Any]], str]]:
    """(a function from partition rows to (row, Sample or Rejected) in order, on `settings.threads`
    threads; the task's temporary folder).

    Everything the rows share lives as long as the block: an HTTP session, a tar reader, the decode
    budget and the temporary folder for large downloads (deleted on leaving, whatever happened).
    """
    setup_vips_worker()
    with (
        TarReader() as tar_reader,
        new_session(settings.threads) as session,
        tempfile.TemporaryDirectory(prefix="anyres-shard-") as spill_dir,
        concurrent.futures.ThreadPoolExecutor(settings.threads) as pool,
    ):
        context = IngestContext(
            fetch=settings.fetch,
            filters=settings.filters,
            fail_on=settings.fail_on,
            session=session,
            decode_budget=DecodeBudget(settings.filters.max_decode_bytes),
            tar_reader=tar_reader,
            tar_lock=threading.Lock(),
            resize=settings.resize,
            spill_dir=spill_dir,
        )

        def ingest_rows(rows: list[pd.Series]) -> Iterator[tuple[pd.Series, Any]]:
            return _in_order(pool, lambda row: _ingest_row(row, context), rows, window=2 * settings.threads)

        yield ingest_rows, spill_dir


def _write_record(layout: Layout, index: int, records: list[dict[str, Any]]) -> ShardSummary:
    record = typed(records, RECORD_COLUMNS)
    storage.write_parquet(record, layout.record(index), tmp_dir=layout.tmp)
    return ShardSummary(index=index, counts=record["status"].value_counts().to_dict())


def _ingest_row(row: pd.Series, context: IngestContext) -> Sample | Rejected:
    try:
        return ingest(row_candidate(row), context)
    except Rejected as rejected:
        return rejected


def _in_order(
    pool: concurrent.futures.Executor, fn: Callable[[Any], Any], items: Iterable[Any], *, window: int
) -> Iterator[tuple[Any, Any]]:
    """(item, fn(item)) in the order of `items`, with at most `window` computed ahead."""
    pending: collections.deque = collections.deque()
    for item in items:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= window:
            item, future = pending.popleft()
            yield item, future.result()
    while pending:
        item, future = pending.popleft()
        yield item, future.result()


def _kept_record(sample: Sample, *, shard: str, position: int) -> dict[str, Any]:
    metadata = sample.metadata
    record = {name: metadata[name] for name in MANIFEST_COLUMNS if name in metadata}
    extra = {name: value for name, value in metadata.items() if name not in MANIFEST_COLUMNS}
    return {**record, "extra": _json(extra), "shard": shard, "position": position, "status": "kept"}


def _rejected_record(row: pd.Series, rejected: Rejected) -> dict[str, Any]:
    fields = ("key", "source", "source_id", "url", "license", "owner", "title", "extra", "position")
    return {**{name: row[name] for name in fields}, "status": rejected.reason, "message": rejected.message}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _record_counts(layout: Layout, index: int) -> dict[str, int] | None:
    """Outcome -> candidates of shard `index`, None while the shard is not done."""
    if not storage.exists(layout.record(index)):
        return None
    return storage.read_parquet(layout.record(index), columns=["status"])["status"].value_counts().to_dict()


def _execute(runner: _Runner, layout: Layout, partitions: Iterator[Partition], tally: _Tally) -> None:
    """Run `build_shard` for every partition whose record is missing; account for every partition."""

    def todo() -> Iterator[int]:
        for partition in partitions:
            tally.planned(partition)
            counts = _record_counts(layout, partition.index)
            if counts is None:
                yield partition.index
            else:
                tally.finished(ShardSummary(index=partition.index, counts=counts))

    runner.run(build_shard, todo(), tally.finished)


def _transient_shards(layout: Layout) -> dict[int, dict[str, int]]:
    """{shard index: its outcome counts} for the shards with transiently failed candidates."""
    shards = {}
    for index in range(storage.read_json(layout.plan_json)["partitions"]):
        counts = _record_counts(layout, index) or {}
        if any(is_transient(reason) for reason in counts):
            shards[index] = counts
    return shards


def _retry_transient(runner: _Runner, layout: Layout, tally: _Tally) -> None:
    """After `retry_pause` seconds, run `retry_shard` on every shard with transient rejects."""
    shards = _transient_shards(layout)
    if not shards:
        return
    failed = collections.Counter()
    for counts in shards.values():
        failed.update({reason: n for reason, n in counts.items() if is_transient(reason)})
    pause = runner.settings.retry_pause
    log.info(
        "retrying %d candidates that failed transiently (%s) in %d shards, after %g s",
        sum(failed.values()),
        ", ".join(f"{r} {n}" for r, n in failed.most_common()),
        len(shards),
        pause,
    )
    time.sleep(pause)
    runner.run(retry_shard, iter(shards), lambda summary: tally.retried(shards[summary.index], summary))


class _Runner:
    """Runs shard tasks: in this process (workers 0), or on a Dask cluster started on first use.

    `run` keeps at most 2 tasks per Dask thread in flight, so a plan that is still being read feeds
    the cluster as it goes; a task that keeps failing stops the build with a BuildError.
    """

    def __init__(self, settings: BuildSettings) -> None:
        self.settings = settings
        self._stack = ExitStack()
        self._client: Client | None = None

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def run(
        self,
        task: Callable[[BuildSettings, int], ShardSummary],
        indices: Iterator[int],
        finished: Callable[[ShardSummary], None],
    ) -> None:
        settings = self.settings
        if settings.workers == 0:
            for index in indices:
                finished(task(settings, index))
            return
        if self._client is None:
            self._client = self._stack.enter_context(
                dask_client(workers=settings.workers, scheduler=settings.scheduler)
            )
            bokeh = importlib.util.find_spec("bokeh") is not None
            log.info("Dask dashboard: %s%s", self._client.dashboard_link, "" if bokeh else " (needs bokeh)")
        limit = 2 * max(1, sum(self._client.nthreads().values()))
        running = as_completed()
        shard_of: dict[str, int] = {}

        def collect() -> None:
            future = next(running)
            try:
                finished(future.result())
            except Exception as err:
                raise BuildError(f"shard {shard_of[future.key]} failed ({type(err).__name__}: {err})") from err

        for index in indices:
            key = f"anyres-{task.__name__}-{index:06d}-{time.time_ns():x}"
            shard_of[key] = index
            running.add(self._client.submit(task, settings, index, key=key, retries=settings.task_retries))
            while running.count() >= limit:
                collect()
        while running.count():
            collect()


class _Tally:
    """Counts by outcome over the candidates planned so far, reported as they change."""

    def __init__(self, report: ProgressFn) -> None:
        self.report = report
        self.counts: collections.Counter[str] = collections.Counter()
        self.total = 0

    def planned(self, partition: Partition) -> None:
        self.total += partition.rows
        self.counts.update(partition.rejected)  # rejected before download: counted now
        self._show()

    def finished(self, summary: ShardSummary) -> None:
        self.counts.update(summary.counts)
        self._show()

    def retried(self, before: dict[str, int], summary: ShardSummary) -> None:
        self.counts.subtract(before)
        self.finished(summary)

    def resumed(self, layout: Layout) -> None:
        """Count a finished build's outcomes (before its transient rejects are retried)."""
        for index in range(storage.read_json(layout.plan_json)["partitions"]):
            partition = read_partition(layout, index)
            self.total += len(partition)
            self.counts.update(partition["reason"].dropna().value_counts().to_dict())
            self.counts.update(_record_counts(layout, index) or {})
        self._show()

    def _show(self) -> None:
        self.report(Progress(done=sum(self.counts.values()), total=self.total, counts=dict(self.counts)))


# ---------------------------------------------------------------------------------------------- finalize


def _concat(frames: list[pd.DataFrame], columns: dict[str, str]) -> pd.DataFrame:
    """Tables one below the other, with an `index` column (the partition); empty ones when there are none."""
    if frames:
        return pd.concat(frames, ignore_index=True)
    return typed([], {**columns, "index": "Int64"})


DROP_COLUMNS = {"key": "string", "reason": "string", "duplicate_of": "string", "distance": "Int64"}


def _read_drops(layout: Layout) -> pd.DataFrame:
    if storage.exists(layout.drops):
        return typed(storage.read_parquet(layout.drops), DROP_COLUMNS)
    return typed([], DROP_COLUMNS)


def wids_index(name: str, manifest: pd.DataFrame, layout: Layout) -> dict[str, Any]:
    """The shard list webdataset's indexed reader (`wids.ShardListDataset`) opens: per shard its URL
    (relative to OUT, where the index lies) and sample count, in shard order."""
    counts = manifest["shard"].value_counts()
    shards = [
        {"url": f"shards/{shard}", "nsamples": int(counts[shard]), "filesize": storage.size(layout.shard(shard))}
        for shard in sorted(counts.index)
    ]
    return {"wids_version": 1, "name": name, "shardlist": shards}


def _keep_cache_record(info: dict[str, Any], layout: Layout, *, out: str) -> None:
    """A resumed build rewrites dataset.json: keep the cache `anyres-data cache` recorded there.

    Its entries stay valid (they are keyed by sample); images the resume added have none yet and
    are cut from their originals, counted by the loader, until the cache is run again.
    """
    if not storage.exists(layout.dataset_json):
        return
    previous = storage.read_json(layout.dataset_json)
    if "cache" not in previous:
        return
    info["cache"] = previous["cache"]
    if previous.get("counts") != info["counts"]:
        log.warning("%s changed: run `anyres-data cache %s` again to add its new images to the cache", out, out)


def finalize(settings: BuildSettings, layout: Layout, *, run_started: float) -> dict[str, Any]:
    """Drop duplicates from the shards, write manifest.parquet, rejects.parquet, wids.json and dataset.json (last).

    Needs every shard's record. Idempotent: an interrupted finalize runs again to the same result.
    """
    finalize_started = time.time()
    n = storage.read_json(layout.plan_json)["partitions"]
    partitions = _concat([read_partition(layout, i).assign(index=i) for i in range(n)], PARTITION_COLUMNS)
    records = _concat([storage.read_parquet(layout.record(i)).assign(index=i) for i in range(n)], RECORD_COLUMNS)
    kept = records[records["status"] == "kept"]
    ranking = pd.DataFrame(
        {
            "key": kept["key"],
            "sha256": kept["sha256"],
            "phash": kept["phash"],
            "pixels": (kept["width"] * kept["height"]).astype("int64"),
            "bytes": kept["bytes"].astype("int64"),
            "order": kept["index"].astype("int64") * 2**32 + kept["position"].astype("int64"),
        }
    )
    # Images an earlier finalize removed stay removed (their bytes are gone); the rest is ranked anew,
    # with the images a transient retry added. The journal is written before anything is removed.
    earlier = _read_drops(layout)
    earlier = earlier[earlier["key"].isin(kept["key"])]
    found = find_duplicates(
        ranking[~ranking["key"].isin(earlier["key"])], max_distance=settings.filters.near_duplicate_distance
    )
    drops = typed(pd.concat([earlier, typed(found, DROP_COLUMNS)], ignore_index=True), DROP_COLUMNS)
    storage.write_parquet(drops, layout.drops, tmp_dir=layout.tmp)
    drops = drops.merge(kept[["key", "shard", "source", "source_id", "url", "index", "position"]], on="key")
    for shard, group in drops.groupby("shard"):
        drop_samples(layout.shard(shard), set(group["key"]), tmp_dir=layout.tmp)

    manifest = kept[~kept["key"].isin(drops["key"])].sort_values(["index", "position"])
    drops["message"] = [
        f"same bytes as {other}" if reason == "duplicate" else f"{d} bits from {other}, kept as the larger copy"
        for reason, other, d in zip(drops["reason"], drops["duplicate_of"], drops["distance"], strict=True)
    ]
    rejected = pd.concat(
        [
            partitions[partitions["reason"].notna()],
            records[records["status"] != "kept"].rename(columns={"status": "reason"}).assign(shard=None),
            drops,
        ],
        ignore_index=True,
    ).sort_values(["index", "position"], kind="stable")
    manifest, rejected = typed(manifest, MANIFEST_COLUMNS), typed(rejected, REJECT_COLUMNS)
    storage.write_parquet(manifest, layout.manifest, tmp_dir=layout.tmp)
    storage.write_parquet(rejected, layout.rejects, tmp_dir=layout.tmp)
    storage.write_json(wids_index(settings.name, manifest, layout), layout.wids_json, tmp_dir=layout.tmp)

    counts = {
        "candidates": len(partitions),
        "kept": len(manifest),
        "rejected": {str(k): int(v) for k, v in sorted(rejected["reason"].value_counts().items())},
    }
    assert counts["kept"] + len(rejected) == counts["candidates"], counts
    now = time.time()
    info = {
        "format": FORMAT,
        "name": settings.name,
        "counts": counts,
        "shards": sorted(manifest["shard"].unique().tolist()),
        "bytes": int(manifest["bytes"].sum()),
        "settings": _public(to_dict(settings)),
        "timing": {
            "started_at": storage.read_json(layout.build_json)["started_at"],
            "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "run_seconds": round(now - run_started, 3),
            "finalize_seconds": round(now - finalize_started, 3),
            "resumed": settings.resume,
        },
        "versions": {
            "anyres": version("anyres"),
            "libvips": ".".join(str(pyvips.version(i)) for i in range(3)),
            "pyvips": version("pyvips"),
            "webdataset": version("webdataset"),
            "dask": version("dask"),
            "distributed": version("distributed"),
            "python": platform.python_version(),
        },
    }
    _keep_cache_record(info, layout, out=settings.out)
    storage.write_json(info, layout.dataset_json, tmp_dir=layout.tmp)
    storage.remove(layout.tmp, recursive=True)
    return info
