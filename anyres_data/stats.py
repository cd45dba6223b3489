"""Look at datasets before training on them: sizes, formats, licenses, rejections; the paper's Fig. 4 and Table 1.

Everything is computed from the manifests (`manifest.parquet`, a few columns of it) and the counts
in `dataset.json`: no shard is opened, so a 1,000,000-image dataset takes seconds. A dataset is an
LR set (a fixed-size, low-resolution set that gives only global samples) or an HR set (images of
many sizes that give patches): say which with `role=`, or let the sizes decide — a set whose every
image has a shorter side ≤ `lr_max_side` (by default the patch size p) cannot give a patch above
scale 1, so it is LR.

- `summary`, `breakdown`: per-dataset counts, shorter side and megapixels (min / median / max),
  bytes, and counts by format, license and rejection reason.
- `table1`: the paper's Table 1 row — LR and HR image counts, LR resolution, HR min / median / max,
  p and the expected training scale E[s] (`anyres_data.sampling.expected_scale` over the HR images).
- `discard`: what a minimum size would throw away — the share of images and of pixels whose shorter
  side is below each candidate minimum (the argument for keeping every image at its own size).
- `buckets`, `bucket_discard`: the aspect-ratio buckets of a diffusion trainer (`anyres_data.buckets`):
  images per bucket, and the share of images and pixels too small for their bucket at each area budget.
- `plot_sizes` (Fig. 4: histogram of HR sizes, log-scale counts, and a pie of LR vs HR images, for several sets),
  `plot_discard` and `plot_buckets` return matplotlib figures (Agg canvas, no pyplot state) and save
  them when given a path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import typer
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatter
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from anyres_data import storage
from anyres_data.buckets import BucketSettings, count_buckets
from anyres_data.dataset import Layout
from anyres_data.sampling import SamplerSettings, expected_scale
from anyres_data.settings import from_dict, merge, typer_options

MIN_SIDES = (256, 512, 1024, 2048)
Role = Literal["lr", "hr"]
_SIZE_COLUMNS = ("width", "height")
_OPTIONAL_COLUMNS = ("format", "license", "bytes", "original_width", "original_height")


@dataclass(frozen=True)
class DatasetStats:
    """What the manifest says about one dataset.

    `images` has one row per kept image: `width`, `height` (int64, as displayed), `short` (the
    shorter side), `pixels` (int64) and, when the manifest has them, `format`, `license`, `bytes`
    and `resized` (size differs from `original_width`/`original_height`). `rejected` counts the
    rejected candidates by reason (from dataset.json; empty for a bare manifest).
    """

    name: str
    out: str
    role: Role
    images: pd.DataFrame
    candidates: int
    rejected: dict[str, int]

    @property
    def short(self) -> np.ndarray:
        return self.images["short"].to_numpy()


def _manifest_url(path: str) -> tuple[str, str]:
    """(manifest URL, dataset.json URL or "") for a dataset folder or a manifest .parquet file."""
    if path.endswith(".parquet"):
        return storage.full_url(path), ""
    layout = Layout.at(path)
    if not storage.exists(layout.manifest):
        hint = " (an unfinished build: rerun it with --resume)" if storage.exists(layout.work) else ""
        raise ValueError(f"{path}: no manifest.parquet, so not a dataset built by anyres-data build{hint}")
    return layout.manifest, layout.dataset_json if storage.exists(layout.dataset_json) else ""


def load_stats(path: str, *, role: Role | None = None, lr_max_side: int = 256) -> DatasetStats:
    """Read what the statistics need from a dataset folder (or a manifest .parquet file).

    Only the size, format, license and bytes columns of the manifest are read. `role` None decides
    by size: LR when every shorter side is ≤ `lr_max_side` (and there is at least one image).
    Raises ValueError when `path` holds no manifest or the manifest has no width/height.
    """
    manifest_url, info_url = _manifest_url(path)
    with fsspec.open(manifest_url, "rb") as f:
        present = set(pq.read_schema(f).names)
    missing = [c for c in _SIZE_COLUMNS if c not in present]
    if missing:
        raise ValueError(f"{manifest_url}: no {', '.join(missing)} column; is it an image manifest?")
    columns = [*_SIZE_COLUMNS, *(c for c in _OPTIONAL_COLUMNS if c in present)]
    frame = storage.read_parquet(manifest_url, columns=columns)
    images = pd.DataFrame(
        {
            "width": frame["width"].to_numpy(dtype=np.int64, na_value=0),
            "height": frame["height"].to_numpy(dtype=np.int64, na_value=0),
        }
    )
    images["short"] = np.minimum(images["width"].to_numpy(), images["height"].to_numpy())
    images["pixels"] = images["width"] * images["height"]
    for name in ("format", "license"):
        if name in frame:
            images[name] = frame[name].fillna("unknown").to_numpy()
    if "bytes" in frame:
        images["bytes"] = frame["bytes"].to_numpy(dtype=np.int64, na_value=0)
    if "original_width" in frame and "original_height" in frame:
        images["resized"] = (frame["original_width"].to_numpy(dtype=np.int64, na_value=0) != images["width"]) | (
            frame["original_height"].to_numpy(dtype=np.int64, na_value=0) != images["height"]
        )
    name, candidates, rejected = Path(manifest_url.rstrip("/")).parent.name, len(images), {}
    if info_url:
        info = storage.read_json(info_url)
        name = info.get("name") or name
        candidates = int(info["counts"]["candidates"])
        rejected = {str(k): int(v) for k, v in info["counts"]["rejected"].items()}
    if role is None:
        role = "lr" if len(images) and int(images["short"].max()) <= lr_max_side else "hr"
    return DatasetStats(name=name, out=path, role=role, images=images, candidates=candidates, rejected=rejected)


def load_all(
    hr: Sequence[str] = (), *, lr: Sequence[str] = (), auto: Sequence[str] = (), lr_max_side: int = 256
) -> list[DatasetStats]:
    """Load several datasets: `hr` and `lr` with their role given, `auto` with the role decided by size.

    Names are made unique (a second "hr" becomes "hr#2"). Raises ValueError when none is given.
    """
    paths = [(p, "hr") for p in hr] + [(p, "lr") for p in lr] + [(p, None) for p in auto]
    if not paths:
        raise ValueError("give at least one dataset folder (or manifest .parquet)")
    datasets, seen = [], {}
    for path, role in paths:
        stats = load_stats(path, role=role, lr_max_side=lr_max_side)
        seen[stats.name] = seen.get(stats.name, 0) + 1
        if seen[stats.name] > 1:
            stats = dataclasses.replace(stats, name=f"{stats.name}#{seen[stats.name]}")
        datasets.append(stats)
    return datasets


# ---------------------------------------------------------------------------------------------- tables


def summary(datasets: Sequence[DatasetStats]) -> pd.DataFrame:
    """One row per dataset: role, counts, shorter side and megapixels (min / median / max), bytes, resized."""
    rows = []
    for d in datasets:
        short, mp = d.images["short"], d.images["pixels"] / 1e6
        empty = d.images.empty
        rows.append(
            {
                "dataset": d.name,
                "role": d.role.upper(),
                "images": len(d.images),
                "candidates": d.candidates,
                "rejected": sum(d.rejected.values()),
                "short_min": None if empty else int(short.min()),
                "short_median": None if empty else float(short.median()),
                "short_max": None if empty else int(short.max()),
                "mp_min": None if empty else float(mp.min()),
                "mp_median": None if empty else float(mp.median()),
                "mp_max": None if empty else float(mp.max()),
                "megapixels": float(mp.sum()),
                "bytes": int(d.images["bytes"].sum()) if "bytes" in d.images else None,
                "resized": int(d.images["resized"].sum()) if "resized" in d.images else None,
            }
        )
    return pd.DataFrame(rows).set_index("dataset")


def breakdown(datasets: Sequence[DatasetStats], what: Literal["format", "license", "reason"]) -> pd.DataFrame:
    """Counts by format, license or rejection reason: one column per dataset, most frequent first."""
    columns = {}
    for d in datasets:
        if what == "reason":
            columns[d.name] = pd.Series(d.rejected, dtype="int64")
        elif what in d.images:
            columns[d.name] = d.images[what].value_counts()
        else:
            columns[d.name] = pd.Series(dtype="int64")
    table = pd.DataFrame(columns).fillna(0).astype("int64")
    return table.loc[table.sum(axis=1).sort_values(ascending=False, kind="stable").index]


def training_scale(datasets: Sequence[DatasetStats], sampler: SamplerSettings) -> float | None:
    """E[s] for training with these datasets and sampler settings, or None when no HR image gives a patch.

    Patches come from the HR sets (global samples count as s = p), as the loader draws them.
    """
    hr = [d.images for d in datasets if d.role == "hr"]
    if not hr:
        return float(sampler.p) if sampler.global_prob == 1 else None
    images = pd.concat(hr, ignore_index=True) if len(hr) > 1 else hr[0]
    try:
        return expected_scale(widths=images["width"].to_numpy(), heights=images["height"].to_numpy(), settings=sampler)
    except ValueError:  # no HR image has a shorter side ≥ p
        return None


def table1(datasets: Sequence[DatasetStats], sampler: SamplerSettings) -> pd.DataFrame:
    """The paper's Table 1 row: # LR and HR images, LR side, HR min / median / max side, p, E[s].

    Sides are shorter sides in pixels; the LR side is the LR images' median.
    """
    lr = np.concatenate([d.short for d in datasets if d.role == "lr"] or [np.zeros(0, np.int64)])
    hr = np.concatenate([d.short for d in datasets if d.role == "hr"] or [np.zeros(0, np.int64)])
    row = {
        "lr_images": len(lr),
        "hr_images": len(hr),
        "lr_side": float(np.median(lr)) if len(lr) else None,
        "hr_min": int(hr.min()) if len(hr) else None,
        "hr_median": float(np.median(hr)) if len(hr) else None,
        "hr_max": int(hr.max()) if len(hr) else None,
        "p": sampler.p,
        "expected_scale": training_scale(datasets, sampler),
    }
    return pd.DataFrame([row])


def _lost(short: np.ndarray, pixels: np.ndarray, sides: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images lost, share of images lost, share of pixels lost) for each minimum side in `sides`."""
    order = np.argsort(short, kind="stable")
    sorted_short = short[order]
    cumulative = np.concatenate([[0], np.cumsum(pixels[order], dtype=np.float64)])
    lost = np.searchsorted(sorted_short, sides, side="left")  # images with a shorter side below the minimum
    n, total = max(len(short), 1), max(cumulative[-1], 1.0)
    return lost, lost / n, cumulative[lost] / total


