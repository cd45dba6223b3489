"""Worker memory under hostile inputs: `anyres-data build` (and the loader) at default settings, 8 inputs in flight.

    python -m tests.bench.bench_hostile [--count 8] [--kinds png-bomb,png-under-limit,...] [--no-loader]

A loopback server (tests/support/http_server.py) serves `--count` inputs of each kind, which one shard
task of `anyres-data build` (default --workers 2 --threads 8; --shard-size COUNT, so all of them are
in flight in one worker at once) fetches, probes and keeps or rejects:

- png-bomb: the 2.8 MB interlaced 16-bit RGBA PNG of 19,000 x 19,000 (2.9 GB decoded, 361 MP: within
  --max-pixels) that the issue measured at 3.8 GB in the build and in the loader;
- png-under-limit: an interlaced 8-bit RGB PNG just under --max-decode-bytes (decoded whole, kept);
- gzip-bomb: 256 KB on the wire, Content-Encoding gzip, 256 MiB of zeros once inflated;
- gzip-bomb-jpeg: the same, but starting like a JPEG, so it is downloaded to the end (to disk);
- big-png: a 243 MB non-interlaced PNG (stored, not compressed) sent gzip-encoded: large, and kept.

Every input is a real file, written by streaming (the PNGs are made row by row with zlib, never held in
memory) and cached under ~/.cache/anyres-bench/hostile/. The build runs as a subprocess whose processes
are sampled every 50 ms (bench_build.run_measured); the loader row reads a shard of png-bomb,
png-under-limit and fake 65,000 x 65,000 JPEG headers with one spawned DataLoader worker. Prints a
markdown table of the peak resident memory of the largest worker process, against the 1.5 GB target.
"""

from __future__ import annotations

import argparse
import gzip
import json
import struct
import sys
import tempfile
import textwrap
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from anyres_data.build.fetch import FetchSettings
from anyres_data.filters import FilterSettings
from tests.bench.bench_build import CACHE, Run, run_measured
from tests.bench.common import markdown_table
from tests.support.corpus import header_bomb_jpeg
from tests.support.http_server import ImageServer

TARGET_MB = 1536
FOLDER = CACHE / "hostile"
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_rows(width: int, height: int, pixel: bytes, interlaced: bool) -> Iterator[tuple[bytes, int]]:
    """(scanline, how many times) of a flat image: each row is a filter byte 0 and `pixel` repeated."""
    if not interlaced:
        yield b"\0" + pixel * width, height
        return
    for x0, y0, dx, dy in ADAM7:
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            yield b"\0" + pixel * columns, rows


