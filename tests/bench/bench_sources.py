"""Benchmark the sources, side by side in one run, and print markdown tables.

    python -m tests.bench.bench_sources              # default sizes
    python -m tests.bench.bench_sources --small      # a quick run

1. Reading the images inside a WebDataset tar: `fsspec.open("tar://MEMBER::TAR")` per member (fsspec
   re-indexes the tar for every open) against `TarReader` (indexes it once).
2. The demo source: rendering an image against decoding the JPEG it becomes (what the build does
   with every fetched image anyway), at several sizes.
3. The Flickr client against the stand-in server: API calls needed to list every photo of a query
   with more results than the 4,000 cap, against the ideal ceil(N / 500) with no cap.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import tarfile
import tempfile
import time

import fsspec
import numpy as np
import pyvips

from anyres_data.sources.demo import render_demo
from anyres_data.sources.flickr import FlickrSettings, iter_flickr
from anyres_data.sources.folder import FolderSettings, TarReader, iter_folder
from tests.bench.common import timed
from tests.support.flickr_server import TEST_KEY, VOCABULARY, FlickrServer


def bench_tar(members: int, reads: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "00000.tar")
        payload = os.urandom(20_000)
        with tarfile.open(path, "w") as tar:
            for i in range(members):
                for ext, data in (("jpg", payload), ("json", b"{}")):
                    info = tarfile.TarInfo(f"{i:09d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        urls = [c.url for c in iter_folder(FolderSettings(folder=tmp))]
        step = max(1, len(urls) // reads)
        chosen = urls[::step][:reads]

        def with_fsspec():
            for url in chosen:
                with fsspec.open(url, "rb") as f:
                    f.read()

        def with_reader():
            with TarReader() as reader:
                for url in chosen:
                    reader.read(url)

        slow, fast = timed(with_fsspec), timed(with_reader, repeat=3)
    print(f"\n### Reading {len(chosen)} members of a {members}-sample tar\n")
    print("| reader | ms per member | relative |\n|---|---:|---:|")
    print(f"| fsspec.open(tar://…) | {1e3 * slow / len(chosen):.2f} | {slow / fast:.0f}× |")
    print(f"| TarReader | {1e3 * fast / len(chosen):.3f} | 1× |")


def bench_demo(sizes: list[tuple[int, int]]) -> None:
    print("\n### Demo source: render vs. decoding the JPEG it becomes (1 thread)\n")
    print("| size | render ms | JPEG decode ms | render / decode |\n|---|---:|---:|---:|")
    pyvips.concurrency_set(1)
    for width, height in sizes:
        render = timed(lambda w=width, h=height: render_demo(1, w, h), repeat=2)
        pixels = render_demo(1, width, height)
        data = pyvips.Image.new_from_memory(pixels.data, width, height, 3, "uchar").write_to_buffer(".jpg", Q=92)
        decode = timed(lambda d=data: pyvips.Image.new_from_buffer(d, "").write_to_memory(), repeat=2)
        print(f"| {width}×{height} | {1e3 * render:.0f} | {1e3 * decode:.0f} | {render / decode:.1f} |")


def bench_flickr(n_photos: int) -> None:
    os.environ.setdefault("FLICKR_API_KEY", TEST_KEY)
    with FlickrServer(n_photos=n_photos, seed=0) as server:
        settings = FlickrSettings(tags=VOCABULARY, api_endpoint=server.endpoint, api_calls_per_hour=1e9)
        start = time.perf_counter()
        found = sum(1 for _ in iter_flickr(settings))
        seconds = time.perf_counter() - start
        calls = len(server.rest_calls())
    ideal = math.ceil(n_photos / 500)
    print(f"\n### Flickr: listing a {n_photos}-photo query (cap 4,000, 500 per page) from the stand-in\n")
    print("| photos found | API calls | ideal calls (no cap) | calls / ideal | hours at 3,000 calls/h |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {found} | {calls} | {ideal} | {calls / ideal:.2f} | {calls / 3000:.2f} |")
    print(f"\n(client + stand-in time: {seconds:.1f} s, no rate limit)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a quick run at small sizes")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, libvips {pyvips.version(0)}.{pyvips.version(1)}, {os.cpu_count()} CPUs")
    if args.small:
        bench_tar(members=1000, reads=50)
        bench_demo([(512, 512), (1024, 768)])
        bench_flickr(10_000)
    else:
        bench_tar(members=10_000, reads=200)
        bench_demo([(512, 512), (1024, 768), (2048, 1536), (4000, 3000)])
        bench_flickr(50_000)


if __name__ == "__main__":
    main()
