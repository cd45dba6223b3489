"""What the long jobs (the build, the cache) share: the Dask engine they run on, and how they say how far they are.

The engine (`dask_client`) is a running scheduler's cluster (`--scheduler`), else a `LocalCluster`
of `--workers` processes on this machine. A job calls `progress(Progress(done, total, counts))` in
the process that runs it, as work completes. The CLI passes a callback that draws a rich bar
(`anyres_data.cli.report`); a Python caller may pass its own, or none: then, with the job's
`progress` setting on, tqdm draws a bar on stderr. What a job has to say besides (the Dask
dashboard's address, a retry, a warning) goes through `logging`, under the logger of the module
that says it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from distributed import Client, LocalCluster
from tqdm import tqdm

LOCAL_WORKERS = 2  # --workers when neither it nor --scheduler is given


@dataclass(frozen=True)
class Progress:
    """How far a job is: `done` of the `total` units known so far (candidates, images), and their outcomes."""

    done: int
    total: int
    counts: Mapping[str, int] = field(default_factory=dict)  # outcome ("kept" or a rejection reason) -> units

    def outcomes(self) -> str:
        """The counts on one line, `kept K  reason n, reason n` by count (empty when the job counts none)."""
        if not self.counts:
            return ""
        ranked = sorted(self.counts.items(), key=lambda item: -item[1])
        others = ", ".join(f"{reason} {n}" for reason, n in ranked if reason != "kept" and n)
        return f"kept {self.counts.get('kept', 0)}  {others}"


ProgressFn = Callable[[Progress], None]


@contextmanager
def reporting(progress: ProgressFn | None, *, enabled: bool, description: str) -> Iterator[ProgressFn]:
    """The callback a job reports to: `progress` as given; else tqdm's bar when `enabled`; else one that drops it."""
    if progress is not None:
        yield progress
    elif not enabled:
        yield lambda report: None
    else:
        with tqdm(desc=description, unit="", dynamic_ncols=True) as bar:

            def show(report: Progress) -> None:
                bar.total, bar.n = report.total, report.done
                bar.set_postfix_str(report.outcomes(), refresh=False)
                bar.refresh()

            yield show


@contextmanager
def dask_client(*, workers: int | None, scheduler: str | None) -> Iterator[Client]:
    """A job's engine: a client of the scheduler at `scheduler`, else of a LocalCluster of `workers` processes."""
    if scheduler:
        try:
            client = Client(scheduler)
        except OSError as err:
            raise ValueError(
                f"cannot reach the Dask scheduler at {scheduler} ({err}): start one there "
                "(`dask scheduler`), or build without --scheduler"
            ) from None
        with client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=LOCAL_WORKERS if workers is None else workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port (the default 8787 clashes with any other cluster)
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