def discard(datasets: Sequence[DatasetStats], min_sides: Sequence[int] = MIN_SIDES) -> pd.DataFrame:
    """What requiring a shorter side ≥ each of `min_sides` would discard, per dataset (and "all" for several).

    Columns: dataset, min_side, images_lost, images_share, pixels_share (shares in [0, 1]).
    """
    sides = np.asarray(min_sides, dtype=np.int64)
    groups = [(d.name, d.images) for d in datasets]
    if len(datasets) > 1:
        groups.append(("all", pd.concat([d.images[["short", "pixels"]] for d in datasets], ignore_index=True)))
    rows = []
    for name, images in groups:
        lost, share, pixel_share = _lost(images["short"].to_numpy(), images["pixels"].to_numpy(), sides)
        for side, n, s, ps in zip(sides, lost, share, pixel_share, strict=True):
            rows.append(
                {
                    "dataset": name,
                    "min_side": int(side),
                    "images_lost": int(n),
                    "images_share": float(s),
                    "pixels_share": float(ps),
                }
            )
    return pd.DataFrame(rows)


def buckets(datasets: Sequence[DatasetStats], settings: BucketSettings) -> pd.DataFrame:
    """Images per bucket, one column per dataset: index "W×H", columns width, height, aspect, then counts.

    The last row, "too small", counts the images smaller than their bucket (skipped unless upscale).
    """
    table = None
    for d in datasets:
        counts = count_buckets(d.images["width"].to_numpy(), d.images["height"].to_numpy(), settings)
        if table is None:
            table = pd.DataFrame(
                {
                    "width": [b.width for b in counts.sizes] + [0],
                    "height": [b.height for b in counts.sizes] + [0],
                    "aspect": [b.width / b.height for b in counts.sizes] + [np.nan],
                },
                index=[f"{b.width}×{b.height}" for b in counts.sizes] + ["too small"],
            )
        table[d.name] = np.append(counts.counts, counts.too_small)
    assert table is not None, "no dataset"
    return table


