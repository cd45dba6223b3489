"""The fast ops against the direct reference computations: values and gradients."""

import math

import numpy as np
import pytest
import scipy.signal
import torch

from anyres_model.ops import (
    design_lowpass_filter,
    filtered_lrelu,
    filtered_lrelu_ref,
    modulated_conv2d,
    modulated_conv2d_ref,
    upfirdn2d,
    upfirdn2d_ref,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# (up, down, padding): plain filtering, upsampling, downsampling, cropping, odd factors, both at once
RESAMPLINGS = [
    (1, 1, (0, 0, 0, 0)),
    (2, 1, (5, 4, 3, 6)),
    (1, 2, (2, 1, 0, 3)),
    (3, 1, (-2, 7, 1, 1)),
    (4, 1, (9, 8, 9, 8)),
    (1, 3, (0, 0, 0, 0)),
    (2, 2, (4, 4, 4, 4)),
]


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_reference_upfirdn_separable_equals_outer_product_filter():
    x, f = rand(2, 3, 9, 11), rand(6, seed=1)
    for up, down, padding in RESAMPLINGS:
        a = upfirdn2d_ref(x, f, up=up, down=down, padding=padding, gain=up**2)
        b = upfirdn2d_ref(x, torch.outer(f, f), up=up, down=down, padding=padding, gain=up**2)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def scipy_upfirdn2d(x, f, *, up, down, padding, gain):
    """upfirdn2d from scipy.signal.upfirdn (full convolution of the zero-stuffed signal), one axis at a time."""
    taps = f.numpy() * math.sqrt(gain)
    px0, px1, py0, py1 = padding

    def along(a, axis, pad0, pad1):
        full = scipy.signal.upfirdn(taps, a, up=up, axis=axis)  # length (n - 1) * up + len(taps)
        n = a.shape[axis]
        index = np.arange(n * up + pad0 + pad1 - len(taps) + 1) - pad0 + len(taps) - 1
        valid = (index >= 0) & (index < full.shape[axis])
        picked = np.take(full, np.clip(index, 0, full.shape[axis] - 1), axis=axis)
        shape = [1] * a.ndim
        shape[axis] = -1
        return np.take(picked * valid.reshape(shape), np.arange(0, len(index), down), axis=axis)

    return torch.from_numpy(along(along(x.numpy(), 3, px0, px1), 2, py0, py1))


@pytest.mark.parametrize(("up", "down", "padding"), RESAMPLINGS)
def test_reference_upfirdn_matches_scipy(up, down, padding):
    x, f = rand(2, 3, 9, 11), rand(6, seed=1)
    expected = scipy_upfirdn2d(x, f, up=up, down=down, padding=padding, gain=up**2)
    torch.testing.assert_close(upfirdn2d_ref(x, f, up=up, down=down, padding=padding, gain=up**2), expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("up", "down", "padding"), RESAMPLINGS)
def test_upfirdn2d_matches_reference_values_and_gradients(device, up, down, padding):
    x, f = rand(2, 3, 9, 11).to(device), rand(6, seed=1).to(device)
    out = upfirdn2d(x, f, up=up, down=down, padding=padding, gain=up**2)
    ref = upfirdn2d_ref(x, f, up=up, down=down, padding=padding, gain=up**2)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)

    def op(t):
        return upfirdn2d(t, f, up=up, down=down, padding=padding)

    xs = rand(1, 1, 7, 8).to(device).requires_grad_()
    assert torch.autograd.gradcheck(op, (xs,))
    if up * down <= 2:  # D's R1 penalty differentiates through its blur twice
        assert torch.autograd.gradgradcheck(op, (xs,))


def test_upfirdn2d_flip_filter_and_identity():
    x, f = rand(1, 2, 8, 8), rand(4, seed=3)
    torch.testing.assert_close(upfirdn2d(x, f, flip_filter=True), upfirdn2d(x, f.flip(0)))
    torch.testing.assert_close(upfirdn2d(x, None), x)
    torch.testing.assert_close(upfirdn2d(x, None, up=2, gain=4.0), upfirdn2d_ref(x, None, up=2, gain=4.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_upfirdn2d_half_precision(dtype):
    x, f = rand(1, 2, 10, 10, dtype=torch.float32), rand(4, seed=1, dtype=torch.float32)
    out = upfirdn2d(x.to(dtype), f, up=2, padding=2, gain=4.0)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), upfirdn2d(x, f, up=2, padding=2, gain=4.0), rtol=5e-2, atol=5e-2)


