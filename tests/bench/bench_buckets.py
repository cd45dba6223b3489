"""Benchmark: bucketed images (libvips shrink-on-load + lanczos3 + crop) against the common approach.

    python -m tests.bench.bench_buckets              # 5 repeats per cell
    python -m tests.bench.bench_buckets --quick      # 2 repeats, shorter loader run

Images per second on one core (libvips concurrency 1, torch 1 thread) for the bench's synthetic
photos (4000×3000 baseline and progressive JPEG, 12000×8000 baseline JPEG; made and cached by
`tests.bench.bench_sampler.synthesize`) at the default buckets of area 1024² (kohya's set, steps of
64, sides 512–2048), centre crop:
  - bucketed: `read_header` + `place` + `cut_bucket`, as the loader does per sample, with the default
    shrink-on-load headroom (2.5, the patch sampler's) and with 1.5 (a 4000×3000 photo loads at half size);
  - common: Pillow decodes the whole image, `resize((rw, rh), LANCZOS)`, crop (what diffusers' and
    kohya's scripts do, with Pillow's best filter);
  - Pillow + draft: the same with `Image.draft` first (Pillow's own JPEG shrink-on-load, to a scale
    that leaves at least 2.5× for the Lanczos step, as the bucketed path does).
PSNR of each against the common approach's pixels is printed beside it (the bucketed image is the
same image). Then the bucketed loader's rate with 1 spawned worker on shards of the 4000×3000 JPEGs.
Last, the cost of shrinking on load as a function of what it leaves for Lanczos: PSNR against the
common approach of the same placements decoded at half size, on the exactness test's fine-grained
images (`structured_image`, quality 90), where the default headroom comes from.
"""

from __future__ import annotations

import io
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from anyres_data.probe import read_header
from anyres_data.sampling.bucket_loader import make_bucket_loader
from anyres_data.sampling.buckets import (
    Bucket,
    BucketSettings,
    BucketTable,
    Placement,
    bucket_shrink,
    cut_bucket,
    place,
)
from anyres_data.sampling.loader import LoaderSettings
from tests.bench.bench_sampler import synthesize, write_loader_shards
from tests.bench.common import image_bench_args, machine_line, markdown_table
from tests.support.photos import jpeg_with_orientation, structured_image

SETTINGS = BucketSettings(resolution=1024, crop="centre")
HEADROOMS = (SETTINGS.headroom, 1.5)  # the default (the patch sampler's), and half-size loading of 4k photos


def bucketed(data: bytes, table: BucketTable, headroom: float) -> np.ndarray:
    header = read_header(data)  # per image, as the loader does
    placement = place(width=header.width, height=header.height, table=table, rng=None)
    return cut_bucket(data, placement, header=header, headroom=headroom)


def common(data: bytes, placement: Placement, *, draft: bool = False) -> np.ndarray:
    """Decode the whole image (optionally with Pillow's JPEG draft scaling), resize with LANCZOS, crop."""
    image = Image.open(io.BytesIO(data))
    (rw, rh), (left, top), (bw, bh) = placement.resized, placement.crop, placement.target
    if draft:  # DCT scaling to the smallest size that still leaves 2.5× for Lanczos
        image.draft("RGB", (int(rw * 2.5), int(rh * 2.5)))
    image = ImageOps.exif_transpose(image).convert("RGB")
    resized = image.resize((rw, rh), Image.Resampling.LANCZOS)
    return np.asarray(resized.crop((left, top, left + bw, top + bh)))


def median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def psnr(a: np.ndarray, b: np.ndarray, border: int = 4) -> float:
    a, b = a[border:-border, border:-border].astype(np.float64), b[border:-border, border:-border].astype(np.float64)
    return 10 * np.log10(255**2 / max(float(np.mean((a - b) ** 2)), 1e-12))


