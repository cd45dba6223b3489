"""Mapping network z -> w (StyleGAN): normalise z, a few slow fully connected layers, broadcast to every layer."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from anyres_model.networks.equalized import FullyConnected, normalize_2nd_moment


class MappingNetwork(nn.Module):
    """z (B, z_dim) -> ws (B, num_ws, w_dim); tracks the mean w for the truncation trick."""

    def __init__(
        self,
        *,
        z_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 2,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.998,
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            FullyConnected(a, b, lrelu=True, lr_multiplier=lr_multiplier) for a, b in itertools.pairwise(dims)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, *, truncation_psi: float = 1.0, update_emas: bool = False) -> torch.Tensor:
        """truncation_psi < 1 pulls every w towards the tracked mean; update_emas updates that mean (training)."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be (B, {self.z_dim}), got {tuple(z.shape)}")
        x = normalize_2nd_moment(z.to(torch.float32))
        for layer in self.layers:
            x = layer(x)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x[:, None, :].repeat(1, self.num_ws, 1)  # (B, num_ws, w_dim)
        if truncation_psi != 1:
            x = self.w_avg.lerp(x, truncation_psi)
        return x
