"""Modulated convolution with demodulation (StyleGAN2/3), as scale -> shared convolution -> scale.

Modulating the weights per sample, w'[b] = w * s[b] (then demodulating each output channel to unit
norm), is the same as scaling the input channels by s[b], convolving with the shared w, and scaling
each output channel by its demodulation coefficient. That form runs one ordinary batched
convolution instead of B per-sample weight tensors in a grouped convolution
(`ops.reference.modulated_conv2d_ref`), and its demodulation coefficients come from a (B, I) x (I, O)
product instead of a (B, O, I, k, k) tensor. A batch of one (tiled rendering) folds both scalings
into the weights instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    padding: int = 0,
    input_gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """Convolve x (B, I, H, W) with weight (O, I, k, k) modulated by styles (B, I).

    demodulate: scale each sample's output channels so that its modulated weights have unit norm.
    input_gain: optional scalar tensor multiplying the input (StyleGAN3's magnitude normalisation),
    applied after demodulation as in StyleGAN3. Returns (B, O, H + 2*padding - k + 1, ...) in x.dtype.
    Raises ValueError on mismatched shapes.
    """
    batch, in_channels = styles.shape
    if x.ndim != 4 or x.shape[:2] != (batch, in_channels) or weight.shape[1] != in_channels:
        raise ValueError(
            f"modulated_conv2d: x {tuple(x.shape)}, weight {tuple(weight.shape)}, styles {tuple(styles.shape)} "
            "must be (B, I, H, W), (O, I, k, k), (B, I)"
        )
    if demodulate:  # pre-normalise for numerical range; demodulation cancels these factors
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean(1, keepdim=True).rsqrt()
    scale_in = styles if input_gain is None else styles * input_gain  # (B, I)
    dcoefs = (styles.square() @ weight.square().sum([2, 3]).t() + 1e-8).rsqrt() if demodulate else None  # (B, O)
    if batch == 1:  # one sample: fold both scalings into the weights, sparing two passes over the activations
        w = weight * scale_in[0, None, :, None, None]
        if dcoefs is not None:
            w = w * dcoefs[0, :, None, None, None]
        return F.conv2d(x, w.to(x.dtype), padding=padding)
    x = x * scale_in.to(x.dtype)[:, :, None, None]
    x = F.conv2d(x, weight.to(x.dtype), padding=padding)  # (B, O, H', W')
    if dcoefs is not None:
        x = x * dcoefs.to(x.dtype)[:, :, None, None]
    return x
