"""The synthesis input: band-limited Fourier features evaluated on a patch's coordinate grid.

StyleGAN3 starts from sinusoids with random frequencies inside a disk of radius `bandwidth` (the
first layer's cutoff) and random phases, sampled on a fixed grid over [-0.5, 0.5]² at the first
layer's sampling rate plus margins. Here the grid is the patch's: `spec_axes` gives the unit-square
coordinates of the p·rate/P first-layer samples across the window (plus margins), and the features
are the same continuous function evaluated there. The global spec (s = P) reproduces StyleGAN3's
grid exactly; a spec at scale s samples the same function s/P times more densely, so G(z, spec)
renders that window of the same image.

A learned rotation and translation from w (StyleGAN3's input transform, identity at
initialisation) moves the whole image, and an amplitude fade removes frequencies that a zoom-out
(s < P) would push above the first layer's band.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from anyres_data.spec import spec_axes
from anyres_model.networks.equalized import FullyConnected


class FourierInput(nn.Module):
    """w (B, w_dim) and specs (B, 4) -> features (B, channels, n + 2*margin, n + 2*margin)."""

    def __init__(self, *, w_dim: int, channels: int, rate: int, bandwidth: float, margin: int, patch_size: int) -> None:
        super().__init__()
        self.channels, self.rate, self.bandwidth = channels, rate, bandwidth
        self.margin, self.patch_size = margin, patch_size
        freqs = torch.randn(channels, 2)
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth  # inside the disk |f| < bandwidth
        self.register_buffer("freqs", freqs)  # (C, 2), cycles per unit
        self.register_buffer("phases", torch.rand(channels) - 0.5)  # (C,), cycles
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = FullyConnected(w_dim, 4, weight_init=0.0, bias_init=[1.0, 0.0, 0.0, 0.0])

    def forward(self, w: torch.Tensor, specs: torch.Tensor, n: int) -> torch.Tensor:
        """specs: (B, 4) float64 (s, x0, y0, p); n: first-layer samples across the patch (p * rate / P)."""
        # Learned transform (cos, sin, tx, ty), as StyleGAN3: rotate, then translate the image.
        t = self.affine(w)  # (B, 4)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = t.unbind(dim=1)
        rot = torch.stack([torch.stack([cos, -sin], dim=-1), torch.stack([sin, cos], dim=-1)], dim=-2)  # (B, 2, 2)
        shift = -(rot @ torch.stack([tx, ty], dim=-1)[..., None])  # (B, 2, 1)
        freqs = self.freqs[None] @ rot  # (B, C, 2)
        phases = self.phases[None] + (self.freqs[None] @ shift)[..., 0]  # (B, C)

        # A window at scale s has s/P times the global image's samples per unit: frequencies look
        # P/s times higher to the first layer. Fade those beyond its band (only when s < P).
        apparent = freqs.norm(dim=2) * (self.patch_size / specs[:, 0, None].to(freqs.dtype))  # (B, C)
        amplitudes = (1 - (apparent - self.bandwidth) / (self.rate / 2 - self.bandwidth)).clamp(0, 1)

        # Coordinates of the first layer's samples, centred: StyleGAN3's frame is [-0.5, 0.5]².
        xs, ys = spec_axes(specs, n=n, margin=self.margin, dtype=torch.float64, device=w.device)  # (B, N)
        cx, cy = (xs - 0.5).to(freqs.dtype), (ys - 0.5).to(freqs.dtype)
        fx, fy = freqs[..., 0, None, None], freqs[..., 1, None, None]  # (B, C, 1, 1)
        arg = fx * cx[:, None, None, :] + fy * cy[:, None, :, None] + phases[..., None, None]  # (B, C, N, N)
        x = torch.sin(arg * (2 * math.pi)) * amplitudes[..., None, None]
        weight = self.weight / math.sqrt(self.channels)
        return F.conv2d(x, weight[:, :, None, None])  # (B, C, N, N): learned 1x1 linear map

    def extra_repr(self) -> str:
        return f"channels={self.channels}, rate={self.rate}, bandwidth={self.bandwidth:g}, margin={self.margin}"
