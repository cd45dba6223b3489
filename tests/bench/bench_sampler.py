"""Benchmark: the libvips patch sampler against the reference recipe and against a bare decode.

    python -m tests.bench.bench_sampler            # full run (7 repeats per cell)
    python -m tests.bench.bench_sampler --quick    # 3 repeats, shorter loader run

Per-patch median time, one thread (libvips concurrency 1, torch 1 thread), p = 256, for
s ∈ {256, 512, 1024, 2048, full} on synthetic photos (4000×3000 baseline and progressive JPEG,
12000×8000 baseline JPEG), side by side with
  (a) the reference implementation's recipe in Pillow: decode, crop the square, resize the whole
      square to s×s with LANCZOS, crop p×p;
  (b) a bare full decode with Pillow (`Image.open(...).load()`), the floor for any method that
      decodes the whole image;
  (c) a libvips decode at 1/8 scale, about the cost of entropy-decoding the whole file, which no
      libjpeg-based reader can skip for the rows above a patch (a patch near the bottom pays it all):
      (a) / (c) is the most any such reader can gain where the patch spans the image's height (s = p)
      or the file is progressive (every scan must be decoded before the first row comes out).
Then loader throughput (patches/s) with 1 and 2 spawned workers against the single-thread sampler
rate on the same data (global_prob 0.5, s uniform in [p, m]). Prints markdown tables with ratios.
"""

from __future__ import annotations

import io
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyvips
import webdataset as wds
from PIL import Image

from anyres_data.loader import LoaderSettings, make_loader
from anyres_data.patches import cut_patch
from anyres_data.probe import read_header
from anyres_data.sampling import DrawnSpec, SamplerSettings, draw_spec
from tests.bench.common import image_bench_args, machine_line
from tests.support.photos import structured_image

P = 256
SCALES = (256, 512, 1024, 2048, "full")
Image.MAX_IMAGE_PIXELS = None  # the 96-megapixel test image is not a decompression bomb


