"""How the long jobs (the build, the cache) say how far they are: a plain callback, else a tqdm bar.

A job calls `progress(Progress(done, total, counts))` in the process that runs it, as work
completes. The CLI passes a callback that draws a rich bar (`anyres_data.cli.report`); a Python
caller may pass its own, or none: then, with the job's `progress` setting on, tqdm draws a bar on
stderr. What a job has to say besides (the Dask dashboard's address, a retry, a warning) goes
through `logging`, under the logger of the module that says it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from tqdm import tqdm


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
