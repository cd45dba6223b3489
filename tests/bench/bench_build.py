"""Build throughput and worker memory: `anyres-data build` beside img2dataset, on one URL list from 127.0.0.1.

    python -m tests.bench.bench_build [--images 200] [--huge 3] [--workers 2] [--threads 8]

A loopback server (tests/support/http_server.py) serves `--images` JPEGs of 800-3,000 px plus
`--huge` JPEGs of 18,000 x 12,000 px. The same URL list goes to
- anyres-data build (fetch, probe the header, decode check + perceptual hash, exact and near
  dedup, original bytes into shards),
- img2dataset with resize_mode=no (it decodes every image and re-encodes non-JPEGs), and with
  disable_all_reencoding as well (bytes copied without decoding), from its own virtual environment
  (created under ~/.cache/anyres-bench/ on first use: it pins webdataset and pandas versions that
  this project cannot use),
each with the same number of worker processes, threads per worker and images per shard. Every
tool runs as a subprocess; its processes are sampled every 50 ms for resident memory. Prints a
markdown table: images/s (wall clock of the whole command, start-up included), throughput relative
to img2dataset, and the peak memory of the largest process other than the command's own (the
workers): RSS, and USS (memory unique to the process; RSS also counts shared library pages, e.g.
the ~0.5 GB that importing torch maps).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pyvips

from tests.support.http_server import ImageServer

CACHE = Path.home() / ".cache" / "anyres-bench"
VENV = CACHE / "img2dataset-venv"


def photo_jpeg(width: int, height: int, seed: int) -> bytes:
    """A JPEG with smooth structure at several scales plus grain (fast to make at any size)."""
    layers = []
    for cells, sigma in ((24, 60.0), (6, 30.0)):
        small = pyvips.Image.gaussnoise(max(2, width // cells), max(2, height // cells), sigma=sigma, mean=0, seed=seed)
        layers.append(small.resize(width / small.width, vscale=height / small.height, kernel="linear"))
    grain = pyvips.Image.gaussnoise(width, height, sigma=3.0, mean=0, seed=seed + 1)
    grey = (layers[0] + layers[1] + grain + 128).crop(0, 0, width, height)
    rgb = grey.bandjoin([grey.flip("horizontal"), grey.flip("vertical")]).cast("uchar")
    return rgb.jpegsave_buffer(Q=85)


def corpus(n_images: int, n_huge: int) -> dict[str, bytes]:
    """{path: JPEG bytes}, cached on disk (the huge ones take a while to encode)."""
    folder = CACHE / "images"
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [(f"/p{i:05d}.jpg", 800 + (i * 397) % 2200, 600 + (i * 211) % 1400) for i in range(n_images)]
    sizes += [(f"/huge{i}.jpg", 18_000, 12_000) for i in range(n_huge)]
    out = {}
    for seed, (path, width, height) in enumerate(sizes):
        file = folder / f"{path.strip('/').removesuffix('.jpg')}-{width}x{height}.jpg"
        if not file.exists():
            file.write_bytes(photo_jpeg(width, height, seed))
        out[path] = file.read_bytes()
    return out


def img2dataset_venv() -> Path:
    """img2dataset's own virtual environment, created on first use."""
    binary = VENV / "bin" / "img2dataset"
    if not binary.exists():
        print(f"creating {VENV} (pip install img2dataset) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", "img2dataset"], check=True)
    return binary


@dataclass
class Run:
    tool: str
    seconds: float
    images: int
    peak_rss_mb: float  # resident set of the largest worker process (shared library pages included)
    peak_uss_mb: float  # memory unique to that process (what it really costs)


def run_measured(tool: str, command: list[str], count_images) -> Run:
    """Run `command`, sampling the RSS of each of its descendant processes; count the images it wrote."""
    peaks: dict[int, tuple[int, int]] = {}
    done = threading.Event()
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def sample() -> None:
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                for child in root.children(recursive=True):
                    try:
                        info = child.memory_full_info()
                        rss, uss = peaks.get(child.pid, (0, 0))
                        peaks[child.pid] = (max(rss, info.rss), max(uss, info.uss))
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{tool} failed ({process.returncode}):\n{stderr[-3000:]}")
    rss = max((p[0] for p in peaks.values()), default=0) / 2**20
    uss = max((p[1] for p in peaks.values()), default=0) / 2**20
    return Run(tool, seconds, count_images(), rss, uss)


def count_members(folder: Path) -> int:
    import tarfile

    total = 0
    for shard in folder.rglob("*.tar"):
        with tarfile.open(shard) as tar:
            total += sum(1 for m in tar if m.name.endswith((".jpg", ".png", ".webp")))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200, help="ordinary photos (800-3,000 px)")
    parser.add_argument("--huge", type=int, default=3, help="18,000 x 12,000 JPEGs in the mix")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--skip-img2dataset", action="store_true")
    args = parser.parse_args()

    files = corpus(args.images, args.huge)
    total_mb = sum(len(b) for b in files.values()) / 1e6
    runs = []
    with ImageServer() as server, tempfile.TemporaryDirectory() as tmp:
        for path, data in files.items():
            server.add(path, data)
        url_list = Path(tmp) / "urls.txt"
        url_list.write_text("\n".join(server.url(p) for p in files) + "\n")
        same = ["--workers", str(args.workers), "--threads", str(args.threads), "--shard-size", str(args.shard_size)]
        out = Path(tmp) / "anyres"
        anyres = [sys.executable, "-m", "anyres_data.cli", "build", "--source", "urls", "--url-list", str(url_list)]
        anyres += ["--out", str(out), "--no-progress", "--fetch-timeout", "60", *same]
        runs.append(run_measured("anyres-data build", anyres, lambda: count_members(out / "shards")))
        if not args.skip_img2dataset:
            binary = img2dataset_venv()
            for label, extra in (("", []), (", disable_all_reencoding", ["--disable_all_reencoding", "True"])):
                folder = Path(tmp) / f"img2dataset{len(runs)}"
                command = [str(binary), "--url_list", str(url_list), "--input_format", "txt"]
                command += ["--output_folder", str(folder), "--output_format", "webdataset", "--resize_mode", "no"]
                command += ["--processes_count", str(args.workers), "--thread_count", str(args.threads)]
                command += ["--number_sample_per_shard", str(args.shard_size), "--timeout", "60", *extra]
                runs.append(
                    run_measured(f"img2dataset (resize_mode=no{label})", command, lambda f=folder: count_members(f))
                )

    reference = next((r for r in runs if r.tool.startswith("img2dataset")), None)
    print(
        f"\n{len(files)} JPEGs ({args.huge} of 18,000 x 12,000), {total_mb:.0f} MB, served from 127.0.0.1; "
        f"{args.workers} workers x {args.threads} threads, {args.shard_size} images per shard\n"
    )
    print(
        "| tool | images written | seconds | images/s | vs img2dataset | worker peak RSS (MB) | worker peak USS (MB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        ratio = f"{(r.images / r.seconds) / (reference.images / reference.seconds):.2f}x" if reference else "-"
        cells = [r.tool, r.images, f"{r.seconds:.1f}", f"{r.images / r.seconds:.1f}", ratio]
        cells += [f"{r.peak_rss_mb:.0f}", f"{r.peak_uss_mb:.0f}"]
        print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
