"""Scale conditioning: an embedding of log(s / P) added to every synthesis layer's styles.

The patch's scale s (pixels across the whole image it is cut from) tells each layer how much detail
to synthesise. The embedding is Fourier features of the log-scale, [t, sin(w_k t), cos(w_k t)] with
periods 16, 8, ..., through a small MLP: scales a factor of two apart get clearly different
embeddings. (Feeding the scalar through a StyleGAN mapping network, whose first step normalises its
input to unit RMS, reduces it to its sign and makes the conditioning blind to scale.)

The embedding is measured from s = P: e(s) = MLP(features(log(s / P))) - MLP(features(0)), which
is exactly zero at s = P whatever the weights. The global image (and so the teacher's frame) never
depends on the branch, and training it at other scales cannot move the base image. (Without the
subtraction, cos 0 = 1 makes the embedding at s = P non-zero, and projections trained on global
samples learn style offsets that hold at s = P only.)

Each synthesis layer projects the embedding to its style width with its own zero-initialised
linear layer and adds it to its styles, so a new branch leaves the generator's output unchanged.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from anyres_model.networks.equalized import FullyConnected


class ScaleEmbedding(nn.Module):
    """log_scale (B,) = log(s / P) -> embedding (B, dim), zero where log_scale is 0."""

    def __init__(self, *, num_freqs: int, dim: int, num_layers: int, lr_multiplier: float) -> None:
        super().__init__()
        self.register_buffer(
            "omegas", math.pi * 2.0 ** torch.arange(num_freqs, dtype=torch.float32) / 8, persistent=False
        )
        dims = [1 + 2 * num_freqs] + [dim] * num_layers
        self.layers = nn.ModuleList(
            FullyConnected(a, b, lrelu=True, lr_multiplier=lr_multiplier) for a, b in itertools.pairwise(dims)
        )

    def features(self, log_scale: torch.Tensor) -> torch.Tensor:
        """(B,) -> (B, 1 + 2 * num_freqs): the log-scale and its sines and cosines."""
        t = log_scale.to(torch.float32)[:, None]  # (B, 1)
        return torch.cat([t, torch.sin(t * self.omegas), torch.cos(t * self.omegas)], dim=1)

    def forward(self, log_scale: torch.Tensor) -> torch.Tensor:
        x = self.features(torch.cat([log_scale.to(torch.float32), log_scale.new_zeros(1, dtype=torch.float32)]))
        for layer in self.layers:
            x = layer(x)
        offset = x[:-1] - x[-1:]  # (B, dim): measured from the embedding of s = P
        return torch.where(log_scale[:, None] == 0, 0.0, offset)  # exactly zero at s = P, whatever the rounding