def bucket_discard(
    datasets: Sequence[DatasetStats], settings: BucketSettings, resolutions: Sequence[int] = MIN_SIDES
) -> pd.DataFrame:
    """What bucketing at each area budget resolution² (no upscaling) would discard, per dataset (and "all").

    Bucket sides follow the resolution when `settings` leaves min_side/max_side to their defaults.
    Columns: dataset, resolution, images_lost, images_share, pixels_share (shares in [0, 1]).
    """
    groups = [(d.name, d.images) for d in datasets]
    if len(datasets) > 1:
        groups.append(("all", pd.concat([d.images[["width", "height", "pixels"]] for d in datasets])))
    rows = []
    for resolution in resolutions:
        at = dataclasses.replace(settings, resolution=int(resolution), upscale=False)
        for name, images in groups:
            counts = count_buckets(images["width"].to_numpy(), images["height"].to_numpy(), at)
            pixels = images["pixels"].to_numpy()
            lost_pixels = float(pixels[counts.index < 0].sum()) if len(pixels) else 0.0
            rows.append(
                {
                    "dataset": name,
                    "resolution": int(resolution),
                    "images_lost": counts.too_small,
                    "images_share": counts.too_small / max(len(images), 1),
                    "pixels_share": lost_pixels / max(float(pixels.sum()), 1.0),
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- rich tables


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


# ---------------------------------------------------------------------------------------------- plots


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
        _, share, pixel_share = _lost(images["short"].to_numpy(), images["pixels"].to_numpy(), sides)
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


# ---------------------------------------------------------------------------------------------- command


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
    console = Console()
    try:
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
    except ValueError as err:
        console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(2) from None
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