def write_png(path: Path, width: int, height: int, *, pixel: bytes, bit_depth: int, colour_type: int, **options):
    """A flat PNG written by streaming rows through zlib (memory stays small for any size).

    options: interlaced (Adam7), level (zlib level; 0 stores the pixels uncompressed).
    """
    interlaced, level = options.get("interlaced", False), options.get("level", 6)
    packer = zlib.compressobj(level)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, int(interlaced))))
        for row, times in _png_rows(width, height, pixel, interlaced):
            block = max(1, (1 << 22) // len(row))  # rows per 4 MiB block
            for start in range(0, times, block):
                f.write(_chunk(b"IDAT", packer.compress(row * min(block, times - start))))
        f.write(_chunk(b"IDAT", packer.flush()))
        f.write(_chunk(b"IEND", b""))


def gzipped_zeros(path: Path, size: int, *, start: bytes = b"") -> None:
    """`start` then zeros, `size` bytes in all, gzip-compressed (an HTTP body with Content-Encoding: gzip)."""
    zeros = bytes(1 << 22)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(start)
        left = size - len(start)
        while left:
            f.write(zeros[: min(left, len(zeros))])
            left -= min(left, len(zeros))


@dataclass(frozen=True)
class Kind:
    name: str
    what: str
    gzip: bool  # served with Content-Encoding: gzip


def kinds() -> list[Kind]:
    return [
        Kind("png-bomb", "interlaced 16-bit RGBA PNG, 19,000 x 19,000", False),
        Kind("png-under-limit", "interlaced 8-bit RGB PNG, 6,600 x 6,600 (decoded whole, kept)", False),
        Kind("gzip-bomb", "gzip body: 256 MiB of zeros", True),
        Kind("gzip-bomb-jpeg", "gzip body: a JPEG marker, then 256 MiB of zeros", True),
        Kind("big-png", "243 MB stored PNG, 9,000 x 9,000, sent gzip-encoded (kept)", True),
    ]


def make_inputs(kind: Kind, count: int) -> list[Path]:
    """`count` files of `kind` (distinct bytes where they are kept), cached on disk."""
    FOLDER.mkdir(parents=True, exist_ok=True)
    max_bytes = FetchSettings().max_bytes
    files = []
    for i in range(count if kind.name in ("png-under-limit", "big-png") else 1):
        path = FOLDER / f"{kind.name}-{i}.{'gz' if kind.gzip else 'png'}"
        files.append(path)
        if path.exists():
            continue
        print(f"writing {path} ...", file=sys.stderr)
        tmp = path.with_suffix(".tmp")
        if kind.name == "png-bomb":
            write_png(tmp, 19_000, 19_000, pixel=bytes(8), bit_depth=16, colour_type=6, interlaced=True)
        elif kind.name == "png-under-limit":
            write_png(tmp, 6600, 6600, pixel=bytes([i * 20, 90, 160]), bit_depth=8, colour_type=2, interlaced=True)
        elif kind.name == "gzip-bomb":
            gzipped_zeros(tmp, max_bytes)
        elif kind.name == "gzip-bomb-jpeg":
            gzipped_zeros(tmp, max_bytes - 4096, start=b"\xff\xd8\xff\xe0")
        else:
            png = path.with_suffix(".png.tmp")
            write_png(png, 9000, 9000, pixel=bytes([i * 20, 90, 160]), bit_depth=8, colour_type=2, level=0)
            with open(png, "rb") as raw, gzip.open(tmp, "wb", compresslevel=6) as f:
                while block := raw.read(1 << 22):
                    f.write(block)
            png.unlink()
        tmp.rename(path)
    return [files[i % len(files)] for i in range(count)]


def build_row(server: ImageServer, kind_list: list[Kind], count: int, tmp: Path) -> dict[str, object]:
    urls, wire = [], 0
    for kind in kind_list:
        for i, path in enumerate(make_inputs(kind, count)):
            headers = {"Content-Encoding": "gzip"} if kind.gzip else {}
            urls.append(
                server.add(f"/{kind.name}-{i}.png", path.read_bytes(), content_type="image/png", headers=headers)
            )
            wire += path.stat().st_size
    url_list = tmp / f"urls-{len(kind_list)}-{kind_list[0].name}.txt"
    url_list.write_text("\n".join(urls) + "\n")
    out = tmp / f"out-{url_list.stem}"
    command = [sys.executable, "-m", "anyres_data.cli", "build", "--source", "urls", "--url-list", str(url_list)]
    command += ["--out", str(out), "--shard-size", str(count), "--no-progress", "--allow-empty", "--retry-pause", "0"]
    run = run_measured("build", command, lambda: 0)
    counts = json.loads((out / "dataset.json").read_text())["counts"]
    outcome = ", ".join([f"kept {counts['kept']}"] + [f"{r} {n}" for r, n in counts["rejected"].items()])
    name = kind_list[0].name if len(kind_list) == 1 else "all of them together"
    return _row(f"build: {name}", len(urls), wire, outcome, run)


LOADER = """
import json, sys
from anyres_data.sampling.loader import LoaderSettings, make_loader
from anyres_data.sampling import SamplerSettings
loader = make_loader(LoaderSettings(hr=sys.argv[1], batch_size=1, workers=1, resampled=False, shuffle_buffer=0),
                     SamplerSettings(p=256, global_prob=0.5))
served = sum(len(batch.keys) for batch in loader)
with open(sys.argv[2], "w") as f:
    json.dump({"served": served, "skipped": {k: v for k, v in loader.skipped().items() if v}}, f)
"""


def loader_row(count: int, tmp: Path) -> dict[str, object]:
    import webdataset as wds

    shard = tmp / "hostile-000000.tar"
    members = make_inputs(kinds()[0], count) + make_inputs(kinds()[1], count)
    with wds.TarWriter(str(shard)) as sink:
        for i, path in enumerate(members):
            sink.write({"__key__": f"png{i}", "png": path.read_bytes(), "json": b"{}"})
        for i in range(count):
            sink.write({"__key__": f"jpeg{i}", "jpg": header_bomb_jpeg(65_000, 65_000), "json": b"{}"})
    result = tmp / "loader.json"
    run = run_measured("loader", [sys.executable, "-c", textwrap.dedent(LOADER), str(shard), str(result)], lambda: 0)
    got = json.loads(result.read_text())
    outcome = ", ".join([f"served {got['served']}"] + [f"{r} {n}" for r, n in got["skipped"].items()])
    return _row("loader (1 spawned worker)", 3 * count, shard.stat().st_size, outcome, run)


def _row(name: str, inputs: int, wire: int, outcome: str, run: Run) -> dict[str, object]:
    return {
        "what": name,
        "inputs": inputs,
        "MB on the wire": round(wire / 1e6, 1),
        "outcome": outcome,
        "seconds": round(run.seconds, 1),
        "worker peak RSS (MB)": round(run.peak_rss_mb),
        "worker peak USS (MB)": round(run.peak_uss_mb),
        f"RSS ≤ {TARGET_MB} MB": "yes" if run.peak_rss_mb <= TARGET_MB else "NO",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=8, help="inputs of each kind, all in flight in one shard task")
    parser.add_argument("--kinds", default=",".join(k.name for k in kinds()), help="comma-separated kinds to run")
    parser.add_argument("--no-loader", action="store_true", help="skip the loader row")
    parser.add_argument("--no-together", action="store_true", help="skip the run with every kind in one build")
    args = parser.parse_args()
    chosen = [k for k in kinds() if k.name in args.kinds.split(",")]
    rows = []
    with ImageServer() as server, tempfile.TemporaryDirectory() as tmp:
        for kind in chosen:
            rows.append(build_row(server, [kind], args.count, Path(tmp)))
        if len(chosen) > 1 and not args.no_together:
            rows.append(build_row(server, chosen, args.count, Path(tmp)))
        if not args.no_loader:
            rows.append(loader_row(args.count, Path(tmp)))
    limits = FilterSettings()
    print(
        f"\nanyres-data build at its defaults (--workers 2 --threads 8, --max-decode-bytes "
        f"{limits.max_decode_bytes // 2**20} MiB, --fetch-max-bytes {FetchSettings().max_bytes // 2**20} MiB, "
        f"--fetch-spill-bytes {FetchSettings().spill_bytes // 2**20} MiB); --shard-size {args.count}: "
        f"{args.count} inputs of a kind in flight in one worker\n"
    )
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
