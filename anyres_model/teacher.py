"""Teacher loss (paper eq. 4): keep patches at any scale faithful to the phase-1 generator.

d(m ⊙ w(G(z, spec)), m ⊙ G_fixed(z)): the generated patch is warped into the teacher's global
frame with a band-limited Lanczos resampler (`warp.warp_to_global`), both images are masked to
the patch's window, and d is the masked L1 plus the masked LPIPS distance ("inverse" mode of
the reference implementation).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from anyres_model.warp import warp_to_global

LPIPS_MAX_SIDE = 256  # larger inputs are bilinearly reduced first, as the reference does


class TeacherLoss(NamedTuple):
    l1: torch.Tensor  # (B,) masked mean absolute difference
    lpips: torch.Tensor  # (B,) masked mean of the spatial LPIPS map
    warped: torch.Tensor  # (B, C, n, n) the warped patches (for logging)
    mask: torch.Tensor  # (B, 1, n, n)

    @property
    def total(self) -> torch.Tensor:
        return self.l1 + self.lpips


def teacher_loss(
    patches: torch.Tensor,
    specs: torch.Tensor,
    teacher_images: torch.Tensor,
    lpips_model: nn.Module | None,
) -> TeacherLoss:
    """Masked L1 + LPIPS between patches (B,C,p,p) warped to the teacher frame and teacher images (B,C,n,n).

    `lpips_model` must return a spatial map (B,1,H,W) for inputs in [-1, 1] (lpips' `spatial=True`);
    None leaves the LPIPS term at zero (L1 only).
    """
    n = teacher_images.shape[-1]
    warped, mask = warp_to_global(patches, specs, n)
    area = mask.flatten(1).sum(1).clamp_min(1.0)  # (B,)
    channels = patches.shape[1]
    l1 = ((warped - teacher_images).abs() * mask).flatten(1).sum(1) / (area * channels)
    if lpips_model is None:
        return TeacherLoss(l1, torch.zeros_like(l1), warped, mask)
    a, b, m = warped * mask, teacher_images * mask, mask
    if n > LPIPS_MAX_SIDE:
        a, b, m = (F.interpolate(t, size=LPIPS_MAX_SIDE, mode="bilinear", align_corners=False) for t in (a, b, m))
    dist = lpips_model(a, b)  # (B, 1, H, W)
    if dist.shape[-2:] != m.shape[-2:]:
        dist = F.interpolate(dist, size=m.shape[-2:], mode="bilinear", align_corners=False)
    lp = (dist * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)
    return TeacherLoss(l1, lp, warped, mask)
