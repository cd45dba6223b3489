"""FIR filter design and up/down-sampling with separable filters (upfirdn2d semantics), in pure PyTorch.

`upfirdn2d(x, f, up, down, padding)` does what StyleGAN's op of that name does: insert `up - 1`
zeros after every sample, pad (negative padding crops), convolve with the filter `f`, keep every
`down`-th sample. Filters here are 1-D and applied along x and then y (a separable 2-D filter, the
outer product of `f` with itself).

Unlike the obvious computation (`ops.reference.upfirdn2d_ref`), nothing is multiplied by an inserted
zero and nothing is computed only to be thrown away: upsampling is polyphase (each of the `up` output
phases correlates the input with its own sub-filter), downsampling only evaluates the kept outputs,
and each tap is one fused multiply-add over a strided view. `resample_axis` is that 1-D kernel; it
runs without autograd, and `upfirdn2d` wraps it in an autograd function whose backward is the adjoint
resampling (swap `up` and `down`, reverse the taps), so gradients of any order are exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F


def design_lowpass_filter(*, numtaps: int, cutoff: float, width: float, fs: float) -> torch.Tensor | None:
    """Kaiser-windowed sinc low-pass filter (`scipy.signal.firwin`), as a float32 (numtaps,) tensor.

    `cutoff` and the transition band `width` are in the same units as the sampling rate `fs`.
    Returns None for numtaps == 1 (the identity filter).
    """
    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
    return torch.as_tensor(np.asarray(taps, dtype=np.float32))


def parse_padding(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """An int or (x0, x1, y0, y1) -> (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        return (padding, padding, padding, padding)
    if len(padding) == 2:
        px, py = padding
        return (int(px), int(px), int(py), int(py))
    if len(padding) != 4:
        raise ValueError(f"padding is an int, (px, py) or (x0, x1, y0, y1), got {padding!r}")
    return tuple(int(p) for p in padding)  # type: ignore[return-value]


def _view(x: torch.Tensor, axis: int, start: int, count: int, step: int = 1) -> torch.Tensor:
    """x[..., start : start + step*(count-1) + 1 : step] along `axis` of a 3-D tensor."""
    index = [slice(None)] * 3
    index[axis] = slice(start, start + step * (count - 1) + 1, step)
    return x[tuple(index)]


def _accumulate(dst: torch.Tensor, terms: Sequence[tuple[torch.Tensor, int, int, float]], *, axis: int) -> None:
    """dst[j] = sum of tap * src[offset + step*j] over terms (src, offset, step, tap), in place along `axis`.

    Samples outside a source count as zero: each term only touches the outputs whose sample exists,
    so no padded copy of the input is ever made.
    """
    count = dst.shape[axis]
    written = False
    for src, offset, step, tap in terms:
        lo = max(0, -(offset // step))  # first j with offset + step*j >= 0
        hi = min(count, (src.shape[axis] - 1 - offset) // step + 1)  # past the last j inside src
        if hi <= lo:
            continue
        part = _view(dst, axis, lo, hi - lo)
        sample = _view(src, axis, offset + step * lo, hi - lo, step)
        if written:
            part.add_(sample, alpha=tap)
            continue
        torch.mul(sample, tap, out=part)
        if lo > 0:
            _view(dst, axis, 0, lo).zero_()
        if hi < count:
            _view(dst, axis, hi, count - hi).zero_()
        written = True
    if not written:
        dst.zero_()


def output_length(n: int, *, taps: int, up: int, down: int, pad0: int, pad1: int) -> int:
    """Samples out of one axis of upfirdn: (n*up + pad0 + pad1 - taps) // down + 1."""
    return (n * up + pad0 + pad1 - taps) // down + 1


@torch.no_grad()
def resample_axis(
    x: torch.Tensor, taps: Sequence[float], *, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0), axis: int
) -> torch.Tensor:
    """upfirdn along one axis of a (N, H, W) tensor (axis 1 = H, 2 = W), without autograd.

    `taps` are correlation taps: out[q] = sum_t taps[t] * z[q*down + t], where z is the input with
    up-1 zeros inserted after each sample and `pad` zeros added before/after (negative: cropped).
    Raises ValueError when the result would be empty.
    """
    n = x.shape[axis]
    pad0, pad1 = pad
    q = n * up + pad0 + pad1 - len(taps) + 1  # outputs before decimation
    if q < 1:
        raise ValueError(f"upfirdn of {n} samples with {len(taps)} taps, up={up}, pad={pad} leaves nothing")
    rows, height, width = x.shape
    if up == 1:
        # out[j] = sum_t taps[t] * x[down*j + t - pad0]
        shape = [rows, height, width]
        shape[axis] = (q - 1) // down + 1
        out = x.new_empty(shape)
        if down == 1 or axis == 1:  # rows: a strided slice still reads whole contiguous rows
            _accumulate(out, [(x, t - pad0, down, tap) for t, tap in enumerate(taps)], axis=axis)
            return out
        # Along x, split the input into its `down` phases once, so that every tap reads contiguous memory.
        m = -(-n // down)
        xp = F.pad(x, (0, m * down - n)) if m * down != n else x
        planes = xp.unflatten(2, (m, down)).permute(3, 0, 1, 2).contiguous()  # (down, N, H, m)
        terms = [(planes[(t - pad0) % down], (t - pad0) // down, 1, tap) for t, tap in enumerate(taps)]
        _accumulate(out, terms, axis=2)
        return out

    # Polyphase: output q = up*a + r only meets the taps t = t0(r) + up*k, which read input a + k + e(r).
    count = -(-q // up)  # outputs per phase, ceil(q / up)
    # (N, A, up, W): phases interleave along H; (N, H, up, A): contiguous per phase, transposed below
    out = x.new_empty((rows, count, up, width) if axis == 1 else (rows, height, up, count))
    for r in range(up):
        t0 = (pad0 - r) % up
        e = (r + t0 - pad0) // up
        terms = [(x, e + k, 1, tap) for k, tap in enumerate(taps[t0::up])]
        _accumulate(out[:, :, r], terms, axis=axis)
    out = out.reshape(rows, count * up, width) if axis == 1 else out.transpose(2, 3).reshape(rows, height, count * up)
    out = out.narrow(axis, 0, q)
    if down > 1:
        out = _view(out, axis, 0, (q - 1) // down + 1, down)
    return out


def adjoint_padding(n_in: int, n_out: int, *, taps: int, up: int, down: int, pad0: int) -> tuple[int, int]:
    """Padding of the adjoint resampling (up and down swapped, taps reversed) that maps n_out back to n_in."""
    return (taps - pad0 - 1, n_in * up - n_out * down + pad0 - up + 1)


class _UpFirDn2d(torch.autograd.Function):
    """Separable upfirdn2d on (B, C, H, W); backward is the same op with the adjoint parameters."""

    @staticmethod
    def forward(ctx, x, taps, up, down, padding):  # taps: tuple of floats (correlation order)
        px0, px1, py0, py1 = padding
        batch, channels, height, width = x.shape
        y = x.reshape(batch * channels, height, width)
        y = resample_axis(y, taps, up=up, down=down, pad=(px0, px1), axis=2)
        y = resample_axis(y, taps, up=up, down=down, pad=(py0, py1), axis=1)
        ctx.params = (taps, up, down, padding, height, width)
        return y.reshape(batch, channels, y.shape[1], y.shape[2])

    @staticmethod
    def backward(ctx, dy):
        taps, up, down, (px0, _, py0, _), height, width = ctx.params
        n = len(taps)
        ax0, ax1 = adjoint_padding(width, dy.shape[3], taps=n, up=up, down=down, pad0=px0)
        ay0, ay1 = adjoint_padding(height, dy.shape[2], taps=n, up=up, down=down, pad0=py0)
        dx = _UpFirDn2d.apply(dy.contiguous(), taps[::-1], down, up, (ax0, ax1, ay0, ay1))
        return dx, None, None, None, None


def filter_taps(f: torch.Tensor | None, *, gain: float = 1.0, flip_filter: bool = False) -> tuple[float, ...]:
    """A 1-D filter as correlation taps with the per-axis share sqrt(gain) of a 2-D gain folded in."""
    if f is None:
        return (math.sqrt(gain),)
    if f.ndim != 1:
        raise ValueError(f"filters are 1-D (applied along x and y), got shape {tuple(f.shape)}")
    values = f.detach().double().cpu().tolist()
    if not flip_filter:  # convolution = correlation with the reversed filter
        values = values[::-1]
    scale = math.sqrt(gain)
    return tuple(v * scale for v in values)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    *,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    gain: float = 1.0,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Upsample, filter with the separable filter f (1-D, applied along x and y), downsample.

    x: (B, C, H, W). Output: (B, C, H', W') with W' = (W*up + px0 + px1 - len(f)) // down + 1 (same for H).
    padding: int or (x0, x1, y0, y1), negative crops. gain: overall 2-D gain (up**2 keeps the
    signal level when upsampling). f = None is the identity filter. Differentiable to any order.
    Raises ValueError for a non-4-D input, a 2-D filter, or an empty result.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects (B, C, H, W), got shape {tuple(x.shape)}")
    if up < 1 or down < 1:
        raise ValueError(f"up and down must be >= 1, got up={up}, down={down}")
    taps = filter_taps(f, gain=gain, flip_filter=flip_filter)
    return _UpFirDn2d.apply(x.contiguous(), taps, int(up), int(down), parse_padding(padding))
