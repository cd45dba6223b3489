"""Generator and discriminator: shapes, presets, spec handling, StyleGAN3 equivalence, scale conditioning."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from anyres_data.spec import PatchSpec, specs_to_tensor
from anyres_model.networks.discriminator import Discriminator, minibatch_std
from anyres_model.networks.generator import Generator, GeneratorConfig
from anyres_model.networks.presets import preset
from anyres_model.networks.schedule import layer_schedule
from anyres_model.ops import REFERENCE_OPS

TINY_G, TINY_D = preset("tiny")


def make_generator(cfg=TINY_G, seed=0, **kwargs):
    torch.manual_seed(seed)
    return Generator(cfg, **kwargs).eval()


def latents(batch, cfg=TINY_G, seed=1):
    return torch.randn(batch, cfg.z_dim, generator=torch.Generator().manual_seed(seed))


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_presets_sizes():
    g, d = preset("tiny")
    assert g.patch_size == d.patch_size == 32
    assert count(Generator(g)) < 1_000_000
    assert preset("small")[0].patch_size in (64, 128)
    paper_g, paper_d = preset("paper")
    # StyleGAN3-T's published 256² configuration (stylegan3-t-ffhqu-256x256: --cbase=16384 --cmax=512)
    assert (paper_g.patch_size, paper_g.channel_base, paper_g.channel_max) == (256, 16384, 512)
    assert (paper_d.patch_size, paper_d.channel_base) == (256, 16384)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_schedule_matches_stylegan3_at_256():
    sched = layer_schedule(preset("paper")[0])
    rates = [layer.out_rate for layer in sched.layers]
    channels = [layer.out_channels for layer in sched.layers]
    # StyleGAN3-T 256: layer sizes rate + 20 (36 ... 276), then 256, 256; channels min(cbase / 2 / cutoff, 512)
    assert rates == [16, 16, 16, 32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 256, 256]
    assert channels == [512] * 7 + [362, 256, 181, 128, 91, 64, 64, 3]
    wide = layer_schedule(GeneratorConfig(channel_base=32768))  # StyleGAN3's default, for 512² and up
    assert [layer.out_channels for layer in wide.layers] == [512] * 9 + [362, 256, 181, 128, 128, 3]
    assert sched.input_rate == 16 and sched.margin == 10
    assert [layer.out_margin for layer in sched.layers][-3:] == [10, 0, 0]
    assert math.isclose(sched.layers[-2].out_cutoff, 128) and math.isclose(sched.layers[0].in_cutoff, 2)


def test_generator_shapes_for_specs_of_any_allowed_size():
    G = make_generator()
    z = latents(2)
    with torch.no_grad():
        assert G(z).shape == (2, 3, 32, 32)
        for p in (2, 16, 32, 70):  # multiples of the grid step P / rate_0 = 2
            assert G(z, PatchSpec(100.0, 3.5, 7.25, p)).shape == (2, 3, p, p)
        ws = G.mapping(z)
        assert ws.shape == (2, G.num_ws, TINY_G.w_dim)
        assert G.synthesis(ws).shape == (2, 3, 32, 32)


def test_small_preset_runs_at_its_patch_size():
    g, d = preset("small")
    G, D = make_generator(g), Discriminator(d)
    with torch.no_grad():
        img = G(latents(1, g), PatchSpec(256.0, 64.0, 32.0, g.patch_size))
        assert img.shape == (1, 3, g.patch_size, g.patch_size) and torch.isfinite(img).all()
        assert D(img).shape == (1,)


def test_spec_forms_agree_and_global_is_default():
    G = make_generator()
    z = latents(2)
    specs = [PatchSpec(64.0, 10.0, 4.0, 32), PatchSpec(40.0, 0.5, 2.0, 32)]
    with torch.no_grad():
        as_list = G(z, specs)
        as_tensor = G(z, specs_to_tensor(specs))
        assert torch.equal(as_list, as_tensor)
        assert torch.equal(G(z), G(z, PatchSpec.global_(32)))
        assert torch.equal(G(z), G(z, torch.tensor([32.0, 0.0, 0.0, 32.0])))  # one spec for the batch


def test_invalid_specs_are_rejected_with_what_is_allowed():
    G = make_generator()
    z = latents(2)
    with pytest.raises(ValueError, match="multiple of 2"):
        G(z, PatchSpec(64.0, 0.0, 0.0, 33))
    with pytest.raises(ValueError, match="same p"):
        G(z, [PatchSpec(64.0, 0, 0, 32), PatchSpec(64.0, 0, 0, 16)])
    with pytest.raises(ValueError, match="3 specs for a batch of 2"):
        G(z, [PatchSpec(64.0, 0, 0, 32)] * 3)
    with pytest.raises(ValueError, match="must be > 0"):
        G(z, torch.tensor([[0.0, 0, 0, 32], [1.0, 0, 0, 32]]))
    with pytest.raises(ValueError, match="z must be"):
        G(torch.randn(2, 5))


def test_fast_and_reference_ops_give_the_same_generator():
    G = make_generator()
    G_ref = make_generator(ops=REFERENCE_OPS)
    G_ref.load_state_dict(G.state_dict())
    z = latents(2)
    spec = [PatchSpec(80.0, 12.0, 30.0, 16), PatchSpec(33.0, -2.5, 1.0, 16)]
    out = G(z, spec)
    ref = G_ref(z, spec)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    params = [G.synthesis.layers[5].weight, G.synthesis.layers[2].affine.weight, G.mapping.layers[0].weight]
    params_ref = [
        G_ref.synthesis.layers[5].weight,
        G_ref.synthesis.layers[2].affine.weight,
        G_ref.mapping.layers[0].weight,
    ]
    grads = torch.autograd.grad(out.square().sum(), params)
    grads_ref = torch.autograd.grad(ref.square().sum(), params_ref)
    for g, r in zip(grads, grads_ref, strict=True):
        # float32 sums in another order: agreement relative to the gradient's own scale, not elementwise near 0
        assert float((g - r).norm() / r.norm()) < 1e-4
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-4 * float(r.abs().max()))


def stylegan3_input(layer, w, size):
    """StyleGAN3's SynthesisInput.forward, transcribed: its fixed grid via affine_grid over [-0.5, 0.5]²."""
    t = layer.affine(w)
    t = t / t[:, :2].norm(dim=1, keepdim=True)
    m_r = torch.eye(3).unsqueeze(0).repeat([w.shape[0], 1, 1])
    m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
    m_t = torch.eye(3).unsqueeze(0).repeat([w.shape[0], 1, 1])
    m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
    transforms = m_r @ m_t
    phases = layer.phases[None] + (layer.freqs[None] @ transforms[:, :2, 2:]).squeeze(2)
    freqs = layer.freqs[None] @ transforms[:, :2, :2]
    amplitudes = (1 - (freqs.norm(dim=2) - layer.bandwidth) / (layer.rate / 2 - layer.bandwidth)).clamp(0, 1)
    theta = torch.eye(2, 3)
    theta[0, 0] = theta[1, 1] = 0.5 * size / layer.rate
    grids = F.affine_grid(theta.unsqueeze(0), [1, 1, size, size], align_corners=False)
    x = (grids.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)
    x = torch.sin((x + phases.unsqueeze(1).unsqueeze(2)) * (2 * math.pi)) * amplitudes.unsqueeze(1).unsqueeze(2)
    x = x @ (layer.weight / math.sqrt(layer.channels)).t()
    return x.permute(0, 3, 1, 2)


