import numpy as np
import pytest
import torch
from PIL import Image

from anyres_data.spec import PatchSpec, specs_to_tensor
from anyres_model.training.warp import warp_to_global


def _smooth_image(side: int, seed: int = 0) -> np.ndarray:
    """Band-limited test image (H, W, 3) float in [0, 255] with structure at several scales."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    img = np.zeros((side, side, 3))
    for _ in range(24):
        f = rng.uniform(0.5, side / 16, size=2)
        phase = rng.uniform(0, 2 * np.pi, size=3)
        img += np.sin(2 * np.pi * (f[0] * x + f[1] * y)[..., None] + phase) * rng.uniform(0.2, 1.0)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return img


def test_global_spec_warp_is_identity():
    patch = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    warped, mask = warp_to_global(patch, specs_to_tensor([PatchSpec.global_(16)] * 2), 16)
    assert mask.min().item() == 1.0
    assert torch.allclose(warped, patch, atol=1e-12)


def pil_lanczos(full: np.ndarray, size: int, box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """PIL's Lanczos resize of each float plane of (H, W, 3) to size×size (of `box`): (3, size, size)."""
    planes = [Image.fromarray(full[..., c].astype(np.float32), mode="F") for c in range(3)]
    return np.stack([np.asarray(p.resize((size, size), Image.Resampling.LANCZOS, box=box)) for p in planes])


@pytest.mark.parametrize(("s", "x0", "y0"), [(128.0, 40.0, 56.0), (96.0, 10.25, 30.5), (256.0, 111.5, 3.0)])
def test_warp_matches_independent_pil_lanczos_downsampling(s, x0, y0):
    n, p = 32, 64
    full = _smooth_image(int(s))
    patch = pil_lanczos(full, p, box=(x0, y0, x0 + p, y0 + p))  # the window of the s-rendering, (3, p, p)
    spec = PatchSpec(s, x0, y0, p)
    warped, mask = warp_to_global(torch.from_numpy(patch)[None].double(), [spec], n)
    ref = pil_lanczos(full, n)  # independent reference: the whole s-rendering downsampled to n×n
    m = mask[0, 0].numpy().astype(bool)
    # compare away from the window's edge, where the kernel is not truncated (3 frame pixels)
    interior = np.zeros_like(m)
    rows, cols = np.where(m)
    interior[rows.min() + 3 : rows.max() - 2, cols.min() + 3 : cols.max() - 2] = True
    assert interior.sum() >= 4
    err = warped[0].numpy()[:, interior] - ref[:, interior]
    psnr = 10 * np.log10(255**2 / np.mean(err**2))
    assert psnr > 40, psnr
    # and the mask covers exactly the frame pixels whose centres lie in the window
    left, top, right, bottom = spec.window
    centres = (np.arange(n) + 0.5) / n
    expected = ((centres >= top) & (centres <= bottom))[:, None] & ((centres >= left) & (centres <= right))[None]
    assert (m == expected).all()


def test_misplaced_patch_fails_the_comparison():
    n, p, s = 32, 64, 128.0
    full = _smooth_image(int(s))
    spec = PatchSpec(s, 40.0, 56.0, p)
    shifted = full[56 : 56 + p, 44 : 44 + p]  # 4 source pixels off = 1 frame pixel
    t = torch.from_numpy(np.ascontiguousarray(shifted.transpose(2, 0, 1)))[None].double()
    warped, mask = warp_to_global(t, [spec], n)
    m = mask[0, 0].numpy().astype(bool)
    err = warped[0].numpy()[:, m] - pil_lanczos(full, n)[:, m]
    assert 10 * np.log10(255**2 / np.mean(err**2)) < 30


def test_warp_is_differentiable():
    spec = specs_to_tensor([PatchSpec(24.0, 3.5, 2.0, 6)])
    patch = torch.randn(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: warp_to_global(x, spec, 8).image, (patch,))
