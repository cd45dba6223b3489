"""The statistics as pictures: the paper's Fig. 4, the minimum-size discard and the aspect-ratio buckets.

`plot_sizes` (Fig. 4: histogram of HR sizes, log-scale counts, and a pie of LR vs HR images, for several sets),
`plot_discard` and `plot_buckets` return matplotlib figures (Agg canvas, no pyplot state) and save
them when given a path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatter

from anyres_data.sampling.buckets import BucketSettings
from anyres_data.stats.compute import MIN_SIDES, DatasetStats, bucket_discard, buckets, lost_below


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # render with Agg, whatever backend pyplot (if anyone) uses
    return figure


def _save(figure: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        with fsspec.open(str(path), "wb") as f:
            figure.savefig(f, format=Path(str(path)).suffix.lstrip(".") or "png", dpi=120)
    return figure


def _percent_over_sides(ax, ticks: Sequence[int], *, xlabel: str, ylabel: str, title: str) -> None:
    """A percentage (0–100) over sides on a log2 axis, the candidate sides marked as ticks."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ticks), [str(t) for t in ticks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.set_title(title)


def plot_sizes(datasets: Sequence[DatasetStats], path: str | Path | None = None, *, bins: int = 40) -> Figure:
    """The paper's Fig. 4: a histogram of the HR images' shorter sides (log-scale counts), a pie of LR vs HR
    (only when there are several datasets with images).

    With no HR set, the histogram shows every image. Saved to `path` (PNG, PDF, SVG by suffix) when given.
    """
    counts = [(f"{d.name} ({d.role.upper()})", len(d.images)) for d in datasets if len(d.images)]
    with_pie = len(counts) > 1  # a single dataset's pie would be one 100% slice
    figure = _figure(11 if with_pie else 7.5, 4)
    hist_ax, pie_ax = figure.subplots(1, 2, width_ratios=[2.2, 1]) if with_pie else (figure.subplots(), None)
    shown = [d for d in datasets if d.role == "hr" and len(d.images)] or [d for d in datasets if len(d.images)]
    if shown:
        sides = np.concatenate([d.short for d in shown])
        edges = np.linspace(sides.min(), sides.max() + 1, bins + 1)
        hist_ax.hist([d.short for d in shown], bins=edges, stacked=True, label=[d.name for d in shown], log=True)
        if len(shown) > 1:
            hist_ax.legend()
    hist_ax.set_xlabel("shorter side (px)")
    hist_ax.set_ylabel("images (log scale)")
    hist_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))  # 10,000 rather than 10⁴
    hist_ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))  # 2, 3, 6 within a decade
    hist_ax.set_title("HR image sizes" if any(d.role == "hr" for d in shown) else "image sizes")
    if with_pie:
        labels, sizes = zip(*counts, strict=True)
        pie_ax.pie(sizes, labels=labels, autopct=lambda pct: f"{pct:.1f}%", startangle=90, counterclock=False)
        pie_ax.set_title("images: LR vs HR")
    return _save(figure, path)


def plot_discard(
    datasets: Sequence[DatasetStats], path: str | Path | None = None, *, min_sides: Sequence[int] = MIN_SIDES
) -> Figure:
    """Share of images (solid) and of pixels (dashed) a minimum shorter side would discard, over every side.

    One pair of curves per dataset (and for all of them together when there are several); the
    candidate minimums `min_sides` are marked. Saved to `path` when given.
    """
    figure = _figure(8, 4.5)
    ax = figure.subplots()
    groups = [(d.name, d.images) for d in datasets if len(d.images)]
    if len(groups) > 1:
        groups.append(("all", pd.concat([images[["short", "pixels"]] for _, images in groups], ignore_index=True)))
    everything = np.concatenate([images["short"].to_numpy() for _, images in groups] or [np.ones(1, np.int64)])
    low, high = max(1, int(everything.min())), max(int(everything.max()) + 1, *min_sides)
    sides = np.unique(np.geomspace(low, high, 400).round().astype(np.int64))
    colours = [f"C{i}" for i in range(10)]
    for i, (name, images) in enumerate(groups):
        _, share, pixel_share = lost_below(images["short"].to_numpy(), images["pixels"].to_numpy(), sides)
        colour = "black" if name == "all" else colours[i % len(colours)]
        ax.plot(sides, 100 * share, color=colour, label=f"{name}: images")
        ax.plot(sides, 100 * pixel_share, color=colour, linestyle="--", label=f"{name}: pixels")
    for side in min_sides:
        ax.axvline(side, color="grey", linestyle=":", linewidth=1)
    _percent_over_sides(
        ax,
        min_sides,
        xlabel="minimum shorter side (px)",
        ylabel="discarded (%)",
        title="what a minimum size would discard",
    )
    if groups:
        ax.legend(fontsize="small")
    return _save(figure, path)


def plot_buckets(
    datasets: Sequence[DatasetStats],
    settings: BucketSettings,
    path: str | Path | None = None,
    *,
    resolutions: Sequence[int] = MIN_SIDES,
) -> Figure:
    """Images per bucket (bars stacked by dataset, buckets by aspect ratio, "too small" last) and the
    share of images a bucketing at each of `resolutions`² would discard. Saved to `path` when given."""
    figure = _figure(12, 4.5)
    hist_ax, lost_ax = figure.subplots(1, 2, width_ratios=[2.6, 1])
    counts = buckets(datasets, settings)
    counts = counts.loc[[*counts.index[:-1][np.argsort(counts["aspect"].to_numpy()[:-1], kind="stable")], "too small"]]
    bottom = np.zeros(len(counts))
    for d in datasets:
        hist_ax.bar(range(len(counts)), counts[d.name].to_numpy(), bottom=bottom, label=d.name)
        bottom += counts[d.name].to_numpy()
    hist_ax.set_xticks(range(len(counts)), list(counts.index), rotation=90, fontsize="small")
    hist_ax.set_ylabel("images")
    hist_ax.set_title(f"buckets at {settings.resolution}² (W×H, by aspect ratio)")
    if len(datasets) > 1:
        hist_ax.legend()
    lost = bucket_discard(datasets, settings, resolutions)
    for name, group in lost.groupby("dataset", sort=False):
        colour = "black" if name == "all" else None
        lost_ax.plot(group["resolution"], 100 * group["images_share"], marker="o", color=colour, label=f"{name}")
    _percent_over_sides(
        lost_ax,
        resolutions,
        xlabel="bucket resolution (area = resolution²)",
        ylabel="images too small (%)",
        title="discarded without upscaling",
    )
    lost_ax.legend(fontsize="small")
    return _save(figure, path)
