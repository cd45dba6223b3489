"""What the benchmarks share: best-of-n timing and markdown tables (no extra dependency)."""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    """The best wall time of `repeat` calls of fn, in seconds (the least disturbed by other load)."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def cell(value: object, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, object]], digits: int = 3) -> str:
    """Rows (dicts with the same keys) as a GitHub markdown table, numbers right-aligned."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |"]
    lines.append("|" + "|".join("---:" if isinstance(rows[0][c], int | float) else "---" for c in columns) + "|")
    lines += ["| " + " | ".join(cell(row[c], digits) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def image_bench_args(
    doc: str, *, repeats: int, quick_repeats: int, repeats_help: str
) -> tuple[argparse.Namespace, int]:
    """The image benchmarks' shared flags (--quick, --repeats, --cache); returns (args, repeats to use).

    Also pins libvips and torch to one thread with no operation cache, so results are per core.
    """
    import pyvips
    import torch

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help=f"{quick_repeats} repeats per cell and a shorter loader run"
    )
    parser.add_argument("--repeats", type=int, default=repeats, help=repeats_help)
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")))
    args = parser.parse_args()
    pyvips.concurrency_set(1)
    pyvips.cache_set_max(0)
    torch.set_num_threads(1)
    return args, quick_repeats if args.quick else args.repeats


def machine_line() -> str:
    """CPUs, load average and libvips version: what a reader needs to judge a noisy timing."""
    import pyvips

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    version = f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}"
    return f"machine: {os.cpu_count()} CPUs, load average {load} at the end; libvips {version}"
