import math

import pytest
import torch

from anyres_model.training.losses import discriminator_loss, generator_loss, r1_penalty


def test_logistic_losses_match_their_definition():
    real = torch.tensor([0.0, 2.0, -1.0])
    fake = torch.tensor([0.0, -3.0, 1.5])
    g = generator_loss(fake)
    d = discriminator_loss(real, fake)
    for i in range(3):
        sig = 1 / (1 + math.exp(-fake[i].item()))
        assert g[i].item() == pytest.approx(-math.log(sig), rel=1e-6)
        d_expected = -math.log(1 - sig) - math.log(1 / (1 + math.exp(-real[i].item())))
        assert d[i].item() == pytest.approx(d_expected, rel=1e-6)


def test_r1_equals_squared_gradient_norm_of_a_known_discriminator():
    torch.manual_seed(0)
    a = torch.randn(3, 4, 4, requires_grad=True)

    def quadratic_d(x):  # D(x) = sum(a * x²) → ∇D = 2 a x
        return (a * x.square()).flatten(1).sum(1)

    x = torch.randn(5, 3, 4, 4)
    r1 = r1_penalty(quadratic_d, x)
    expected = (2 * a * x).square().flatten(1).sum(1)
    assert torch.allclose(r1, expected, rtol=1e-5)
    # the penalty is differentiable w.r.t. D's parameters: d/da sum(4 a² x²) = 8 a x²
    r1.sum().backward()
    assert torch.allclose(a.grad, (8 * a * x.square()).sum(0), rtol=1e-4)


def test_r1_of_a_constant_discriminator_is_zero():
    x = torch.randn(2, 3, 8, 8)
    w = torch.zeros(1, requires_grad=True)
    assert r1_penalty(lambda t: t.flatten(1).sum(1) * w, x).abs().max().item() == 0.0
