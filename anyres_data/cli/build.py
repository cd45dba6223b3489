"""`anyres-data build` and `info`: a build with its progress bar and summary table; a built dataset's summary."""

from __future__ import annotations

from typing import Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from anyres_data.build.job import BuildError, BuildSettings, EmptyBuildError, build
from anyres_data.cli.errors import fail, user_errors
from anyres_data.cli.report import job_report
from anyres_data.dataset.layout import load_info, read_manifest
from anyres_data.sources.flickr import FlickrError


def run_build(settings: BuildSettings, console: Console) -> dict[str, Any]:
    """`build(settings)` with its progress bar and messages on `console`, then its summary table; returns
    its dataset.json. Raises as `build` does (an empty build after printing its table)."""
    with job_report(console, description="building", enabled=settings.progress) as progress:
        try:
            info = build(settings, progress=progress)
        except EmptyBuildError as err:
            console.print(summary_table(err.info))
            raise
    console.print(summary_table(info))
    return info


def build_command(settings: BuildSettings) -> None:
    """Build a dataset of native-resolution images from a source into WebDataset shards."""
    console = Console(stderr=True)
    with user_errors(BuildError, FlickrError):
        try:
            run_build(settings, console)
        except EmptyBuildError as err:  # the build ran, but nothing works: as loud as can be, and exit 1
            console.rule("[bold red]nothing was kept[/]", style="red")
            fail(str(err), code=1)


def info_command(out: str = typer.Argument(..., help="dataset folder (any fsspec URL)")) -> None:
    """Print the summary of a built dataset: outcomes by reason, sizes, formats."""
    with user_errors():
        info = load_info(out)
    console = Console()
    console.print(summary_table(info.data))
    console.print(size_table(read_manifest(out)))
    timing, versions = info.data["timing"], info.data["versions"]
    console.print(
        f"built {timing['finished_at']} in {timing['run_seconds']:.1f} s (last run) with "
        + ", ".join(f"{name} {v}" for name, v in versions.items())
    )


def summary_table(data: dict[str, Any], title: str = "") -> Table:
    """Counts by outcome (kept, then each rejection reason) as a rich table."""
    counts = data["counts"]
    total = max(counts["candidates"], 1)
    table = Table(title=title or f"{data['name']}: {counts['kept']} of {counts['candidates']} candidates kept")
    table.add_column("outcome")
    table.add_column("images", justify="right")
    table.add_column("share", justify="right")
    table.add_row("kept", str(counts["kept"]), f"{100 * counts['kept'] / total:.1f}%", style="bold green")
    for reason, n in sorted(counts["rejected"].items(), key=lambda item: (-item[1], item[0])):
        table.add_row(reason, str(n), f"{100 * n / total:.1f}%")
    return table


def size_table(manifest: pd.DataFrame) -> Table:
    """Distribution of the kept images' shorter displayed side, their formats and bytes."""
    table = Table(title="kept images")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    if manifest.empty:
        table.add_row("images", "0")
        return table
    short = manifest[["width", "height"]].min(axis=1).astype("int64")
    table.add_row("images", str(len(manifest)))
    table.add_row("shards", str(manifest["shard"].nunique()))
    table.add_row("bytes", f"{int(manifest['bytes'].sum()):,}")
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):  # pandas' linear interpolation: the median is `stats`' median
        table.add_row(f"shorter side, {int(q * 100)}th percentile", f"{short.quantile(q):,.0f}")  # as stats prints it
    formats = manifest["format"].value_counts()
    table.add_row("formats", ", ".join(f"{fmt} {n}" for fmt, n in formats.items()))
    return table