def synthesize(cache: Path) -> dict[str, bytes]:
    """The benchmark JPEGs (cached): structured content at every scale, written by libvips."""
    cache.mkdir(parents=True, exist_ok=True)
    specs = {
        "4000x3000 baseline": (4000, 3000, False),
        "4000x3000 progressive": (4000, 3000, True),
        "12000x8000 baseline": (12000, 8000, False),
    }
    out = {}
    for name, (width, height, progressive) in specs.items():
        path = cache / (name.replace(" ", "_") + ".jpg")
        if not path.exists():
            if width * height > 20e6:  # upsample a 3000×2000 render ×4 and add grain: bounded memory
                base = pyvips.Image.new_from_array(structured_image(width // 4, height // 4, seed=2))
                image = base.resize(4, kernel="lanczos3") + pyvips.Image.gaussnoise(width, height, sigma=5, mean=0)
            else:
                image = pyvips.Image.new_from_array(structured_image(width, height, seed=1 + progressive))
            image = image.cast("uchar").copy(interpretation="srgb")
            image.jpegsave(str(path), Q=90, interlace=progressive)
        out[name] = path.read_bytes()
    return out


def median_ms(fn, data: bytes, inputs) -> float:
    times = []
    for item in inputs:
        start = time.perf_counter()
        fn(data, item)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def ours(data: bytes, drawn: DrawnSpec) -> np.ndarray:
    header = read_header(data)  # per patch, as the loader does
    return cut_patch(data, drawn, header=header).pixels


def reference(data: bytes, drawn: DrawnSpec) -> np.ndarray:
    """The reference recipe: whole decode, square, Lanczos of the whole square to s×s, crop."""
    image = Image.open(io.BytesIO(data))
    image.load()
    ox, oy, m = drawn.square
    size = round(drawn.spec.s)
    square = image.crop((ox, oy, ox + m, oy + m)).resize((size, size), Image.Resampling.LANCZOS)
    x, y = int(drawn.spec.x0), int(drawn.spec.y0)
    return np.asarray(square.crop((x, y, x + P, y + P)))


def bare_decode(data: bytes, _: int) -> None:
    Image.open(io.BytesIO(data)).load()


def entropy_floor(data: bytes, _: int) -> None:
    """libvips decode at 1/8 scale: little but the entropy (Huffman) decoding of the whole file is left."""
    pyvips.Image.new_from_buffer(data, "", access="sequential", shrink=8).avg()


def bench_patches(images: dict[str, bytes], repeats: int) -> list[dict]:
    rows = []
    for name, data in images.items():
        header = read_header(data)
        m = min(header.width, header.height)
        big = header.width * header.height > 20e6
        decode_ms = median_ms(bare_decode, data, range(max(2, repeats // 2) if big else repeats))
        floor_ms = median_ms(entropy_floor, data, range(repeats))
        for scale in SCALES:
            s = float(m if scale == "full" else scale)
            settings = SamplerSettings(p=P, size_distribution="fixed", fixed_s=s, global_prob=0.0)
            rng = np.random.default_rng(0)
            drawn = [
                draw_spec(width=header.width, height=header.height, settings=settings, rng=rng) for _ in range(repeats)
            ]
            ours_ms = median_ms(ours, data, drawn)
            ref_ms = median_ms(reference, data, drawn[: max(2, repeats // 2)] if big else drawn)
            rows.append(dict(image=name, s=scale, ours=ours_ms, ref=ref_ms, decode=decode_ms, floor=floor_ms))
    return rows


def write_loader_shards(images: dict[str, bytes], directory: Path) -> str:
    """Two shards of the 4000×3000 JPEGs (each image several times, under different keys)."""
    small = [data for name, data in images.items() if name.startswith("4000")]
    for shard in range(2):
        with wds.TarWriter(str(directory / f"bench-{shard:06d}.tar")) as sink:
            for i, data in enumerate(small * 3):
                sink.write({"__key__": f"s{shard}_{i}", "jpg": data})
    return str(directory)


def loader_rate(shards: str, *, workers: int, batches: int) -> float:
    """Patches per second once the workers run (their spawn is not timed)."""
    settings = LoaderSettings(hr=shards, batch_size=8, workers=workers, seed=workers, shuffle_buffer=4)
    batch_iter = iter(make_loader(settings, SamplerSettings(p=P)))
    for _ in range(2 * max(workers, 1)):  # warm up: workers started, first batches out
        next(batch_iter)
    start = time.perf_counter()
    count = sum(len(batch.keys) for batch in itertools.islice(batch_iter, batches))
    return count / (time.perf_counter() - start)


def sampler_rate(images: dict[str, bytes], n: int) -> float:
    """Single-thread patches/s with the loader's distribution (global_prob 0.5, s uniform), in process."""
    small = [data for name, data in images.items() if name.startswith("4000")]
    settings, rng = SamplerSettings(p=P), np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(n):
        data = small[i % len(small)]
        header = read_header(data)
        cut_patch(data, draw_spec(width=header.width, height=header.height, settings=settings, rng=rng), header=header)
    return n / (time.perf_counter() - start)


def main() -> None:
    args, repeats = image_bench_args(__doc__, repeats=7, quick_repeats=3, repeats_help="patches per (image, s) cell")
    images = synthesize(args.cache / "anyres" / "bench_sampler")

    rows = bench_patches(images, repeats)
    print(f"\n### Per-patch median, one thread, p = {P} ({repeats} patches per cell)\n")
    print(
        "| image | s | sampler (ms) | (a) reference (ms) | (b) full decode (ms) | (c) 1/8 decode (ms) "
        "| (a) / sampler | (b) / sampler | (a) / (c) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['image']} | {r['s']} | {r['ours']:.1f} | {r['ref']:.1f} | {r['decode']:.1f} | {r['floor']:.1f} "
            f"| {r['ref'] / r['ours']:.1f}× | {r['decode'] / r['ours']:.2f}× | {r['ref'] / r['floor']:.1f}× |"
        )
    speedups = [r["ref"] / r["ours"] for r in rows]
    baseline = [r for r in rows if "baseline" in r["image"] and r["s"] != 256]
    print(f"\nmedian speed-up over (a) across scales and images: {statistics.median(speedups):.1f}× (target ≥ 5×)")
    for name in dict.fromkeys(r["image"] for r in rows):
        mine = [r for r in rows if r["image"] == name]
        print(f"  {name}: median over scales {statistics.median(r['ref'] / r['ours'] for r in mine):.1f}×")
    print(
        "(a) / (c) bounds the speed-up of any reader that entropy-decodes the whole file, as libjpeg must for "
        "progressive JPEGs and for patches that span the image's height"
    )
    slower = [f"{r['image']} s={r['s']}" for r in baseline if r["ours"] >= r["decode"]]
    print(f"faster than (b) for every s ≥ 512 on baseline JPEGs: {'yes' if not slower else 'no: ' + ', '.join(slower)}")

    with tempfile.TemporaryDirectory() as tmp:
        shards = write_loader_shards(images, Path(tmp))
        batches = 8 if args.quick else 20
        single = sampler_rate(images, 24 if args.quick else 60)
        one = loader_rate(shards, workers=1, batches=batches)
        two = loader_rate(shards, workers=2, batches=batches)
    print("\n### Loader throughput (global_prob 0.5, s uniform in [p, m], 4000×3000 JPEGs, batch 8)\n")
    print("| | patches/s | vs single-thread sampler |")
    print("|---|---:|---:|")
    print(f"| sampler, one thread, in process | {single:.1f} | 1.00× |")
    print(f"| loader, 1 worker | {one:.1f} | {one / single:.2f}× |")
    print(f"| loader, 2 workers | {two:.1f} | {two / single:.2f}× (target ≥ 1.70×) |")
    print("\n" + machine_line())


if __name__ == "__main__":
    main()
