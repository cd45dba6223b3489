"""Pretrained weights files, found offline: a path the user gives, else the torch hub cache."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch


def hub_checkpoint(filename: str) -> Path:
    """Where torch (torchvision, torch-fidelity) caches a downloaded file: $TORCH_HOME/hub/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def find_weights(given: str | Path | None, filename: str, *, missing: Callable[[Path], str]) -> Path:
    """`given` (with ~ expanded), else the hub cache's `filename`.

    Raises FileNotFoundError with `missing(path tried)` when that file does not exist.
    """
    path = Path(os.path.expanduser(str(given))) if given else hub_checkpoint(filename)
    if not path.is_file():
        raise FileNotFoundError(missing(path))
    return path
