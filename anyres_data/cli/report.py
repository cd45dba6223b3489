"""How the CLIs show a long job (`anyres_data.jobs`): its progress as a rich bar, its log messages on the console."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from anyres_data.jobs import Progress as JobProgress
from anyres_data.jobs import ProgressFn

LIBRARY = logging.getLogger("anyres_data")


class ConsoleHandler(logging.Handler):
    """A log record as one console line: plain for information, `warning: ...` (yellow) for warnings and worse."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        message = escape(record.getMessage())
        self.console.print(f"[bold yellow]warning:[/] {message}" if record.levelno >= logging.WARNING else message)


@contextmanager
def job_report(console: Console, *, description: str, enabled: bool) -> Iterator[ProgressFn | None]:
    """Inside the block, the library's messages (INFO and up) print on `console`; yields the callback a job
    reports its progress to, or None when not `enabled` (the job then shows none). The callback draws a rich
    bar (description, bar, done/total, time, outcomes) from the first report on: a job with nothing to do
    shows none."""
    handler, level = ConsoleHandler(console), LIBRARY.level
    LIBRARY.addHandler(handler)
    if LIBRARY.getEffectiveLevel() > logging.INFO:
        LIBRARY.setLevel(logging.INFO)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[outcomes]}"),
    )
    bar = Progress(*columns, console=console, transient=False)
    tasks = []

    def show(report: JobProgress) -> None:
        if not tasks:
            bar.start()
            tasks.append(bar.add_task(description, total=None, outcomes=""))
        bar.update(tasks[0], total=report.total, completed=report.done, outcomes=report.outcomes())

    try:
        yield show if enabled else None
    finally:
        if tasks:
            bar.stop()
        LIBRARY.removeHandler(handler)
        LIBRARY.setLevel(level)