def bench_images(images: dict[str, bytes], repeats: int) -> list[dict]:
    table = BucketTable(SETTINGS)
    rows = []
    for name, data in images.items():
        header = read_header(data)
        placement = place(width=header.width, height=header.height, table=table, rng=None)
        (w, h), (rw, rh) = placement.original, placement.resized
        slow_repeats = max(2, repeats // 2) if header.pixels > 20e6 else repeats
        theirs = median_s(lambda d=data, p=placement: common(d, p), slow_repeats)
        drafted = median_s(lambda d=data, p=placement: common(d, p, draft=True), slow_repeats)
        reference = common(data, placement)
        draft_db = psnr(common(data, placement, draft=True), reference)
        for headroom in HEADROOMS:
            ours = median_s(lambda d=data, r=headroom: bucketed(d, table, r), repeats)
            rows.append(
                {
                    "image": name,
                    "bucket": f"{placement.target.width}×{placement.target.height}",
                    "headroom": headroom,
                    "shrink": bucket_shrink(header, min(w / rw, h / rh), headroom=headroom),
                    "bucketed (img/s)": 1 / ours,
                    "common: Pillow (img/s)": 1 / theirs,
                    "Pillow + draft (img/s)": 1 / drafted,
                    "bucketed / common": f"{theirs / ours:.2f}×",
                    "bucketed / draft": f"{drafted / ours:.2f}×",
                    "PSNR bucketed (dB)": psnr(bucketed(data, table, headroom), reference),
                    "PSNR draft (dB)": draft_db,
                }
            )
    return rows


def loader_rate(shards: str, *, batches: int) -> float:
    """Images per second from one spawned worker once it runs (its spawn is not timed)."""
    settings = LoaderSettings(hr=shards, batch_size=2, workers=1, shuffle_buffer=4)
    batch_iter = iter(make_bucket_loader(settings, SETTINGS))
    next(batch_iter)  # warm up: worker started, first batch out
    start = time.perf_counter()
    count = sum(len(batch.keys) for batch in itertools.islice(batch_iter, batches))
    return count / (time.perf_counter() - start)


CURVE_IMAGES = ((640, 480, 30), (640, 480, 31), (1280, 960, 30), (1280, 960, 31))  # (width, height, seed)
CURVE_LEFT = (2.5, 2.2, 2.0, 1.8, 1.67, 1.5, 1.4)  # source pixels per output pixel left after shrink 2


def headroom_curve() -> list[dict]:
    """PSNR after shrink-on-load by 2 against the full decode's reference, by the factor left for Lanczos."""
    rows = []
    for width, height, seed in CURVE_IMAGES:
        data = jpeg_with_orientation(structured_image(width, height, seed=seed), 1, quality=90)
        header = read_header(data)
        row: dict = {"image": f"{width}×{height} structured, seed {seed}"}
        for left in CURVE_LEFT:  # the whole image resized by 1 / (2·left), cropped to its centre
            rw, rh = round(width / (2 * left)), round(height / (2 * left))
            target = Bucket(rw - rw % 8, rh - rh % 8)
            placement = Placement(
                0, target, (width, height), (rw, rh), ((rw - target.width) // 2, (rh - target.height) // 2)
            )
            headroom = left - 0.01  # rw, rh are rounded: what is left is within 0.01 of `left`
            assert bucket_shrink(header, min(width / rw, height / rh), headroom=headroom) == 2, (width, left)
            got = cut_bucket(data, placement, header=header, headroom=headroom)
            row[f"{left:g}"] = f"{psnr(got, common(data, placement)):.1f}"
        rows.append(row)
    return rows


def main() -> None:
    args, repeats = image_bench_args(
        __doc__, repeats=5, quick_repeats=2, repeats_help="images per cell (halved for the 12k JPEG's Pillow)"
    )
    Image.MAX_IMAGE_PIXELS = None  # the 96-megapixel image is not a decompression bomb
    images = synthesize(args.cache / "anyres" / "bench_sampler")

    rows = bench_images(images, repeats)
    print(f"\n### Bucketed images per second, one core, area 1024², centre crop (median of {repeats})\n")
    print(markdown_table(rows))
    for headroom in HEADROOMS:
        baseline = [r for r in rows if "baseline" in r["image"] and r["headroom"] == headroom]
        worst = min(float(r["bucketed / common"].rstrip("×")) for r in baseline)
        print(
            f"headroom {headroom}: slowest speed-up over the common approach on baseline JPEGs: {worst:.2f}× "
            "(target ≥ 3×)"
        )

    with tempfile.TemporaryDirectory() as tmp:
        shards = write_loader_shards(images, Path(tmp))
        rate = loader_rate(shards, batches=3 if args.quick else 8)
    print(f"bucketed loader, 1 spawned worker, 4000×3000 JPEGs (baseline + progressive): {rate:.2f} images/s")
    print("\n### PSNR (dB) against the common approach after shrink-on-load by 2, by source pixels per output")
    print("pixel left for Lanczos (columns; a 4000×3000 photo in a 1024² bucket leaves 1.67)\n")
    print(markdown_table(headroom_curve()))
    print(machine_line())


if __name__ == "__main__":
    main()
