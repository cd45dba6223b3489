"""Equalised-learning-rate layers (StyleGAN): weights stored as N(0, 1) and scaled at run time.

Scaling by 1/sqrt(fan_in) in the forward pass instead of at initialisation makes Adam's per-parameter
step sizes uniform across layers; `lr_multiplier` slows a layer down (the mapping network uses 0.01)
by storing its parameters 1/lr_multiplier larger and scaling them back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2)  # keeps the second moment of a leaky ReLU's output at that of its input


class FullyConnected(nn.Module):
    """y = x @ W^T * lr_multiplier / sqrt(in) + b * lr_multiplier (b optional), optionally leaky ReLU * sqrt(2)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        lrelu: bool = False,
        lr_multiplier: float = 1.0,
        weight_init: float = 1.0,
        bias_init: float | Sequence[float] = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.lrelu = lrelu
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (weight_init / lr_multiplier))
        self.bias = None
        if bias:
            values = torch.as_tensor(bias_init, dtype=torch.float32).broadcast_to(out_features).clone()
            self.bias = nn.Parameter(values / lr_multiplier)
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.bias_gain
        x = F.linear(x, self.weight * self.weight_gain, bias)
        return F.leaky_relu(x, 0.2) * LRELU_GAIN if self.lrelu else x

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, lrelu={self.lrelu}"


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale x to unit root-mean-square along `dim`."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()
