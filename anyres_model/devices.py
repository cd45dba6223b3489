"""The torch device a command runs on, from its `--device` setting."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """ "auto" (CUDA when torch sees it, else the CPU), "cpu", "cuda" or "cuda:N".

    Raises ValueError when CUDA is asked for and torch sees no CUDA device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for but torch sees no CUDA device; use --device cpu")
    return device
