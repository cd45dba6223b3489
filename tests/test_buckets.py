"""Aspect-ratio buckets: the kohya-ss bucket set and rule, the bucketed image against Pillow, the loader, stats.

The reference for a bucketed image is Pillow's `resize((W, H), LANCZOS, box=placement.box)` of the
whole decoded, EXIF-transposed original (what "resize to cover, then crop" computes); PSNR ≥ 40 dB
away from a 4-pixel border is the bar, and the same image compared with a crop shifted by a few
pixels must fail it.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image, ImageOps
from typer.testing import CliRunner

from anyres_data.cli.app import app
from anyres_data.dataset import read_manifest
from anyres_data.probe import read_header
from anyres_data.sampling import ImageTooSmall
from anyres_data.sampling.bucket_loader import BucketBatch, make_bucket_loader
from anyres_data.sampling.buckets import (
    Bucket,
    BucketSettings,
    BucketTable,
    Placement,
    assign_buckets,
    bucket_shrink,
    bucket_sizes,
    count_buckets,
    cut_bucket,
    place,
    resized_size,
)
from anyres_data.sampling.loader import LoaderSettings
from anyres_data.stats import compute as stats
from anyres_data.stats import plots as stats_plots
from tests.support.manifests import synthetic_manifest, write_manifest_dataset
from tests.support.photos import encode, jpeg_with_orientation, structured_image
from tests.support.tiny_data import build_demo

BAR_DB = 40.0
BORDER = 4
SMALL = BucketSettings(resolution=96, step=16)  # buckets of ~96² for tiny test images


def kohya_resolutions(max_area: int, min_size: int, max_size: int, divisible: int) -> list[tuple[int, int]]:
    """kohya-ss sd-scripts' `make_bucket_resolutions` (library/model_util.py), transcribed."""
    resos = {(int(math.sqrt(max_area) // divisible) * divisible,) * 2}
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)


def psnr(a: np.ndarray, b: np.ndarray, border: int = BORDER) -> float:
    a = a[border:-border, border:-border].astype(np.float64)
    b = b[border:-border, border:-border].astype(np.float64)
    return 10 * np.log10(255**2 / max(float(np.mean((a - b) ** 2)), 1e-12))


def pillow_reference(data: bytes, placement: Placement) -> np.ndarray:
    """The common approach: decode the whole image, EXIF-transpose, Lanczos over the crop's box."""
    full = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    return np.asarray(full.resize(tuple(placement.target), Image.Resampling.LANCZOS, box=placement.box))


# ---------------------------------------------------------------------------------------------- the bucket set


@pytest.mark.parametrize(
    "settings",
    [BucketSettings(), BucketSettings(resolution=512, min_side=256, max_side=1024), SMALL],
    ids=["1024", "512-kohya-defaults", "96-step16"],
)
def test_bucket_set_is_kohyas(settings):
    sizes = bucket_sizes(settings)
    area = settings.resolution**2
    expected = kohya_resolutions(area, settings.lowest_side, settings.highest_side, settings.step)
    assert [tuple(b) for b in sizes] == expected
    for w, h in sizes:
        assert w % settings.step == 0 and h % settings.step == 0 and w * h <= area
        assert settings.lowest_side <= min(w, h) and max(w, h) <= settings.highest_side
        assert (h, w) in sizes  # portrait and landscape alike
    assert Bucket(settings.resolution, settings.resolution) in sizes


def test_defaults_are_sdxls_range():
    sizes = bucket_sizes(BucketSettings())
    assert (512, 2048) in sizes and (1024, 1024) in sizes and (2048, 512) in sizes and len(sizes) == 33
    assert BucketSettings(resolution=256).lowest_side == 128 and BucketSettings(resolution=256).highest_side == 512


def test_bad_settings_say_what_to_change():
    with pytest.raises(ValueError, match="resolution ≥ step"):
        BucketSettings(resolution=32, step=64)
    with pytest.raises(ValueError, match="min_side"):
        BucketSettings(min_side=2048, max_side=1024)
    with pytest.raises(ValueError, match="headroom must be ≥ 1"):
        BucketSettings(headroom=0.5)
    with pytest.raises(ValueError, match="exceeds the area budget"):
        BucketSettings(resolution=256, min_side=512, max_side=1024)


# ---------------------------------------------------------------------------------------------- assignment


@pytest.mark.parametrize("rule", ["aspect", "log_aspect"])
def test_assignment_is_the_nearest_aspect_ratio(rule):
    settings = BucketSettings(assign=rule, upscale=True)
    sizes = bucket_sizes(settings)
    rng = np.random.default_rng(0)
    widths = rng.integers(100, 9000, 20000)
    heights = rng.integers(100, 9000, 20000)
    got = assign_buckets(widths, heights, settings)
    ratios = np.array([w / h for w, h in sizes])
    if rule == "aspect":  # kohya's select_bucket: argmin |ratio error| over the sorted list
        expected = np.abs(ratios[None, :] - (widths / heights)[:, None]).argmin(axis=1)
    else:
        expected = np.abs(np.log(ratios)[None, :] - np.log(widths / heights)[:, None]).argmin(axis=1)
    assert np.array_equal(got, expected)


def test_an_image_of_a_buckets_size_goes_to_that_bucket():
    settings = BucketSettings()
    sizes = bucket_sizes(settings)
    got = assign_buckets(np.array([b.width for b in sizes]), np.array([b.height for b in sizes]), settings)
    assert list(got) == list(range(len(sizes)))


def test_images_smaller_than_their_bucket_are_skipped_unless_upscaled():
    table = BucketTable(BucketSettings())
    widths, heights = np.array([1024, 1023, 4000, 640, 1216]), np.array([1024, 1024, 3000, 480, 832])
    assert list(table.assign(widths, heights)) == [16, -1, 18, -1, 19]
    counts = count_buckets(widths, heights, BucketSettings())
    assert counts.too_small == 2 and counts.counts.sum() == 3 and counts.total == 5
    with pytest.raises(ImageTooSmall, match="smaller than its bucket 1024×1024"):
        place(width=1023, height=1024, table=table, rng=None)
    up = BucketTable(BucketSettings(upscale=True))
    assert list(up.assign(widths, heights)) == [16, 16, 18, 18, 19]


def test_placement_covers_the_bucket_and_crops_inside():
    table = BucketTable(BucketSettings())
    rng = np.random.default_rng(1)
    for width, height in [(4000, 3000), (3000, 4000), (1024, 1024), (12000, 8000), (5000, 700), (1300, 1000)]:
        centre = place(width=width, height=height, table=BucketTable(BucketSettings(crop="centre")), rng=None)
        (rw, rh), (bw, bh) = centre.resized, centre.target
        assert rw >= bw and rh >= bh and (rw == bw or rh == bh)  # covers, exactly on one side
        assert centre.crop == ((rw - bw) // 2, (rh - bh) // 2)
        for _ in range(20):
            drawn = place(width=width, height=height, table=table, rng=rng)
            left, top = drawn.crop
            assert 0 <= left <= rw - bw and 0 <= top <= rh - bh
            l, t, r, b = drawn.box
            assert 0 <= l < r <= width + 1e-9 and 0 <= t < b <= height + 1e-9
    with pytest.raises(ValueError, match="needs an rng"):
        place(width=4000, height=3000, table=table, rng=None)


# ---------------------------------------------------------------------------------------------- exactness


def _jpeg(width: int, height: int, *, orientation: int = 1, seed: int = 0, **options) -> bytes:
    return jpeg_with_orientation(structured_image(width, height, seed=seed), orientation, quality=90, **options)


CASES = {
    # name: (encoded bytes, expected shrink-on-load factor at resolution 96 (48 for shrink 8))
    "baseline, between 1× and 2× the bucket": (_jpeg(150, 100, seed=1), 1),
    "baseline, shrink 2": (_jpeg(640, 480, seed=2), 2),
    "baseline, shrink 8": (_jpeg(1600, 1200, seed=3), 8),
    "progressive, shrink 4": (_jpeg(1280, 960, seed=4, progressive=True), 4),
    "odd sizes: no shrink": (_jpeg(641, 483, seed=5), 1),
    "PNG": (encode(structured_image(300, 220, seed=6), "PNG"), 1),
    **{
        f"EXIF orientation {o}": (_jpeg(480 if o < 5 else 640, 640 if o < 5 else 480, orientation=o, seed=10 + o), 2)
        for o in range(2, 9)
    },
}


@pytest.mark.parametrize("name", list(CASES))
def test_bucketed_image_equals_pillow_resize_of_the_full_decode(name):
    data, shrink = CASES[name]
    header = read_header(data)
    rng = np.random.default_rng(0)
    for crop in ("random", "centre", "random"):
        table = BucketTable(BucketSettings(resolution=48 if shrink == 8 else 96, step=16, crop=crop))
        placement = place(width=header.width, height=header.height, table=table, rng=rng)
        (rw, rh), (w, h) = placement.resized, placement.original
        assert bucket_shrink(header, min(w / rw, h / rh)) == shrink
        got = cut_bucket(data, placement, header=header)
        assert got.shape == (placement.target.height, placement.target.width, 3) and got.dtype == np.uint8
        reference = pillow_reference(data, placement)
        assert psnr(got, reference) >= BAR_DB, (name, placement)
        # a crop misplaced by 2 px (across) or 3 px (down) is what the bar must catch
        assert psnr(got[:, 2:], reference[:, :-2]) < BAR_DB and psnr(got[3:], reference[:-3]) < BAR_DB


TRADE_DB = 36.0  # headroom < 2 is an opt-in trade of accuracy for speed: 39 dB measured on this fine-grained image


@pytest.mark.parametrize("progressive", [False, True])
def test_a_smaller_headroom_shrinks_on_load_sooner_at_a_known_cost(progressive):
    data = _jpeg(640, 480, seed=30 + progressive, progressive=progressive)
    table = BucketTable(BucketSettings(resolution=160, step=16, headroom=1.5, crop="centre"))
    placement = place(width=640, height=480, table=table, rng=None)
    f = 640 / placement.resized[0]
    header = read_header(data)
    assert 3 <= f < 5 and bucket_shrink(header, f) == 1 and bucket_shrink(header, f, headroom=1.5) == 2
    got = cut_bucket(data, placement, headroom=1.5)
    reference = pillow_reference(data, placement)
    assert psnr(got, reference) >= TRADE_DB
    assert psnr(got[:, 2:], reference[:, :-2]) < TRADE_DB


def test_upscaling_when_asked_matches_pillow_bicubic():
    data = _jpeg(120, 70, seed=20)
    table = BucketTable(BucketSettings(resolution=128, step=16, upscale=True, crop="centre"))
    placement = place(width=120, height=70, table=table, rng=None)
    assert placement.resized[0] > 120  # really upscaled
    got = cut_bucket(data, placement)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    reference = np.asarray(full.resize(tuple(placement.target), Image.Resampling.BICUBIC, box=placement.box))
    assert psnr(got, reference) >= BAR_DB
    assert psnr(got[:, 2:], reference[:, :-2]) < BAR_DB


def test_placement_for_another_size_is_refused():
    data = _jpeg(150, 100)
    placement = place(width=300, height=200, table=BucketTable(SMALL), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="placement for 300×200"):
        cut_bucket(data, placement)


# ---------------------------------------------------------------------------------------------- the loader


def _sample(key: str, width: int, height: int, *, seed: int, caption: str | None = None) -> dict:
    sample = {"__key__": key, "jpg": _jpeg(width, height, seed=seed), "json": json.dumps({"key": key}).encode()}
    if caption is not None:
        sample["txt"] = caption.encode()
    return sample


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, int]]]:
    """4 shards × 6 good JPEGs of three aspect ratios (some captioned); shard 2 also holds a corrupt,
    an image-less and a too-small sample."""
    out = tmp_path_factory.mktemp("buckets")
    (out / "shards").mkdir()
    sizes = {}
    shapes = [(200, 150), (150, 200), (160, 160)]
    for shard in range(4):
        samples = []
        for i in range(6):
            key = f"b{shard}_{i}"
            width, height = shapes[(shard + i) % 3]
            width, height = width + 8 * i, height + 6 * i
            samples.append(_sample(key, width, height, seed=shard * 10 + i, caption=f"photo {key}" if i % 2 else None))
            sizes[key] = (width, height)
        if shard == 2:
            samples.append({"__key__": "corrupt", "jpg": b"\xff\xd8\xff\xe0 not a jpeg", "json": b"{}"})
            samples.append({"__key__": "no_image", "json": b"{}", "txt": b"caption only"})
            samples.append(_sample("tiny", 40, 30, seed=99))
        with wds.TarWriter(str(out / "shards" / f"b-{shard:06d}.tar")) as sink:
            for sample in samples:
                sink.write(sample)
    return out, sizes