def test_upfirdn2d_rejects_bad_input():
    x = rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="B, C, H, W"):
        upfirdn2d(x[0], None)
    with pytest.raises(ValueError, match="1-D"):
        upfirdn2d(x, torch.ones(2, 2))
    with pytest.raises(ValueError, match="leaves nothing"):
        upfirdn2d(x, torch.ones(9))
    with pytest.raises(ValueError, match="up and down"):
        upfirdn2d(x, None, up=0)


def test_lowpass_filter_is_scipy_kaiser_design():
    f = design_lowpass_filter(numtaps=12, cutoff=8.0, width=6.0, fs=32.0)
    np.testing.assert_allclose(f.numpy(), scipy.signal.firwin(12, 8.0, width=6.0, fs=32.0), rtol=1e-6)
    assert f.dtype == torch.float32 and abs(float(f.sum()) - 1) < 1e-6  # unit DC gain
    freqs, response = scipy.signal.freqz(f.numpy(), worN=512, fs=32.0)
    assert abs(response[freqs < 4]).min() > 0.95  # passband
    assert abs(response[freqs > 12]).max() < 0.05  # stopband beyond cutoff + width / 2 + margin
    assert design_lowpass_filter(numtaps=1, cutoff=1, width=1, fs=4) is None
    with pytest.raises(ValueError):
        design_lowpass_filter(numtaps=0, cutoff=1, width=1, fs=4)


# (up, down, padding): StyleGAN3's layer types: same rate, 4x up then 2x down (rate change), critically
# sampled with cropping, and toRGB (no filters, linear, just bias + clamp)
FLRELU_CASES = [
    (2, 2, (9, 8, 9, 8)),
    (4, 2, (13, 12, 11, 10)),
    (2, 2, (-3, -4, -3, -4)),
    (1, 1, (0, 0, 0, 0)),
]


def flrelu_args(up, down, padding, dtype=torch.float64, device="cpu"):
    fu = design_lowpass_filter(numtaps=6 * up, cutoff=4.0, width=3.0, fs=16.0 * up) if up > 1 else None
    fd = design_lowpass_filter(numtaps=6 * down, cutoff=4.0, width=3.0, fs=16.0 * up) if down > 1 else None
    to = {"dtype": dtype, "device": device}
    return {
        "fu": None if fu is None else fu.to(**to),
        "fd": None if fd is None else fd.to(**to),
        "b": rand(3, seed=5, dtype=dtype).to(device),
        "up": up,
        "down": down,
        "padding": padding,
        "gain": math.sqrt(2) if up > 1 else 1.0,
        "slope": 0.2 if up > 1 else 1.0,
        "clamp": 1.2,  # low enough that clamping is active on these inputs
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("up", "down", "padding"), FLRELU_CASES)
def test_filtered_lrelu_matches_reference_values_and_gradients(device, up, down, padding):
    kwargs = flrelu_args(up, down, padding, device=device)
    x = rand(2, 3, 20, 18, seed=2).to(device) * 2
    out = filtered_lrelu(x, **kwargs)
    ref = filtered_lrelu_ref(x, **kwargs)
    assert out.shape == ref.shape
    assert not torch.allclose(filtered_lrelu_ref(x, **{**kwargs, "clamp": None}), ref)  # the clamp is exercised
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)

    n = 6 if padding[0] >= 0 else 16  # cropping needs a larger input to leave an output
    xs = rand(1, 3, n, n, seed=3).to(device).mul(2).requires_grad_()
    b = kwargs.pop("b").clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t, bias: filtered_lrelu(t, b=bias, **kwargs), (xs, b))


