"""GAN losses of the paper (eq. 2–3): non-saturating logistic loss and R1 on reals."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss per sample: softplus(-D(G(z))) = -log sigmoid(D(G(z)))."""
    return F.softplus(-fake_logits)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic D loss per sample: softplus(D(G(z))) + softplus(-D(x))."""
    return F.softplus(fake_logits) + F.softplus(-real_logits)


def r1_penalty(discriminator: Callable[[torch.Tensor], torch.Tensor], reals: torch.Tensor) -> torch.Tensor:
    """R1(D, x) = ||∇ₓ D(x)||² per sample, (B,), differentiable w.r.t. D's parameters."""
    reals = reals.detach().requires_grad_(True)
    logits = discriminator(reals)
    (grad,) = torch.autograd.grad(logits.sum(), reals, create_graph=True)
    return grad.square().flatten(1).sum(1)