def check_batch(batch: BucketBatch, sizes: dict[str, tuple[int, int]], settings: BucketSettings) -> None:
    b = len(batch.keys)
    assert isinstance(batch, BucketBatch) and batch.images.dtype == torch.uint8
    assert batch.images.shape[:2] == (b, 3)
    height, width = batch.images.shape[2:]
    assert torch.equal(batch.target_sizes, torch.tensor([[height, width]] * b))  # one bucket per batch
    table = BucketTable(settings)
    for key, original, crop in zip(
        batch.keys, batch.original_sizes.tolist(), batch.crop_top_lefts.tolist(), strict=True
    ):
        w, h = sizes[key]
        assert original == [h, w]  # (height, width), as diffusers
        bucket = table.sizes[int(table.assign(np.array([w]), np.array([h]))[0])]
        assert (bucket.width, bucket.height) == (width, height)
        assert min(crop) >= 0
    ids = batch.add_time_ids()
    assert ids.shape == (b, 6) and torch.equal(ids[:, 4:], batch.target_sizes.float())
    values = batch.pixel_values
    assert values.dtype == torch.float32 and float(values.min()) >= -1 and float(values.max()) <= 1


def test_ranks_and_spawned_workers_see_every_sample_once_in_one_bucket_batches(shards):
    root, sizes = shards
    settings = LoaderSettings(hr=str(root), batch_size=2, workers=2, resampled=False, shuffle_buffer=6)
    seen, skipped = [], Counter()
    for rank in range(2):  # rank 1 reads in process: its half of the shards, as one worker (saves two spawns)
        rank_settings = settings if rank == 0 else dataclasses.replace(settings, workers=0)
        loader = make_bucket_loader(rank_settings, SMALL, rank=rank, world_size=2)
        for batch in loader:
            check_batch(batch, sizes, SMALL)
            seen += batch.keys
            for key, caption in zip(batch.keys, batch.captions, strict=True):
                assert caption == (f"photo {key}" if int(key.split("_")[1]) % 2 else None)
        skipped.update(loader.skipped())
    assert sorted(seen) == sorted(sizes)  # every sample exactly once, over ranks and workers
    assert skipped["unreadable"] == 1 and skipped["no_image"] == 1 and skipped["too_small"] == 1


