"""Filtered leaky ReLU: the alias-suppressed nonlinearity of StyleGAN3, in pure PyTorch.

A pointwise nonlinearity creates frequencies above the band the signal's sampling rate can hold.
StyleGAN3 therefore applies it at a temporarily higher rate: upsample (zero insertion + low-pass
`fu`), bias-free leaky ReLU * gain, clamp, then low-pass `fd` and downsample back to the output
rate. The intermediate signal is up**2 times larger than the input and dominates the generator's
cost, so this implementation

- runs the filters polyphase and separably (`fir.resample_axis`): no multiplications by inserted
  zeros, no outputs computed only to be discarded;
- processes a few (batch, channel) planes at a time, so the large intermediate stays small enough to
  live in cache and is reused between chunks instead of being allocated (page-faulted) afresh;
- saves only its input for backward and recomputes the intermediate there, chunk by chunk (memory:
  one input-sized tensor per layer instead of several up**2-sized ones). Backward is first-order
  only (no double backward through the generator's nonlinearities, which no loss here needs).

`ops.reference.filtered_lrelu_ref` is the same computation written the direct way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from anyres_model.ops.fir import adjoint_padding, filter_taps, output_length, parse_padding, resample_axis

# CPU default: high-rate samples per chunk (8 MiB in float32): they stay in cache and the memory is
# reused. (Each op is a parallel region that waits for all threads: on an oversubscribed machine
# smaller chunks, hence more ops, wait more.)
CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class _Plan:
    up_taps: tuple[float, ...]  # correlation taps, up * sqrt(gain) folded in per axis
    down_taps: tuple[float, ...]
    up: int
    down: int
    padding: tuple[int, int, int, int]  # (x0, x1, y0, y1) at the high rate
    slope: float
    clamp: float | None
    chunk_elements: int

    def high_rate_shape(self, height: int, width: int) -> tuple[int, int]:
        px0, px1, py0, py1 = self.padding
        n = len(self.up_taps)
        return (
            output_length(height, taps=n, up=self.up, down=1, pad0=py0, pad1=py1),
            output_length(width, taps=n, up=self.up, down=1, pad0=px0, pad1=px1),
        )

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        """(n, H, W) -> (n, H', W') at the high rate, gain folded in."""
        px0, px1, py0, py1 = self.padding
        x = resample_axis(x, self.up_taps, up=self.up, pad=(px0, px1), axis=2)
        return resample_axis(x, self.up_taps, up=self.up, pad=(py0, py1), axis=1)

    def downsample(self, t: torch.Tensor) -> torch.Tensor:
        t = resample_axis(t, self.down_taps, down=self.down, axis=1)
        return resample_axis(t, self.down_taps, down=self.down, axis=2)

    def upsample_adjoint(self, g: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Adjoint of `upsample` for an input of height x width."""
        px0, _, py0, _ = self.padding
        n, rev = len(self.up_taps), self.up_taps[::-1]
        pad_y = adjoint_padding(height, g.shape[1], taps=n, up=self.up, down=1, pad0=py0)
        g = resample_axis(g, rev, down=self.up, pad=pad_y, axis=1)
        pad_x = adjoint_padding(width, g.shape[2], taps=n, up=self.up, down=1, pad0=px0)
        return resample_axis(g, rev, down=self.up, pad=pad_x, axis=2)

    def downsample_adjoint(self, g: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Adjoint of `downsample` for a high-rate signal of height x width."""
        n, rev = len(self.down_taps), self.down_taps[::-1]
        pad_x = adjoint_padding(width, g.shape[2], taps=n, up=1, down=self.down, pad0=0)
        g = resample_axis(g, rev, up=self.down, pad=pad_x, axis=2)
        pad_y = adjoint_padding(height, g.shape[1], taps=n, up=1, down=self.down, pad0=0)
        return resample_axis(g, rev, up=self.down, pad=pad_y, axis=1)


def _chunks(rows: int, per_row: int, budget: int) -> list[slice]:
    step = max(1, budget // max(per_row, 1))
    return [slice(i, min(i + step, rows)) for i in range(0, rows, step)]


def _compute_type(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class _FilteredLReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, plan: _Plan):
        batch, channels, height, width = x.shape
        rows = x.reshape(batch * channels, height, width)  # (N, H, W): filters act per plane
        bias = b.to(_compute_type(x.dtype)).repeat(batch)  # (N,)
        th, tw = plan.high_rate_shape(height, width)
        out = None
        with torch.no_grad():
            for chunk in _chunks(rows.shape[0], th * tw, plan.chunk_elements):
                t = plan.upsample(rows[chunk].to(bias.dtype) + bias[chunk, None, None])
                F.leaky_relu(t, plan.slope, inplace=True)
                if plan.clamp is not None:
                    t.clamp_(-plan.clamp, plan.clamp)
                y = plan.downsample(t)
                if out is None:
                    out = x.new_empty(rows.shape[0], y.shape[1], y.shape[2])
                out[chunk] = y
        ctx.save_for_backward(x, b)
        ctx.plan = plan
        return out.reshape(batch, channels, out.shape[1], out.shape[2])

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        plan: _Plan = ctx.plan
        batch, channels, height, width = x.shape
        rows = x.reshape(batch * channels, height, width)
        grads = dy.reshape(batch * channels, dy.shape[2], dy.shape[3])
        bias = b.to(_compute_type(x.dtype)).repeat(batch)
        th, tw = plan.high_rate_shape(height, width)
        dx = torch.empty_like(rows)
        for chunk in _chunks(rows.shape[0], th * tw, plan.chunk_elements):
            t = plan.upsample(rows[chunk].to(bias.dtype) + bias[chunk, None, None])  # recomputed
            g = plan.downsample_adjoint(grads[chunk].to(bias.dtype), th, tw)
            slope = torch.ones_like(t).masked_fill_(t <= 0, plan.slope)  # d lrelu / dt
            if plan.clamp is not None:
                slope.masked_fill_(F.leaky_relu(t, plan.slope).abs() > plan.clamp, 0.0)
            g.mul_(slope)
            dx[chunk] = plan.upsample_adjoint(g, height, width)
        dx = dx.reshape(x.shape)
        db = dx.sum(dim=(0, 2, 3), dtype=bias.dtype).to(b.dtype) if ctx.needs_input_grad[1] else None
        return dx, db, None


def filtered_lrelu(
    x: torch.Tensor,
    *,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    gain: float = 2**0.5,
    slope: float = 0.2,
    clamp: float | None = None,
    chunk_elements: int | None = None,
) -> torch.Tensor:
    """Bias, upsample by `up` with fu, leaky ReLU * gain, clamp, downsample by `down` with fd.

    x: (B, C, H, W) in float32/float64/float16/bfloat16 (half types are computed in float32);
    b: (C,) or None; fu, fd: 1-D filters (separable) or None (identity); padding: int or
    (x0, x1, y0, y1) at the upsampled rate (negative crops). Output (B, C, H', W') with
    H' = ((H*up + y0 + y1 - len(fu) + 1) - len(fd)) // down + 1, same for W'. chunk_elements: high-rate
    samples processed at a time (None: CHUNK_ELEMENTS on CPU, everything at once elsewhere); a memory
    and speed knob, results do not depend on it.
    Raises ValueError for a non-4-D input, a bias of the wrong length, or gain <= 0.
    """
    if x.ndim != 4:
        raise ValueError(f"filtered_lrelu expects (B, C, H, W), got shape {tuple(x.shape)}")
    if gain <= 0:
        raise ValueError(f"gain must be > 0 (it is folded into the upsampling filter), got {gain}")
    channels = x.shape[1]
    if b is None:
        b = torch.zeros(channels, dtype=x.dtype, device=x.device)
    if b.shape != (channels,):
        raise ValueError(f"bias must have shape ({channels},), got {tuple(b.shape)}")
    plan = _Plan(
        up_taps=filter_taps(fu, gain=up**2 * gain),
        down_taps=filter_taps(fd),
        up=int(up),
        down=int(down),
        padding=parse_padding(padding),
        slope=float(slope),
        clamp=None if clamp is None else float(clamp),
        chunk_elements=max(1, chunk_elements or (CHUNK_ELEMENTS if x.device.type == "cpu" else 1 << 62)),
    )
    return _FilteredLReLU.apply(x.contiguous(), b, plan)
