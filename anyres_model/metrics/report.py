"""Evaluation results as a JSON file next to the checkpoint (the terminal table: `anyres_model.cli.evaluate`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
