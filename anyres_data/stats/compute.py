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
  p and the expected training scale E[s] (`anyres_data.sampling.draw.expected_scale` over the HR images).
- `discard`: what a minimum size would throw away — the share of images and of pixels whose shorter
  side is below each candidate minimum (the argument for keeping every image at its own size).
- `buckets`, `bucket_discard`: the aspect-ratio buckets of a diffusion trainer (`anyres_data.sampling.buckets`):
  images per bucket, and the share of images and pixels too small for their bucket at each area budget.

Every function takes the loaded datasets and returns a pandas frame (or a number); `anyres_data.stats.plots`
draws them and `anyres-data stats` (`anyres_data.cli.stats`) prints them as tables.
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

from anyres_data import storage
from anyres_data.dataset.layout import Layout
from anyres_data.sampling.buckets import BucketSettings, count_buckets
from anyres_data.sampling.draw import SamplerSettings, expected_scale

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


def lost_below(short: np.ndarray, pixels: np.ndarray, sides: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        lost, share, pixel_share = lost_below(images["short"].to_numpy(), images["pixels"].to_numpy(), sides)
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
