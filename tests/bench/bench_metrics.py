"""Benchmark: pSWD on N patches and FID feature extraction on N images, time and peak memory, side by side.

    python -m tests.bench.bench_metrics                 # N = 10000 (the issue's size)
    python -m tests.bench.bench_metrics --n 1000        # quick run; the table adds a linear extrapolation to 10k

Each task runs in its own spawned process, so its peak RSS (ru_maxrss) is its own. Inputs are
synthetic uint8 images (smooth colour fields plus fine texture); the Inception network has
random weights, which costs exactly what the real weights cost. pSWD counts descriptor
extraction for both sets and the distance (4 × 128 projections, sorted, per level).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
import time

import torch
import torch.nn.functional as F

REFERENCE_N = 10_000


def textures(n: int, size: int, *, seed: int) -> torch.Tensor:
    """uint8 (n, 3, size, size), generated in chunks of 256."""
    out = []
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n, 256):
        b = min(256, n - start)
        low = F.interpolate(torch.rand(b, 3, 4, 4, generator=g), size=size, mode="bicubic", align_corners=False)
        x = low + 0.2 * torch.randn(b, 3, size, size, generator=g)
        out.append((x.clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.cat(out)


def task_pswd(n: int, p: int, threads: int, queue: mp.Queue) -> None:
    from anyres_model.metrics.swd import DescriptorSet, swd

    torch.set_num_threads(threads)
    a, b = textures(n, p, seed=0), textures(n, p, seed=1)
    start = time.perf_counter()
    sets = []
    for images in (a, b):
        ds = DescriptorSet(seed=0)
        for part in images.split(256):
            ds.add(part)
        sets.append(ds)
    mid = time.perf_counter()
    result = swd(sets[0], sets[1], seed=0)
    end = time.perf_counter()
    queue.put(
        {
            "task": f"pSWD, {p}px patches, 2 sets",
            "seconds": end - start,
            "detail": (
                f"descriptors {mid - start:.1f}s + distance {end - mid:.1f}s; {len(result.levels)} levels; "
                f"descriptor storage {2 * n * 128 * len(result.levels) * 294 / 2**20:.0f} MB for both sets "
                f"({2 * REFERENCE_N * 128 * len(result.levels) * 294 / 2**20:.0f} MB at n = {REFERENCE_N})"
            ),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def task_fid_features(n: int, size: int, batch: int, threads: int, device: str, queue: mp.Queue) -> None:
    from anyres_model.metrics.fid import FeatureAccumulator
    from anyres_model.metrics.inception import load_inception

    torch.set_num_threads(threads)
    inception = load_inception("random", device=device)
    images = textures(n, size, seed=2)
    acc = FeatureAccumulator(2048)
    start = time.perf_counter()
    for part in images.split(batch):
        acc.add(inception.features(part))
    acc.stats()
    end = time.perf_counter()
    queue.put(
        {
            "task": f"FID features, {size}px images → 299, Inception-v3 ({device})",
            "seconds": end - start,
            "detail": f"batch {batch}; includes mean/covariance accumulation",
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def run_task(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=REFERENCE_N, help="patches / images per task")
    parser.add_argument("--p", type=int, default=64, help="pSWD patch size (64: 3 pyramid levels; 256: 5)")
    parser.add_argument("--fid-size", type=int, default=256, help="image size fed to Inception (resized to 299)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="device for Inception (cpu, cuda)")
    parser.add_argument("--only", choices=("pswd", "fid"), help="run one task only")
    args = parser.parse_args()

    rows = []
    if args.only in (None, "pswd"):
        rows.append(run_task(task_pswd, args.n, args.p, args.threads))
    if args.only in (None, "fid"):
        rows.append(run_task(task_fid_features, args.n, args.fid_size, args.batch, args.threads, args.device))
    print(f"\n{platform.processor() or platform.machine()}, {args.threads} torch threads, n = {args.n}\n")
    extrapolate = args.n != REFERENCE_N
    header = "| task | n | seconds | ms / item | peak RSS (MB) |"
    if extrapolate:
        header += f" seconds at n = {REFERENCE_N} (extrapolated, linear) |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        line = (
            f"| {row['task']} | {args.n} | {row['seconds']:.1f} | {1e3 * row['seconds'] / args.n:.2f} "
            f"| {row['peak_mb']:.0f} |"
        )
        if extrapolate:
            line += f" {row['seconds'] * REFERENCE_N / args.n:.0f} |"
        print(line)
    print()
    for row in rows:
        print(f"- {row['task']}: {row['detail']}")


if __name__ == "__main__":
    main()
