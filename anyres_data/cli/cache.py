"""`anyres-data cache OUT`: the training cache of a built dataset (the work is anyres_data.sampling.cache_build)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from anyres_data.cli.errors import user_errors
from anyres_data.cli.report import job_report
from anyres_data.sampling.cache_build import OUTCOMES, CacheSettings, build_cache


def summary_table(record: dict[str, Any]) -> Table:
    """The outcome of a cache run: images by outcome, size against the originals, build speed."""
    counts = record["counts"]
    table = Table(title=f"cache {record['url']}")
    table.add_column("")
    table.add_column("value", justify="right")
    for outcome in OUTCOMES:
        table.add_row(f"images {outcome}", str(counts.get(outcome, 0)))
    ratio = record["size_ratio"]
    table.add_row("cache bytes", f"{record['entry_bytes']:,}" + (f" ({ratio:.2f}× the originals)" if ratio else ""))
    if counts.get("written") and record["task_seconds"]:
        table.add_row("images written per task-second", f"{counts['written'] / record['task_seconds']:.2f}")
    return table


def cache_command(
    settings: CacheSettings, out: str = typer.Argument(..., help="dataset folder (any fsspec URL)")
) -> None:
    """Write the training cache of a built dataset: a tiled pyramidal TIFF per image (docs/sampler.md)."""
    console = Console(stderr=True)
    with user_errors(RuntimeError), job_report(console, description="caching", enabled=settings.progress) as progress:
        record = build_cache(out, settings, progress=progress)
    console.print(summary_table(record))
