"""Band-limited warp of a generated patch into the frame of the global (teacher) image.

The teacher loss (paper eq. 4) compares a patch rendered at scale s with the teacher's global
p×p image. The patch covers the window `spec.window` of the unit square at s pixels per unit;
the teacher sees the same window at n pixels per unit. Each teacher pixel inside the window is
a Lanczos-3 filtered sample of the patch, with the kernel stretched to the teacher's pixel
size so the result is band-limited at the teacher's Nyquist rate (a proper downsampling, not a
point sample). The warp is separable and linear, so it is two small matrix products and
differentiable with respect to the patch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from anyres_data.spec import PatchSpec, as_spec_tensor, spec_axes


def lanczos(x: torch.Tensor, a: int = 3) -> torch.Tensor:
    """Lanczos-a kernel sinc(x)·sinc(x/a) on |x| < a, zero outside."""
    return torch.where(x.abs() < a, torch.sinc(x) * torch.sinc(x / a), torch.zeros_like(x))


class Warped(NamedTuple):
    image: torch.Tensor  # (B, C, n, n) the patch resampled into the teacher's frame, 0 outside
    mask: torch.Tensor  # (B, 1, n, n) 1 where the teacher pixel's centre lies inside the patch window


def _axis_weights(
    patch_centres: torch.Tensor, frame_centres: torch.Tensor, n: int, a: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-normalised resampling weights (B, n, p) from patch pixels to frame pixels, and row validity (B, n)."""
    # distance measured in frame pixels: the kernel is stretched to the frame's (coarser) pixel size
    d = (patch_centres[:, None, :] - frame_centres[:, :, None]) * n  # (B, n, p)
    w = lanczos(d, a)
    step = patch_centres[:, 1:2] - patch_centres[:, 0:1] if patch_centres.shape[1] > 1 else None
    half = 0.5 * step if step is not None else torch.zeros_like(patch_centres[:, :1])
    inside = (frame_centres >= patch_centres[:, :1] - half) & (frame_centres <= patch_centres[:, -1:] + half)  # (B, n)
    total = w.sum(-1, keepdim=True)
    w = torch.where(inside[..., None], w / total.clamp_min(1e-8), torch.zeros_like(w))
    return w, inside


def warp_to_global(
    patch: torch.Tensor,
    spec: PatchSpec | list[PatchSpec] | torch.Tensor,
    n: int,
    *,
    a: int = 3,
) -> Warped:
    """Resample patches (B, C, p, p) rendered at `spec` into the n×n global frame (s = n).

    Frame pixels whose centre lies outside the patch window get 0 and mask 0. For the global
    spec (s = p = n, no offset) the warp is the identity. Assumes the patch is at least as
    finely sampled as the frame (s ≥ n), which is how training draws specs.
    """
    specs = as_spec_tensor(spec).to(patch.device)
    if specs.shape[0] != patch.shape[0]:
        raise ValueError(f"{patch.shape[0]} patches but {specs.shape[0]} specs")
    p = patch.shape[-1]
    px, py = spec_axes(specs, n=p, dtype=torch.float64, device=patch.device)  # (B, p) patch pixel centres
    fx, _ = spec_axes(PatchSpec.global_(n), dtype=torch.float64, device=patch.device)  # (1, n) frame centres
    fx = fx.expand(patch.shape[0], -1)
    wx, inside_x = _axis_weights(px, fx, n, a)  # (B, n, p), (B, n)
    wy, inside_y = _axis_weights(py, fx, n, a)
    wx, wy = wx.to(patch.dtype), wy.to(patch.dtype)
    image = torch.einsum("bij,bcjk,blk->bcil", wy, patch, wx)  # (B, C, n, n)
    mask = (inside_y[:, :, None] & inside_x[:, None, :]).to(patch.dtype)[:, None]  # (B, 1, n, n)
    return Warped(image, mask)
