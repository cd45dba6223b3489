"""Benchmark `anyres-data stats` on a large synthetic manifest, and the resize stage, side by side; markdown tables.

    python -m tests.bench.bench_stats                 # 1,000,000-row manifest
    python -m tests.bench.bench_stats --rows 100000   # quicker

1. Statistics of an N-row manifest (every build column, photo-like sizes): reading only the columns
   the statistics need against reading the whole manifest (`read_manifest`), then each step, and the
   whole `anyres-data stats` command in this process (tables and both plots).
2. The resize stage (libvips thumbnail: shrink-on-load, then Lanczos3, then PNG/JPEG encoding)
   against Pillow (full decode, `resize(LANCZOS)`, the same encoding), per image.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from anyres_data.build.resize import ResizeSettings, resize
from anyres_data.cli.app import app
from anyres_data.dataset import read_manifest
from anyres_data.probe import read_header
from anyres_data.sampling import SamplerSettings
from anyres_data.stats.compute import breakdown, discard, load_all, summary, table1
from anyres_data.stats.plots import plot_discard, plot_sizes
from tests.bench.common import timed
from tests.support.manifests import synthetic_manifest, write_manifest_dataset
from tests.support.photos import encode, structured_image


def bench_stats(rows: int, tmp: Path) -> None:
    start = time.perf_counter()
    out = write_manifest_dataset(tmp / "big", synthetic_manifest(rows, seed=0), name="big", rejected={"http_404": 9})
    print(
        f"(synthetic manifest of {rows:,} rows written in {time.perf_counter() - start:.1f} s, "
        f"{(out / 'manifest.parquet').stat().st_size / 1e6:.0f} MB)\n"
    )
    whole = timed(lambda: read_manifest(str(out)), repeat=2)
    datasets = load_all(auto=[str(out)])
    steps = {
        "read the columns the statistics need (`load_stats`)": lambda: load_all(auto=[str(out)]),
        "summary (counts, sides, megapixels)": lambda: summary(datasets),
        "formats, licenses, reasons": lambda: [breakdown(datasets, w) for w in ("format", "license", "reason")],
        "Table 1 row with E[s] (`expected_scale`)": lambda: table1(datasets, SamplerSettings()),
        "minimum-size discard table": lambda: discard(datasets),
        "Fig. 4 plot (PNG)": lambda: plot_sizes(datasets, tmp / "fig4.png"),
        "discard plot (PNG)": lambda: plot_discard(datasets, tmp / "discard.png"),
    }
    command = ["stats", str(out), "--plot", str(tmp / "a.png"), "--discard-plot", str(tmp / "b.png")]
    print(f"### Statistics of a {rows:,}-row manifest\n")
    print("| step | seconds | vs reading the whole manifest |")
    print("|---|---:|---:|")
    print(f"| read the whole manifest (`read_manifest`, every column) | {whole:.2f} | 1.00x |")
    total = 0.0
    for name, fn in steps.items():
        seconds = timed(fn, repeat=2)
        total += seconds
        print(f"| {name} | {seconds:.2f} | {seconds / whole:.2f}x |")
    print(f"| all of the above | {total:.2f} | {total / whole:.2f}x |")
    seconds = timed(lambda: CliRunner().invoke(app, command, catch_exceptions=False))
    print(
        f"| `anyres-data stats OUT --plot --discard-plot` (in process, after imports) | {seconds:.2f} | "
        f"{seconds / whole:.2f}x |\n"
    )


def bench_resize() -> None:
    cases = [
        ("4000x3000 JPEG -> 1024", encode(structured_image(4000, 3000, seed=1), "JPEG", quality=90), 1024, "jpg"),
        ("4000x3000 JPEG -> 256", encode(structured_image(4000, 3000, seed=1), "JPEG", quality=90), 256, "jpg"),
        ("1024x1024 PNG -> 256 (FFHQ LR)", encode(structured_image(1024, 1024, seed=2), "PNG"), 256, "png"),
        ("1024x1024 PNG -> 768 (FFHQ HR)", encode(structured_image(1024, 1024, seed=2), "PNG"), 768, "png"),
    ]
    print("### Resize stage, per image (one thread)\n")
    print("| image | anyres resize (ms) | Pillow decode + LANCZOS + encode (ms) | Pillow / anyres |")
    print("|---|---:|---:|---:|")
    for name, data, side, fmt in cases:
        header = read_header(data)
        settings = ResizeSettings(mode="fixed", size=side, format=fmt, quality=95)

        def pillow(data=data, side=side, fmt=fmt):
            image = Image.open(io.BytesIO(data)).convert("RGB")
            scale = side / min(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            image.save(buf, "JPEG" if fmt == "jpg" else "PNG", quality=95)

        ours = timed(
            lambda data=data, header=header, settings=settings: resize(data, header, key="k", settings=settings), 3
        )
        theirs = timed(pillow, 3)
        print(f"| {name} | {1000 * ours:.0f} | {1000 * theirs:.0f} | {theirs / ours:.2f}x |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic manifest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_stats(args.rows, Path(tmp))
    bench_resize()


if __name__ == "__main__":
    main()
