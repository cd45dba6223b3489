"""Scale conditioning: an embedding of log(s / P) added to every synthesis layer's styles.

The patch's scale s (pixels across the whole image it is cut from) tells each layer how much detail
to synthesise. The embedding is Fourier features of the log-scale, [t, sin(w_k t), cos(w_k t)] with
periods 16, 8, ..., through a small MLP: scales a factor of two apart get clearly different
embeddings. (Feeding the scalar through a StyleGAN mapping network, whose first step normalises its
input to unit RMS, reduces it to its sign and makes the conditioning blind to scale.)

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
    """log_scale (B,) = log(s / P) -> embedding (B, dim)."""

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
        x = self.features(log_scale)
        for layer in self.layers:
            x = layer(x)
        return x
