"""Markdown tables for benchmark output (no extra dependency)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


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