def test_global_spec_reproduces_stylegan3_input_grid_and_transform():
    G = make_generator()
    layer = G.synthesis.input
    with torch.no_grad():  # a non-identity learned rotation + translation
        layer.affine.bias.copy_(torch.tensor([0.8, 0.3, 0.05, -0.12]))
        layer.affine.weight.normal_()
    w = G.mapping(latents(2))[:, 0]
    size = layer.rate + 2 * layer.margin
    specs = G.synthesis.spec_tensor(None, 2)
    with torch.no_grad():
        ours = layer(w, specs, TINY_G.patch_size // G.synthesis.grid_step)
        theirs = stylegan3_input(layer, w, size)
    assert ours.shape == theirs.shape == (2, layer.channels, size, size)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_zoom_out_fades_frequencies_above_the_first_layers_band():
    G = make_generator()
    layer = G.synthesis.input
    w = G.mapping(latents(1))[:, 0]
    n = TINY_G.patch_size // G.synthesis.grid_step
    with torch.no_grad():
        layer.weight.copy_(torch.eye(layer.channels) * math.sqrt(layer.channels))  # features pass through as-is
        near = layer(w, specs_to_tensor([PatchSpec(32.0, 0, 0, 32)]), n)
        far = layer(w, specs_to_tensor([PatchSpec(4.0, 0, 0, 32)]), n)  # 8x zoomed out: apparent f * 8
    apparent = layer.freqs.norm(dim=1) * 8
    faded = apparent >= layer.rate / 2
    assert bool(faded.any()) and bool((~faded).any())
    assert float(far[0, faded].abs().max()) == 0.0
    assert float(near[0, faded].abs().max()) > 0.5


def test_patch_is_independent_of_the_rest_of_its_batch():
    G = make_generator()
    z = latents(3)
    specs = [PatchSpec(32.0, 0, 0, 16), PatchSpec(256.0, 100.0, 37.0, 16), PatchSpec(64.0, 10.0, 10.0, 16)]
    with torch.no_grad():
        batch = G(z, specs)
        alone = G(z[1:2], specs[1:2])
    torch.testing.assert_close(batch[1:2], alone, rtol=1e-5, atol=1e-6)


def test_scale_embedding_differs_between_scales_at_initialisation():
    G = make_generator()
    log_scales = torch.log(torch.tensor([8.0, 2.0, 4.0, 1.0]))
    with torch.no_grad():
        emb = G.synthesis.scale_embed(log_scales)
    rel = (emb[0] - emb[1]).norm() / emb[0].norm()
    assert rel > 0.1, f"s/P = 8 and 2 embed almost the same ({rel:.2e})"
    assert (emb[0] - emb[2]).norm() / emb[0].norm() > 0.05  # a factor of two is visible too
    assert emb[1].norm() > 0.1 * emb[0].norm()  # and s = 2P is far from s = P, whose embedding is zero
    assert not emb[3].any()


def test_the_scale_branch_cannot_change_the_global_image():
    """At s = P the branch adds exactly zero whatever its weights, so training it never moves the base image."""
    G = make_generator(seed=4)
    z = latents(2)
    with torch.no_grad():
        before = G(z)
        before_patch = G(z, PatchSpec(96.0, 20.0, 30.0, 32))
        for proj in G.synthesis.scale_proj:
            proj.weight.normal_()
        for param in G.synthesis.scale_embed.parameters():
            param.add_(torch.randn_like(param) * param.abs().mean())
        assert torch.equal(G(z), before)
        assert torch.equal(G(z, PatchSpec(32.0, 0.0, 0.0, 32)), before)  # the global spec written out
        assert (G(z, PatchSpec(96.0, 20.0, 30.0, 32)) - before_patch).abs().max() > 1e-3


def test_zero_initialised_scale_branch_leaves_output_unchanged_bitwise():
    plain_cfg = dataclasses.replace(TINY_G, scale_conditioning=False)
    plain = make_generator(plain_cfg, seed=3)
    conditioned = make_generator(seed=4)
    conditioned.load_unconditioned(plain.state_dict())  # a phase-1 checkpoint into a scale-conditioned G
    z = latents(2)
    with torch.no_grad():
        for spec in (None, PatchSpec(256.0, 40.0, 100.0, 32), PatchSpec(12.0, 0.0, 0.0, 32)):
            assert torch.equal(conditioned(z, spec), plain(z, spec))


def test_scale_branch_reaches_the_styles_once_its_projections_are_nonzero():
    plain = make_generator(dataclasses.replace(TINY_G, scale_conditioning=False), seed=3)
    G = make_generator(seed=4)
    G.load_unconditioned(plain.state_dict())
    with torch.no_grad():
        for proj in G.synthesis.scale_proj:
            proj.weight.normal_()
        emb = G.synthesis.scale_embed(torch.log(torch.tensor([2.0, 8.0])))
        offsets = [proj(emb) for proj in G.synthesis.scale_proj]  # added to each layer's styles
        for off in offsets:
            assert (off[0] - off[1]).norm() > 0.1 * off[0].norm()
        z = latents(2)
        for spec in (PatchSpec(64.0, 0, 0, 32), PatchSpec(256.0, 100.0, 100.0, 32)):
            assert (G(z, spec) - plain(z, spec)).abs().max() > 1e-3


def test_load_unconditioned_rejects_other_mismatches():
    G = make_generator()
    state = make_generator(dataclasses.replace(TINY_G, scale_conditioning=False)).state_dict()
    state.pop("synthesis.layers.3.weight")
    with pytest.raises(RuntimeError, match=r"layers\.3\.weight"):
        G.load_unconditioned(state)


def test_truncation_and_ema_updates():
    G = make_generator()
    z = latents(4)
    ws = G.mapping(z, update_emas=True)
    assert G.mapping.w_avg.abs().sum() > 0
    torch.testing.assert_close(G.mapping(z, truncation_psi=0.0), G.mapping.w_avg.expand(4, G.num_ws, -1))
    before = [float(layer.magnitude_ema) for layer in G.synthesis.layers]
    G.synthesis(ws, update_emas=True)
    after = [float(layer.magnitude_ema) for layer in G.synthesis.layers]
    assert all(a != b for a, b in zip(before, after, strict=True))


def test_generator_trains():
    G = make_generator()
    G.train()
    out = G(latents(2), PatchSpec(64.0, 16.0, 8.0, 32), update_emas=True)
    out.square().mean().backward()
    for name, param in G.named_parameters():
        if name.startswith("synthesis.scale_embed."):
            continue  # behind zero-initialised projections: no gradient until they move
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_discriminator_shapes_and_r1_double_backward():
    D = Discriminator(TINY_D)
    img = torch.randn(8, 3, 32, 32, requires_grad=True)
    logits = D(img)
    assert logits.shape == (8,)
    (grad,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
    grad.square().sum().backward()  # R1 penalty: gradient of a gradient
    assert all(block.conv0.weight.grad.abs().sum() > 0 for block in D.blocks)
    with pytest.raises(ValueError, match="D expects"):
        D(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="divisible by 4"):
        D(torch.randn(6, 3, 32, 32))
    assert D(torch.randn(2, 3, 32, 32)).shape == (2,)  # groups of min(4, batch)


def test_minibatch_std_matches_direct_computation():
    x = torch.randn(8, 6, 3, 3, dtype=torch.float64)
    out = minibatch_std(x, group_size=4, num_channels=2)
    assert out.shape == (8, 8, 3, 3)
    for i in range(8):
        group = x[i % 2 :: 2]  # samples i, i+2, i+4, i+6 form a group
        std = group.reshape(4, 2, 3, 3, 3).std(dim=0, unbiased=False)  # (F, c, H, W)
        expected = (std.square() + 1e-8).sqrt().mean(dim=(1, 2, 3))
        torch.testing.assert_close(out[i, 6:, 0, 0], expected)


def test_config_validation():
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(patch_size=48)
    with pytest.raises(ValueError, match="num_critical"):
        GeneratorConfig(num_layers=2, num_critical=2)
