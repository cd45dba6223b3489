"""Exponential moving average of generator weights, counted in images as StyleGAN does."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(*, batch: int, nimg: int, ema_kimg: float, rampup: float | None) -> float:
    """Per-step decay so that the average spans `ema_kimg` thousand images.

    With `rampup` the span grows with training (at most `rampup` × images seen so far), so the
    average forgets the random initialisation quickly.
    """
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, nimg * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema ← beta·ema + (1 − beta)·model for parameters; buffers (e.g. magnitude EMAs, w_avg) are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)