def test_filtered_lrelu_gradients_match_reference_in_float32():
    kwargs = flrelu_args(2, 2, (9, 8, 9, 8), dtype=torch.float32)
    x = rand(2, 3, 20, 20, seed=4, dtype=torch.float32).mul(2).requires_grad_()
    b = kwargs.pop("b").requires_grad_()
    grad_out = rand(2, 3, 18, 18, seed=6, dtype=torch.float32)
    fast = torch.autograd.grad(filtered_lrelu(x, b=b, **kwargs), (x, b), grad_out)
    ref = torch.autograd.grad(filtered_lrelu_ref(x, b=b, **kwargs), (x, b), grad_out)
    for a, r in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


def test_filtered_lrelu_chunking_does_not_change_results():
    kwargs = flrelu_args(2, 2, (9, 8, 9, 8))
    x = rand(3, 3, 10, 10, seed=7).requires_grad_()
    whole = filtered_lrelu(x, **kwargs)
    (grad_whole,) = torch.autograd.grad(whole.square().sum(), x)
    chunked = filtered_lrelu(x, chunk_elements=1, **kwargs)  # one (sample, channel) plane per chunk
    (grad_chunked,) = torch.autograd.grad(chunked.square().sum(), x)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=0)
    torch.testing.assert_close(grad_chunked, grad_whole, rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_filtered_lrelu_half_precision_inputs(dtype):
    kwargs32 = flrelu_args(2, 2, (9, 8, 9, 8), dtype=torch.float32)
    x = rand(2, 3, 12, 12, seed=8, dtype=torch.float32)
    ref = filtered_lrelu(x, **kwargs32)
    out = filtered_lrelu(x.to(dtype), **{**kwargs32, "b": kwargs32["b"].to(dtype)})
    assert out.dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 4e-2  # input rounding only: the op computes in float32
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)


def test_filtered_lrelu_rejects_bad_input():
    x = rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="bias"):
        filtered_lrelu(x, b=torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="gain"):
        filtered_lrelu(x, gain=0.0)
    with pytest.raises(ValueError, match="B, C, H, W"):
        filtered_lrelu(x[0])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [3, 1])  # a batch of one folds the scalings into the weights
@pytest.mark.parametrize(("demodulate", "padding", "kernel"), [(True, 2, 3), (False, 0, 1), (True, 1, 3)])
def test_modulated_conv2d_matches_reference_values_and_gradients(device, batch, demodulate, padding, kernel):
    x = rand(batch, 2, 6, 6, seed=1).to(device)
    weight = rand(3, 2, kernel, kernel, seed=2).to(device)
    styles = rand(batch, 2, seed=3).to(device) + 1
    gain = torch.tensor(0.7, dtype=torch.float64, device=device)
    kwargs = {"demodulate": demodulate, "padding": padding, "input_gain": gain}
    out = modulated_conv2d(x, weight, styles, **kwargs)
    ref = modulated_conv2d_ref(x, weight, styles, **kwargs)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    xs = x[:2, :, :3, :3].clone().requires_grad_()
    ws = weight.clone().requires_grad_()
    ss = styles[:2].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, w, s: modulated_conv2d(a, w, s, **kwargs), (xs, ws, ss))


def test_modulated_conv2d_is_per_sample():
    # a sample's output must not depend on the other samples of its batch (tiles, mixed scales)
    x, weight, styles = rand(4, 4, 6, 6, seed=1), rand(5, 4, 3, 3, seed=2), rand(4, 4, seed=3)
    batch = modulated_conv2d(x, weight, styles, padding=1)
    alone = modulated_conv2d(x[2:3], weight, styles[2:3], padding=1)
    torch.testing.assert_close(batch[2:3], alone, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_modulated_conv2d_half_precision(dtype):
    x, weight, styles = (t.float() for t in (rand(2, 4, 6, 6, seed=1), rand(5, 4, 3, 3, seed=2), rand(2, 4, seed=3)))
    ref = modulated_conv2d(x, weight, styles, padding=1)
    out = modulated_conv2d(x.to(dtype), weight, styles, padding=1)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=5e-2, atol=5e-2)


def test_modulated_conv2d_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="modulated_conv2d"):
        modulated_conv2d(rand(2, 4, 6, 6), rand(5, 3, 3, 3), rand(2, 4))