def test_batch_pixels_and_conditioning_agree_with_pillow(shards):
    root, _ = shards
    settings = LoaderSettings(hr=str(root), batch_size=3, workers=0, seed=3, shuffle_buffer=4)
    data = {}
    for url in sorted((root / "shards").glob("*.tar")):
        data.update({s["__key__"]: s["jpg"] for s in wds.WebDataset(str(url), shardshuffle=False) if "jpg" in s})
    for batch in itertools.islice(make_bucket_loader(settings, SMALL), 4):
        for i, key in enumerate(batch.keys):
            (h, w), (top, left), (bh, bw) = (t[i].tolist() for t in batch[1:4])
            target = Bucket(bw, bh)
            placement = Placement(-1, target, (w, h), resized_size(w, h, target), (left, top))
            pixels = batch.images[i].permute(1, 2, 0).numpy()
            assert psnr(pixels, pillow_reference(data[key], placement)) >= BAR_DB, key


def test_resume_at_batch_t_continues_the_stream_exactly(shards):
    root, _ = shards
    settings = LoaderSettings(hr=str(root), batch_size=2, workers=0, seed=5, shuffle_buffer=4)
    whole = list(itertools.islice(make_bucket_loader(settings, SMALL), 9))
    resumed = list(itertools.islice(make_bucket_loader(settings, SMALL, start_batch=6), 3))
    for a, b in zip(whole[6:], resumed, strict=True):
        assert a.keys == b.keys and torch.equal(a.images, b.images) and torch.equal(a.crop_top_lefts, b.crop_top_lefts)
    other = list(itertools.islice(make_bucket_loader(dataclasses.replace(settings, seed=6), SMALL), 9))
    assert [b.keys for b in other] != [b.keys for b in whole]


