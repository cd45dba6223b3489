"""What the benchmarks share: best-of-n timing and markdown tables (no extra dependency)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence


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
