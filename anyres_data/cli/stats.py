"""`anyres-data stats`: the statistics of datasets (`anyres_data.stats.compute`) as tables, and their plots written."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from anyres_data.cli.errors import user_errors
from anyres_data.cli.flags import typer_options
from anyres_data.sampling.buckets import BucketSettings
from anyres_data.sampling.draw import SamplerSettings
from anyres_data.settings import from_dict, merge
from anyres_data.stats.compute import (
    MIN_SIDES,
    DatasetStats,
    breakdown,
    bucket_discard,
    buckets,
    discard,
    load_all,
    summary,
    table1,
)
from anyres_data.stats.plots import plot_buckets, plot_discard, plot_sizes


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def _mp(value: float | None) -> str:
    return _num(value, 2 if value is None or pd.isna(value) or value >= 0.1 else 3)


def _size(n: float | None) -> str:
    if n is None or pd.isna(n):
        return "—"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def _shares(counts: pd.Series, top: int) -> str:
    counts = counts[counts > 0]
    if counts.empty:
        return "—"
    total = counts.sum()
    parts = [f"{k} {100 * v / total:.0f}%" for k, v in counts.head(top).items()]
    if len(counts) > top:
        parts.append(f"+{len(counts) - top} more")
    return ", ".join(parts)


def rich_tables(
    datasets: Sequence[DatasetStats],
    sampler: SamplerSettings,
    *,
    min_sides: Sequence[int] = MIN_SIDES,
    top: int = 4,
    bucket_settings: BucketSettings | None = None,
) -> list[Table]:
    """The statistics as rich tables: the datasets (one column each), Table 1, the minimum-size discard,
    and with `bucket_settings` the bucket histogram and what each area budget (`min_sides`) would discard."""
    frame = summary(datasets)
    by = {what: breakdown(datasets, what) for what in ("format", "license", "reason")}
    overview = Table(title="datasets (sides: the shorter side, px)")
    overview.add_column("")
    for name in frame.index:
        overview.add_column(name, justify="right")

    def add(label: str, cells: list[str]) -> None:
        overview.add_row(label, *cells)

    rows = [frame.loc[name] for name in frame.index]
    add("role", [r["role"] for r in rows])
    add("images", [f"{r['images']:,}" for r in rows])
    add("rejected", [f"{r['rejected']:,} of {r['candidates']:,}" for r in rows])
    add(
        "side min / median / max",
        [" / ".join(_num(r[c]) for c in ("short_min", "short_median", "short_max")) for r in rows],
    )
    add(
        "megapixels min / median / max",
        [" / ".join(_mp(r[c]) for c in ("mp_min", "mp_median", "mp_max")) for r in rows],
    )
    add("megapixels in all", [_num(r["megapixels"], 1) for r in rows])
    add("stored", [_size(r["bytes"]) for r in rows])
    add("resized", [_num(None if pd.isna(r["resized"]) else r["resized"]) for r in rows])
    add("formats", [_shares(by["format"][name], top) for name in frame.index])
    add("licenses", [_shares(by["license"][name], top) for name in frame.index])
    add("rejected by reason", [_shares(by["reason"][name], top) for name in frame.index])

    row = table1(datasets, sampler).to_dict("records")[0]
    paper = Table(title=f"the paper's Table 1 ({_sampler_text(sampler)})")
    for column in ("# LR", "# HR", "LR side", "HR min", "HR median", "HR max", "p", escape("E[s]")):
        paper.add_column(column, justify="right")
    cells = [row[c] for c in ("lr_images", "hr_images", "lr_side", "hr_min", "hr_median", "hr_max", "p")]
    paper.add_row(*(_num(v) for v in cells), _num(row["expected_scale"]))

    title = "a minimum shorter side would discard (images / pixels)"
    cut = _lost_table(discard(datasets, min_sides), "min_side", label="min side", title=title)
    if bucket_settings is None:
        return [overview, paper, cut]
    return [overview, paper, cut, *_bucket_tables(datasets, bucket_settings, min_sides)]


def _bucket_tables(datasets: Sequence[DatasetStats], settings: BucketSettings, resolutions: Sequence[int]):
    counts = buckets(datasets, settings)
    names = [d.name for d in datasets]
    histogram = Table(
        title=f"buckets at {settings.resolution}²",
        caption=f"step {settings.step}, sides {settings.lowest_side}–{settings.highest_side}, nearest "
        f"{settings.assign.replace('_', ' ')}; too small: {'upscaled' if settings.upscale else 'skipped'}",
    )
    for column in ("bucket", "aspect", *names):
        histogram.add_column(column, justify="right")
    by_aspect = [*counts.index[:-1][np.argsort(counts["aspect"].to_numpy()[:-1], kind="stable")], "too small"]
    for label, row in counts.loc[by_aspect].iterrows():
        if label == "too small" or row[names].sum() > 0:
            aspect = "" if label == "too small" else f"{row['aspect']:.2f}"
            histogram.add_row(str(label), aspect, *(f"{int(row[n]):,}" for n in names))
    lost = bucket_discard(datasets, settings, resolutions)
    title, caption = "buckets at resolution² would discard", "images / pixels, no upscaling"
    return [histogram, _lost_table(lost, "resolution", label="resolution", title=title, caption=caption)]


def _lost_table(lost: pd.DataFrame, by: str, *, label: str, title: str, caption: str | None = None) -> Table:
    """A discard frame (dataset, `by`, images_share, pixels_share) as a table: a row per `by`, a column per dataset."""
    table = Table(title=title, caption=caption)
    table.add_column(label, justify="right")
    names = list(dict.fromkeys(lost["dataset"]))
    for name in names:
        table.add_column(name, justify="right")
    for value, group in lost.groupby(by, sort=True):
        at = group.set_index("dataset")
        cells = [f"{at.at[n, 'images_share']:.1%} / {at.at[n, 'pixels_share']:.1%}" for n in names]
        table.add_row(f"{value:,}", *cells)
    return table


def _sampler_text(sampler: SamplerSettings) -> str:
    return (
        f"p={sampler.p}, s in [{sampler.lowest_s:g}, {'m' if sampler.s_max is None else f'{sampler.s_max:g}'}] "
        f"{sampler.size_distribution}, global_prob={sampler.global_prob:g}"
    )


def _bucket_help(name: str) -> str:
    """The help of a BucketSettings field, with its default: written once, in the settings class."""
    field = next(f for f in dataclasses.fields(BucketSettings) if f.name == name)
    return f"With --buckets: {field.metadata['help']} (default: {field.default})"


def _stats(
    sampler: SamplerSettings,
    datasets: list[str] = typer.Argument(
        None, help="Dataset folders (OUT) or manifest .parquet files; LR or HR decided by size (see --lr-max-side)."
    ),
    lr: list[str] = typer.Option([], "--lr", help="A dataset that is an LR set (repeatable)."),
    hr: list[str] = typer.Option([], "--hr", help="A dataset that is an HR set whatever its sizes (repeatable)."),
    lr_max_side: int | None = typer.Option(
        None, "--lr-max-side", help="DATASETS whose shorter sides are all ≤ this are LR sets (default: p)."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Write the paper's Fig. 4 view here (PNG, PDF or SVG)."),
    discard_plot: Path | None = typer.Option(
        None, "--discard-plot", help="Write the minimum-size discard curves here (PNG, PDF or SVG)."
    ),
    min_sides: str = typer.Option(
        ",".join(map(str, MIN_SIDES)), "--min-sides", help="Candidate minimum shorter sides, comma-separated."
    ),
    top: int = typer.Option(4, "--top", help="Formats, licenses and reasons listed per dataset."),
    bucket_resolution: int | None = typer.Option(
        None, "--buckets", help="Show aspect-ratio buckets at this resolution (area budget resolution²), e.g. 1024."
    ),
    bucket_step: int | None = typer.Option(None, "--bucket-step", help=_bucket_help("step")),
    bucket_min_side: int | None = typer.Option(None, "--bucket-min-side", help=_bucket_help("min_side")),
    bucket_max_side: int | None = typer.Option(None, "--bucket-max-side", help=_bucket_help("max_side")),
    bucket_assign: str | None = typer.Option(None, "--bucket-assign", help=_bucket_help("assign")),
    bucket_upscale: bool = typer.Option(False, "--bucket-upscale", help=_bucket_help("upscale")),
    bucket_plot: Path | None = typer.Option(
        None, "--bucket-plot", help="With --buckets: write the bucket histogram and discard curve here."
    ),
) -> None:
    """Statistics of datasets from their manifests: sizes, formats, licenses, rejections, expected scale, plots."""
    with user_errors():
        sides = [int(v) for v in min_sides.split(",") if v.strip().isdigit()]
        if len(sides) != len([v for v in min_sides.split(",") if v.strip()]) or not sides or min(sides) < 1:
            raise ValueError(f"--min-sides: give positive integers separated by commas, got {min_sides!r}")
        loaded = load_all(hr, lr=lr, auto=datasets or [], lr_max_side=sampler.p if lr_max_side is None else lr_max_side)
        given = {
            "resolution": bucket_resolution,
            "step": bucket_step,
            "min_side": bucket_min_side,
            "max_side": bucket_max_side,
            "assign": bucket_assign,
            "upscale": bucket_upscale or None,
        }
        if bucket_resolution is None and (bucket_plot or any(v is not None for v in given.values())):
            raise ValueError("the --bucket-* options need --buckets RESOLUTION")
        bucketing = None if bucket_resolution is None else from_dict(BucketSettings, merge({}, given))
        if bucketing is not None:
            bucket_discard(loaded, bucketing, sides)  # every area budget must give buckets: fail here, not halfway
    console = Console()
    for table in rich_tables(loaded, sampler, min_sides=sides, top=top, bucket_settings=bucketing):
        console.print(table)
    if plot is not None:
        plot_sizes(loaded, plot)
        console.print(f"wrote {plot}")
    if discard_plot is not None:
        plot_discard(loaded, discard_plot, min_sides=sides)
        console.print(f"wrote {discard_plot}")
    if bucket_plot is not None and bucketing is not None:
        plot_buckets(loaded, bucketing, bucket_plot, resolutions=sides)
        console.print(f"wrote {bucket_plot}")


stats_command = typer_options(SamplerSettings, _stats)
