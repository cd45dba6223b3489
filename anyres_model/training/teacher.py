"""Teacher loss (paper eq. 4): keep patches at any scale faithful to the phase-1 generator.

d(m ⊙ w(G(z, spec)), m ⊙ G_fixed(z)): the generated patch is warped into the teacher's global
frame with a band-limited Lanczos resampler (`warp.warp_to_global`), both images are masked to
the patch's window, and d is the masked L1 plus the masked LPIPS distance ("inverse" mode of
the reference implementation).

Without LPIPS weights, `structure="laplacian"` adds a weight-free structural term: the L1 of the
difference's Laplacian-pyramid bands, each band averaged over the window. Plain L1 is dominated by
the finest band; the coarse bands weigh the patch's layout (where the hills and the shore lie) as
much as its texture, which is what zoom consistency is about.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from anyres_model.training.warp import warp_to_global

LPIPS_MAX_SIDE = 256  # larger inputs are bilinearly reduced first, as the reference does


STRUCTURE_TERMS = ("none", "laplacian")
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


class TeacherLoss(NamedTuple):
    l1: torch.Tensor  # (B,) masked mean absolute difference
    lpips: torch.Tensor  # (B,) masked mean of the spatial LPIPS map
    warped: torch.Tensor  # (B, C, n, n) the warped patches (for logging)
    mask: torch.Tensor  # (B, 1, n, n)
    structure: torch.Tensor | None = None  # (B,) the structural term (None: not used)

    @property
    def total(self) -> torch.Tensor:
        total = self.l1 + self.lpips
        return total if self.structure is None else total + self.structure


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable 5-tap binomial low-pass, per channel, reflect-padded: (B, C, H, W) → same shape."""
    k = _BINOMIAL.to(x)
    c = x.shape[1]
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def laplacian_l1(diff: torch.Tensor, mask: torch.Tensor, *, min_side: int = 4) -> torch.Tensor:
    """Mean over pyramid levels of the masked mean |band| of `diff` (B, C, n, n); mask (B, 1, n, n) in [0, 1].

    The pyramid is linear, so the bands of (a − b)·m are the differences of the bands of a·m and b·m.
    Level k is at n / 2^k; the last level (side ≥ min_side) keeps its low-pass residual. Each level's
    mean runs over the pixels the window covers at that level. Returns (B,).
    """
    x, m = diff * mask, mask
    terms = []
    while True:
        area = (m > 0).flatten(1).sum(1).clamp_min(1) * x.shape[1]  # (B,)
        if x.shape[-1] // 2 < min_side:
            terms.append((x.abs() * (m > 0)).flatten(1).sum(1) / area)
            break
        low = _blur(x)
        terms.append(((x - low).abs() * (m > 0)).flatten(1).sum(1) / area)
        x, m = low[..., ::2, ::2], F.max_pool2d(m, 2)
    return torch.stack(terms).mean(0)


def teacher_loss(
    patches: torch.Tensor,
    specs: torch.Tensor,
    teacher_images: torch.Tensor,
    lpips_model: nn.Module | None,
    *,
    structure: str = "none",
) -> TeacherLoss:
    """Masked L1 + LPIPS (+ a structural term) between patches (B,C,p,p) warped to the teacher frame and
    teacher images (B,C,n,n).

    `lpips_model` must return a spatial map (B,1,H,W) for inputs in [-1, 1] (lpips' `spatial=True`);
    None leaves the LPIPS term at zero. `structure`: "none", or "laplacian" (`laplacian_l1`).
    """
    if structure not in STRUCTURE_TERMS:
        raise ValueError(f"teacher structure term must be one of {', '.join(STRUCTURE_TERMS)}, got {structure!r}")
    n = teacher_images.shape[-1]
    warped, mask = warp_to_global(patches, specs, n)
    area = mask.flatten(1).sum(1).clamp_min(1.0)  # (B,)
    channels = patches.shape[1]
    l1 = ((warped - teacher_images).abs() * mask).flatten(1).sum(1) / (area * channels)
    structural = laplacian_l1(warped - teacher_images, mask) if structure == "laplacian" else None
    if lpips_model is None:
        return TeacherLoss(l1, torch.zeros_like(l1), warped, mask, structural)
    a, b, m = warped * mask, teacher_images * mask, mask
    if n > LPIPS_MAX_SIDE:
        a, b, m = (F.interpolate(t, size=LPIPS_MAX_SIDE, mode="bilinear", align_corners=False) for t in (a, b, m))
    dist = lpips_model(a, b)  # (B, 1, H, W)
    if dist.shape[-2:] != m.shape[-2:]:
        dist = F.interpolate(dist, size=m.shape[-2:], mode="bilinear", align_corners=False)
    lp = (dist * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1.0)
    return TeacherLoss(l1, lp, warped, mask, structural)
