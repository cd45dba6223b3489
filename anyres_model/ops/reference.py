"""Direct, obviously-correct versions of the ops: the yardstick for tests and the benchmark's baseline.

These follow StyleGAN3's pure-PyTorch fallback: upsampling inserts zeros and convolves the whole
zero-stuffed signal, downsampling convolves at the high rate and then throws samples away, filters
run as depthwise (grouped) convolutions, and the modulated convolution builds one weight tensor per
sample and runs it as a grouped convolution. Slow, and easy to check by eye.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from anyres_model.ops.fir import parse_padding


def upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor | None,
    *,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    gain: float = 1.0,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Zero-insertion upsampling, pad/crop, convolution with f, decimation.

    f: None, 1-D (separable: one pass along x, one along y, gain split between them) or 2-D
    (a full 2-D convolution, e.g. with the outer product of a 1-D filter).
    """
    batch, channels, height, width = x.shape
    px0, px1, py0, py1 = parse_padding(padding)
    if f is None:
        f = torch.ones(1, dtype=x.dtype, device=x.device)
    # Upsample by inserting up-1 zeros after every sample.
    x = x.reshape(batch, channels, height, 1, width, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape(batch, channels, height * up, width * up)
    # Pad (negative: crop).
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    # Convolve (conv2d correlates, so flip the filter for a true convolution).
    f = f.to(x.dtype) * gain ** (f.ndim / 2)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 1:
        fx = f.reshape(1, 1, 1, -1).repeat(channels, 1, 1, 1)  # (C, 1, 1, k)
        fy = f.reshape(1, 1, -1, 1).repeat(channels, 1, 1, 1)  # (C, 1, k, 1)
        x = F.conv2d(x, fx, groups=channels)
        x = F.conv2d(x, fy, groups=channels)
    else:
        x = F.conv2d(x, f[None, None].repeat(channels, 1, 1, 1), groups=channels)
    # Downsample by throwing samples away.
    return x[:, :, ::down, ::down]


def bias_act_ref(
    x: torch.Tensor, b: torch.Tensor | None, *, slope: float, gain: float, clamp: float | None
) -> torch.Tensor:
    """x + b (per channel), leaky ReLU with `slope` (1 = linear), times gain, clamped to [-clamp, clamp]."""
    if b is not None:
        x = x + b.reshape(1, -1, 1, 1).to(x.dtype)
    if slope != 1:
        x = F.leaky_relu(x, slope)
    x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def filtered_lrelu_ref(
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
) -> torch.Tensor:
    """Bias, upsample with fu, leaky ReLU * gain, clamp, downsample with fd (StyleGAN3's reference order)."""
    x = bias_act_ref(x, b, slope=1.0, gain=1.0, clamp=None)
    x = upfirdn2d_ref(x, fu, up=up, padding=padding, gain=up**2)
    x = bias_act_ref(x, None, slope=slope, gain=gain, clamp=clamp)
    return upfirdn2d_ref(x, fd, down=down)


def modulated_conv2d_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    padding: int = 0,
    input_gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample weights w[b] = weight * styles[b] (demodulated), run as one grouped convolution.

    x: (B, I, H, W), weight: (O, I, k, k), styles: (B, I), input_gain: scalar tensor or None.
    """
    batch, in_channels = styles.shape
    out_channels, _, kh, kw = weight.shape
    if demodulate:  # pre-normalise for numerical range; the demodulation below cancels these factors
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean(1, keepdim=True).rsqrt()
    w = weight[None] * styles[:, None, :, None, None]  # (B, O, I, k, k)
    if demodulate:
        w = w * (w.square().sum([2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    if input_gain is not None:
        w = w * input_gain
    x = x.reshape(1, batch * in_channels, *x.shape[2:])  # (1, B*I, H, W)
    w = w.reshape(batch * out_channels, in_channels, kh, kw)  # (B*O, I, k, k)
    x = F.conv2d(x, w.to(x.dtype), padding=padding, groups=batch)
    return x.reshape(batch, out_channels, *x.shape[2:])