def test_loader_refuses_what_it_cannot_serve(shards):
    root, _ = shards
    with pytest.raises(ValueError, match="no lr"):
        make_bucket_loader(LoaderSettings(hr=str(root), lr=str(root)), SMALL)
    with pytest.raises(ValueError, match="some would get no data"):
        make_bucket_loader(LoaderSettings(hr=str(root), workers=3, resampled=False), SMALL, rank=0, world_size=2)


# ---------------------------------------------------------------------------------------------- stats


def test_manifest_buckets_are_the_loaders_buckets_on_a_real_build(tmp_path):
    out = build_demo(tmp_path / "demo", count=8, min_side=60, max_side=200)
    manifest = read_manifest(str(out))
    settings = BucketSettings(resolution=64, step=16, min_side=32, max_side=128)
    index = assign_buckets(manifest["width"].to_numpy(), manifest["height"].to_numpy(), settings)
    by_key = dict(zip(manifest["key"], index, strict=True))
    sizes = bucket_sizes(settings)
    loader = make_bucket_loader(LoaderSettings(hr=str(out), batch_size=1, workers=0, resampled=False), settings)
    seen = 0
    for batch in loader:
        bucket = sizes[by_key[batch.keys[0]]]
        assert batch.images.shape[2:] == (bucket.height, bucket.width)
        seen += 1
    assert seen == int((index >= 0).sum()) and loader.skipped()["too_small"] == int((index < 0).sum())


