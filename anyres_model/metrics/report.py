"""Presenting evaluation results: a rich table for the terminal and a JSON file next to the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table


def _detail(name: str, result: dict[str, Any]) -> str:
    parts = []
    if "kid" in result:
        kid = result["kid"]
        parts.append(f"KID×1e3 {kid['mean'] * 1e3:.3f} ± {kid['std'] * 1e3:.3f}")
    if "levels" in result:
        parts.append("levels " + " ".join(f"{res}:{v:.2f}" for res, v in result["levels"].items()))
    counts = [f"{k.removeprefix('n_')} {v}" for k, v in result.items() if k.startswith("n_")]
    if counts:
        parts.append("n " + ", ".join(counts))
    if result.get("excluded_small"):
        parts.append(f"{result['excluded_small']} real images < {result['size']} px excluded")
    if "real_source" in result:
        parts.append(f"reals from {result['real_source']}")
    return "; ".join(parts)


def results_table(results: dict[str, Any], *, title: str = "anyres-eval") -> Table:
    """One row per metric: name, headline value, and details (KID, SWD levels, counts, exclusions)."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("details")
    for name, result in results["metrics"].items():
        table.add_row(name, f"{result['value']:.3f}", _detail(name, result))
    if (results.get("inception") or {}).get("source") == "random":
        table.caption = "Inception with RANDOM weights: FID/KID values are for testing the plumbing only."
    return table


def default_json_path(checkpoint: str | Path) -> Path:
    """CKPT.pt → CKPT.eval.json beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".eval.json")


def write_json(results: dict[str, Any], path: str | Path) -> Path:
    """Write results as indented JSON (via a temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
