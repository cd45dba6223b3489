"""Patch specs: which window of the unit-square image a p×p patch shows, and at which scale.

An image is a function on the unit square [0, 1]², x to the right, y down. A spec
`(s, x0, y0, p)` names the p×p pixel window whose top-left corner lies at (x0, y0) in the
s×s rendering of the unit square. Pixel (i, j) of the patch covers
[(x0+i)/s, (x0+i+1)/s] × [(y0+j)/s, (y0+j+1)/s]; its centre is ((x0+i+0.5)/s, (y0+j+0.5)/s).

`spec_axes` / `spec_grid` are the only places that turn a spec into coordinates; the data side
(sampler, warps) and the model side (Fourier features, rendering) both call them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

SPEC_COLUMNS = ("s", "x0", "y0", "p")


@dataclass(frozen=True)
class PatchSpec:
    """A p×p window of the s×s rendering of the unit square; offsets and s in pixels (floats)."""

    s: float
    x0: float
    y0: float
    p: int

    def __post_init__(self) -> None:
        if not self.s > 0:
            raise ValueError(f"spec scale s must be > 0, got {self.s}")
        if int(self.p) != self.p or self.p < 1:
            raise ValueError(f"spec patch size p must be a positive integer, got {self.p}")

    @classmethod
    def global_(cls, p: int) -> PatchSpec:
        """The whole unit square rendered at p×p: s = p, offsets 0, centre (0.5, 0.5)."""
        return cls(float(p), 0.0, 0.0, int(p))

    @classmethod
    def from_centre(cls, *, s: float, v: tuple[float, float], p: int) -> PatchSpec:
        """The spec whose patch centre is v = (vx, vy) in unit-square coordinates."""
        return cls(float(s), v[0] * s - p / 2, v[1] * s - p / 2, int(p))

    @property
    def centre(self) -> tuple[float, float]:
        """Patch centre v in unit-square coordinates."""
        return ((self.x0 + self.p / 2) / self.s, (self.y0 + self.p / 2) / self.s)

    @property
    def scale(self) -> float:
        """Zoom relative to the global patch: s / p (1 for the global patch)."""
        return self.s / self.p

    @property
    def window(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the patch in unit-square coordinates."""
        return (self.x0 / self.s, self.y0 / self.s, (self.x0 + self.p) / self.s, (self.y0 + self.p) / self.s)

    def box(self, side: float) -> tuple[float, float, float, float]:
        """The patch's window in pixel coordinates of a `side`×`side` image of the unit square.

        This is the `box=` argument of PIL's `Image.resize((p, p), box=...)` for that image.
        """
        left, top, right, bottom = self.window
        return (left * side, top * side, right * side, bottom * side)

    def resampled(self, n: int) -> PatchSpec:
        """The same window rendered with n×n pixels instead of p×p (scale changes by n/p)."""
        f = n / self.p
        return PatchSpec(self.s * f, self.x0 * f, self.y0 * f, int(n))

    def as_tuple(self) -> tuple[float, float, float, int]:
        return (self.s, self.x0, self.y0, self.p)


def specs_to_tensor(specs: Sequence[PatchSpec], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Stack specs into a (B, 4) tensor with columns (s, x0, y0, p)."""
    return torch.tensor([spec.as_tuple() for spec in specs], dtype=dtype).reshape(len(specs), 4)


def tensor_to_specs(t: torch.Tensor) -> list[PatchSpec]:
    """Inverse of `specs_to_tensor` for a (B, 4) tensor."""
    return [PatchSpec(float(s), float(x0), float(y0), round(float(p))) for s, x0, y0, p in t.tolist()]


def as_spec_tensor(spec: PatchSpec | Sequence[PatchSpec] | torch.Tensor) -> torch.Tensor:
    """Any spec form as a (B, 4) float64 tensor."""
    if isinstance(spec, PatchSpec):
        return specs_to_tensor([spec])
    if isinstance(spec, torch.Tensor):
        if spec.ndim == 1:
            spec = spec[None]
        if spec.shape[-1] != 4:
            raise ValueError(f"spec tensors have 4 columns (s, x0, y0, p), got shape {tuple(spec.shape)}")
        return spec.to(torch.float64)
    return specs_to_tensor(list(spec))


def spec_axes(
    spec: PatchSpec | Sequence[PatchSpec] | torch.Tensor,
    n: int | None = None,
    margin: float = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates along x and y of each spec's window rendered with n pixels.

    Returns (xs, ys), each (B, n + 2*margin): the unit-square coordinates of pixel centres
    i = -margin .. n+margin-1 of the window sampled at n pixels across (n defaults to p, which
    must then be the same for every spec). `margin` may be fractional for grids whose
    first sample is not pixel-aligned. Computed in float64, returned in `dtype`.
    """
    t = as_spec_tensor(spec).to(device=device)
    s, x0, y0, p = t.unbind(-1)
    if n is None:
        if not bool((p == p[0]).all()):
            raise ValueError("specs with different p need an explicit n")
        n = round(float(p[0]))
    count = round(n + 2 * margin)
    i = torch.arange(count, dtype=torch.float64, device=t.device) - margin + 0.5  # (N,)
    step = (p / n)[:, None]  # source pixels of the s-rendering per output pixel, (B, 1)
    xs = (x0[:, None] + i[None] * step) / s[:, None]  # (B, N)
    ys = (y0[:, None] + i[None] * step) / s[:, None]  # (B, N)
    return xs.to(dtype), ys.to(dtype)


def spec_grid(
    spec: PatchSpec | Sequence[PatchSpec] | torch.Tensor,
    n: int | None = None,
    margin: float = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Coordinate grid of each spec: (B, N, N, 2) with [..., 0] = x and [..., 1] = y, N = n + 2*margin.

    grid[b, j, i] is the centre of pixel (i, j) (row j, column i) in unit-square coordinates.
    """
    xs, ys = spec_axes(spec, n=n, margin=margin, dtype=dtype, device=device)
    count = xs.shape[1]
    gx = xs[:, None, :].expand(-1, count, -1)  # (B, N, N)
    gy = ys[:, :, None].expand(-1, -1, count)  # (B, N, N)
    return torch.stack([gx, gy], dim=-1)