def test_stats_bucket_histogram_and_discard_against_direct_counts(tmp_path):
    manifest = synthetic_manifest(20000, seed=3)
    write_manifest_dataset(tmp_path / "hr", manifest, name="hr")
    datasets = stats.load_all([str(tmp_path / "hr")])
    settings = BucketSettings()
    table = stats.buckets(datasets, settings)
    w, h = manifest["width"].to_numpy(), manifest["height"].to_numpy()
    index = assign_buckets(w, h, settings)
    assert table["hr"].sum() == len(manifest) and table.at["too small", "hr"] == int((index < 0).sum())
    assert table.at["1216×832", "hr"] == int((index == bucket_sizes(settings).index(Bucket(1216, 832))).sum())
    lost = stats.bucket_discard(datasets, settings, (512, 1024, 2048)).set_index("resolution")
    for resolution in (512, 1024, 2048):
        small = assign_buckets(w, h, BucketSettings(resolution=resolution)) < 0
        assert lost.at[resolution, "images_lost"] == small.sum()
        assert math.isclose(lost.at[resolution, "pixels_share"], (w * h)[small].sum() / (w * h).sum())
    assert lost["images_share"].is_monotonic_increasing
    figure = stats_plots.plot_buckets(datasets, settings, tmp_path / "buckets.png")
    bars = [p.get_height() for p in figure.axes[0].patches]
    assert sum(bars) == len(manifest) and (tmp_path / "buckets.png").stat().st_size > 1000


def test_stats_cli_prints_and_plots_buckets(tmp_path):
    write_manifest_dataset(tmp_path / "hr", synthetic_manifest(3000, seed=4), name="hr")
    runner = CliRunner()
    plot = tmp_path / "b.png"
    args = ["stats", str(tmp_path / "hr"), "--buckets", "1024", "--bucket-plot", str(plot)]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "buckets at 1024²" in result.output and "1216×832" in result.output and "too small" in result.output
    assert "no upscaling" in result.output and "resolution" in result.output
    assert plot.stat().st_size > 1000
    bad = runner.invoke(app, ["stats", str(tmp_path / "hr"), "--bucket-step", "32"], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "need --buckets" in bad.output
    bad = runner.invoke(app, ["stats", str(tmp_path / "hr"), "--buckets", "1024", "--bucket-assign", "area"])
    assert bad.exit_code == 2 and "assign" in bad.output
