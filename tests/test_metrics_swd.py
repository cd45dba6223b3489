"""SWD: against a direct NumPy computation of ProGAN's definition, and its behaviour on known cases."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from anyres_model.metrics.swd import DescriptorSet, laplacian_pyramid, pyramid_resolutions, swd, swd_images

GAUSS = np.float32([[1, 4, 6, 4, 1], [4, 16, 24, 16, 4], [6, 24, 36, 24, 6], [4, 16, 24, 16, 4], [1, 4, 6, 4, 1]]) / 256


def textures(n: int, size: int, *, seed: int, blur: float = 0.0) -> torch.Tensor:
    """uint8 (n, 3, size, size): smooth colour fields plus fine texture; `blur` > 0 smooths them (Gaussian σ)."""
    g = torch.Generator().manual_seed(seed)
    low = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=size, mode="bicubic", align_corners=False)
    x = low + 0.2 * torch.randn(n, 3, size, size, generator=g)
    if blur:
        x = torch.from_numpy(scipy.ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, blur, blur), mode="mirror"))
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


# ProGAN's SWD (progressive_growing_of_gans/metrics/sliced_wasserstein.py), written out in NumPy.
def np_pyr_down(x):
    return scipy.ndimage.convolve(x, GAUSS[None, None], mode="mirror")[:, :, ::2, ::2]


def np_pyr_up(x):
    up = np.zeros((x.shape[0], x.shape[1], x.shape[2] * 2, x.shape[3] * 2), x.dtype)
    up[:, :, ::2, ::2] = x
    return scipy.ndimage.convolve(up, GAUSS[None, None] * 4.0, mode="mirror")


def np_laplacian_pyramid(x, levels):
    pyramid = [np.array(x, dtype=np.float32)]  # a copy: the loop subtracts in place
    for _ in range(1, levels):
        pyramid.append(np_pyr_down(pyramid[-1]))
        pyramid[-2] -= np_pyr_up(pyramid[-1])
    return pyramid


def np_neighbourhoods(level, ys, xs, per_image):
    n = len(ys)
    img = np.arange(n) // per_image
    out = np.empty((n, 3, 7, 7), np.float32)
    for k in range(n):
        out[k] = level[img[k], :, ys[k] - 3 : ys[k] + 4, xs[k] - 3 : xs[k] + 4]
    return out


def np_normalise(desc):
    desc = desc - desc.mean(axis=(0, 2, 3), keepdims=True)
    desc = desc / desc.std(axis=(0, 2, 3), keepdims=True)
    return desc.reshape(desc.shape[0], -1)


def np_sliced_wasserstein(a, b, dirs_list):
    results = []
    for dirs in dirs_list:
        pa = np.sort(a @ dirs, axis=0)
        pb = np.sort(b @ dirs, axis=0)
        results.append(np.mean(np.abs(pa - pb)))
    return np.mean(results)


def test_pyramid_matches_scipy_and_reconstructs():
    x = textures(2, 32, seed=0).float()
    ours = laplacian_pyramid(x, 2)
    ref = np_laplacian_pyramid(x.numpy(), 2)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a.numpy(), b, atol=1e-3)
    # a Laplacian pyramid is invertible: band + up(low) gives the image back
    recon = ours[0] + torch.from_numpy(np_pyr_up(ours[1].numpy()))
    np.testing.assert_allclose(recon.numpy(), x.numpy(), atol=1e-3)
    assert pyramid_resolutions(256) == (256, 128, 64, 32, 16)
    assert pyramid_resolutions(64) == (64, 32, 16)


def test_swd_level_by_level_against_numpy():
    """Replay the documented random draws (positions per batch and level, then 4×128 directions per level)."""
    a, b = textures(6, 32, seed=1), textures(6, 32, seed=2, blur=0.7)
    per_image, seed = 16, 5
    sets = []
    for images in (a, b):
        ds = DescriptorSet(seed=seed, per_image=per_image)
        ds.add(images[:4])
        ds.add(images[4:])
        sets.append(ds)
    result = swd(sets[0], sets[1], seed=9)

    ref_desc = []
    for images in (a, b):
        g = torch.Generator().manual_seed(seed)
        levels = [[], []]
        for part in (images[:4], images[4:]):
            pyramid = np_laplacian_pyramid(part.numpy(), 2)
            for lod, level in enumerate(pyramid):
                h = level.shape[2]
                n = part.shape[0] * per_image
                ys = torch.randint(3, h - 3, (n,), generator=g).numpy()
                xs = torch.randint(3, h - 3, (n,), generator=g).numpy()
                levels[lod].append(np_neighbourhoods(level, ys, xs, per_image))
        ref_desc.append([np_normalise(np.concatenate(parts)) for parts in levels])
    g = torch.Generator().manual_seed(9)
    expected = []
    for lod in range(2):
        dirs_list = []
        for _ in range(4):
            dirs = torch.randn(147, 128, generator=g, dtype=torch.float64).numpy()
            dirs_list.append(dirs / np.sqrt(np.sum(np.square(dirs), axis=0, keepdims=True)))
        expected.append(1e3 * np_sliced_wasserstein(ref_desc[0][lod], ref_desc[1][lod], dirs_list))

    assert result.resolutions == (32, 16)
    assert result.descriptors == 6 * per_image
    np.testing.assert_allclose(result.levels, expected, rtol=2e-3)
    assert result.mean == pytest.approx(np.mean(expected), rel=2e-3)


def test_swd_identical_noise_floor_and_blur():
    images = textures(192, 32, seed=3)
    same = swd_images(images[:96], images[:96], seed=0)
    floor = swd_images(images[:96], images[96:], seed=0)  # two disjoint halves of one distribution
    blurred = swd_images(images[:96], textures(96, 32, seed=4, blur=1.0), seed=0)
    assert same.mean == pytest.approx(0.0, abs=1e-6)
    assert floor.mean > 0
    assert blurred.levels[0] > 3 * floor.levels[0]  # the finest band is where blur shows (≈3.8× here)
    assert blurred.mean > 1.5 * floor.mean


def test_swd_is_deterministic_and_checks_inputs():
    a, b = textures(8, 32, seed=5), textures(8, 32, seed=6)
    assert swd_images(a, b, seed=1) == swd_images(a, b, seed=1)
    assert swd_images(a, b, seed=1).mean != swd_images(a, b, seed=2).mean
    ds = DescriptorSet(seed=0)
    with pytest.raises(ValueError, match="square RGB"):
        ds.add(torch.zeros(2, 3, 32, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="at least 16"):
        ds.add(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    ds.add(a)
    with pytest.raises(ValueError, match="must all be 32"):
        ds.add(textures(2, 64, seed=0))
    other = DescriptorSet(seed=0)
    other.add(textures(2, 64, seed=0))
    with pytest.raises(ValueError, match="one size"):
        swd(ds, other, seed=0)


def test_swd_unequal_counts_and_flat_images():
    a, b = textures(12, 32, seed=7), textures(8, 32, seed=8)
    result = swd_images(a, b, seed=0)
    assert result.descriptors == 8 * 128
    assert np.isfinite(result.mean) and result.mean > 0
    flat = swd_images(torch.full((8, 3, 32, 32), 128, dtype=torch.uint8), b, seed=0)  # e.g. a collapsed G
    assert all(np.isfinite(flat.levels)) and flat.mean > result.mean
