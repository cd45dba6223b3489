"""Sliced Wasserstein distance on Laplacian pyramids (ProGAN, Karras et al. 2018, appendix D).

Each image is split into a Laplacian pyramid down to 16 px (5×5 binomial filter, mirror
padding, as OpenCV's pyrDown/pyrUp); from every level, 128 random 7×7×3 neighbourhoods are
taken as descriptors. Per level, each descriptor set is normalised per colour channel (its own
mean and std over all descriptors and positions), then the two sets are compared by the sliced
Wasserstein-1 distance: 4 × 128 random unit directions, the mean |sorted(A·d) − sorted(B·d)|.
The result is ×1e3, per level (finest first) and averaged. No pretrained network is involved.

Descriptors are collected batch by batch (`DescriptorSet.add`), so image sets never need to be
in memory at once; the descriptors themselves are stored as float16 (the Laplacian of 8-bit
images has values in [-255, 255], where float16 keeps 0.125 precision or better, well under
one 8-bit step) and 147 values each, so N images at L levels hold N·128·L·294 bytes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)  # divided by 16: the 5×5 filter is its outer product (/256)


@dataclass(frozen=True)
class SWDResult:
    """SWD ×1e3 per pyramid level (finest first), their mean, and what was compared."""

    resolutions: tuple[int, ...]
    levels: tuple[float, ...]
    mean: float
    descriptors: int  # descriptors per level and set that entered the distance

    def as_dict(self) -> dict:
        return {
            "mean": self.mean,
            "levels": {str(r): v for r, v in zip(self.resolutions, self.levels, strict=True)},
            "descriptors_per_level": self.descriptors,
        }


def pyramid_resolutions(size: int, min_res: int = 16) -> tuple[int, ...]:
    """Level sizes of the pyramid of a size×size image: size, size/2, ... while ≥ min_res (ProGAN's rule)."""
    out = []
    while size >= min_res:
        out.append(size)
        size //= 2
    return tuple(out)


def _blur(x: torch.Tensor, *, gain: float = 1.0, step: int = 1) -> torch.Tensor:
    """5×5 binomial filter of (B, C, H, W) with mirror padding (scipy's 'mirror' is torch's 'reflect').

    Separable, as sums of shifted slices (much faster on CPU than a depthwise conv); `step` = 2
    computes only every other output row and column.
    """
    taps = [t / 16.0 for t in BINOMIAL_5]
    h, w = x.shape[-2:]
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    x = sum(t * gain * x[..., i : i + w : step] for i, t in enumerate(taps))  # horizontal
    return sum(t * x[..., i : i + h : step, :] for i, t in enumerate(taps))  # vertical


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    """Blur and keep every other pixel: (B, C, H, W) → (B, C, H/2, W/2), as cv2.pyrDown."""
    return _blur(x, step=2)


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    """Insert zeros and blur with gain 4: (B, C, H, W) → (B, C, 2H, 2W), as cv2.pyrUp."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _blur(up, gain=4.0)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Laplacian pyramid of (B, C, H, W): `levels` band-pass images, finest first; the last is the low-pass rest."""
    pyramid = [x]
    for _ in range(1, levels):
        low = pyr_down(pyramid[-1])
        pyramid[-1] = pyramid[-1] - pyr_up(low)
        pyramid.append(low)
    return pyramid


def neighbourhoods(level: torch.Tensor, per_image: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`per_image` random size×size windows per image of (B, C, H, W), fully inside: (B·per_image, C, size, size)."""
    b, c, h, w = level.shape
    r = size // 2
    n = b * per_image
    ys = torch.randint(r, h - r, (n,), generator=generator)  # window centres, as ProGAN's randint(r, h - r)
    xs = torch.randint(r, w - r, (n,), generator=generator)
    offsets = torch.arange(-r, r + 1)
    image = torch.arange(b).repeat_interleave(per_image)
    rows = (ys[:, None] + offsets)[:, None, :, None]  # (N, 1, size, 1)
    cols = (xs[:, None] + offsets)[:, None, None, :]  # (N, 1, 1, size)
    chans = torch.arange(c)[None, :, None, None]  # (1, C, 1, 1)
    return level[image[:, None, None, None], chans, rows, cols]  # (N, C, size, size)


class DescriptorSet:
    """Pyramid descriptors of a stream of same-size images, gathered batch by batch.

    `add` takes uint8 (B, 3, H, W) images (or float in [0, 255]); descriptor positions come from
    `seed`, so the same images in the same order give the same descriptors.
    """

    def __init__(self, *, seed: int, per_image: int = 128, size: int = 7, min_res: int = 16) -> None:
        self.per_image = per_image
        self.size = size
        self.min_res = min_res
        self.generator = torch.Generator().manual_seed(seed)
        self.resolutions: tuple[int, ...] | None = None
        self.chunks: list[list[torch.Tensor]] = []
        self.images = 0

    def add(self, images: torch.Tensor) -> None:
        """Add a batch of (B, 3, H, W) images, H = W, all the same size across calls."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise ValueError(f"SWD takes square RGB images (B, 3, H, H), got shape {tuple(images.shape)}")
        resolutions = pyramid_resolutions(images.shape[2], self.min_res)
        if not resolutions:
            raise ValueError(f"SWD needs images of at least {self.min_res} px, got {images.shape[2]}")
        if self.resolutions is None:
            self.resolutions = resolutions
            self.chunks = [[] for _ in resolutions]
        elif resolutions != self.resolutions:
            raise ValueError(f"SWD images must all be {self.resolutions[0]} px, got {images.shape[2]}")
        with torch.no_grad():
            pyramid = laplacian_pyramid(images.detach().to("cpu", torch.float32), len(resolutions))
            for chunks, level in zip(self.chunks, pyramid, strict=True):
                desc = neighbourhoods(level, self.per_image, self.size, self.generator)
                chunks.append(desc.reshape(desc.shape[0], -1).to(torch.float16))  # (N, C·size·size), c-major
        self.images += images.shape[0]

    def levels(self) -> list[torch.Tensor]:
        """The raw (not yet normalised) descriptors of each level, (N, 3·size²) float16."""
        if self.resolutions is None:
            raise ValueError("no images were added to this descriptor set")
        self.chunks = [[torch.cat(chunks)] if len(chunks) > 1 else chunks for chunks in self.chunks]  # once
        return [chunks[0] for chunks in self.chunks]


def _channel_moments(desc: torch.Tensor, channels: int = 3, chunk: int = 1 << 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and population std over all descriptors and positions of (N, C·k²): float64 (C,) each."""
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for part in desc.split(chunk):
        part = part.to(torch.float32).view(part.shape[0], channels, -1)  # (n, C, k²)
        total += part.sum(dim=(0, 2)).double()  # float32 within a chunk (torch sums pairwise), float64 across
        squares += part.square().sum(dim=(0, 2)).double()
    count = desc.shape[0] * desc.shape[1] // channels
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return mean, std.clamp_min(1e-8)  # a flat channel (all descriptors equal) normalises to 0, not NaN


def _sort_rows(values: np.ndarray) -> None:
    """Sort each row of (K, N) in place, rows split across torch's thread count (numpy's sort releases the GIL)."""
    threads = max(1, min(torch.get_num_threads(), values.shape[0]))
    blocks = np.array_split(np.arange(values.shape[0]), threads)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda rows: values[rows[0] : rows[-1] + 1].sort(axis=-1), [b for b in blocks if len(b)]))


def _sorted_projections(
    desc: torch.Tensor, dirs: torch.Tensor, moments: tuple[torch.Tensor, torch.Tensor], chunk: int = 1 << 16
) -> np.ndarray:
    """Project descriptors (N, D), normalised per channel by `moments`, on dirs (D, K); each sorted: (K, N)."""
    mean, std = moments
    per_value = desc.shape[1] // mean.shape[0]
    scale = (1.0 / std).repeat_interleave(per_value)  # (D,), channel-major like the descriptors
    shift = (mean / std).repeat_interleave(per_value)
    # ((d - mean) / std) @ dirs == d @ (dirs * scale) - shift @ dirs: no normalised copy of the set is needed.
    weights = (dirs * scale[:, None]).T.to(torch.float32).contiguous()  # (K, D)
    bias = (shift @ dirs).to(torch.float32)[:, None]  # (K, 1)
    out = torch.empty(dirs.shape[1], desc.shape[0], dtype=torch.float32)  # (K, N)
    for start in range(0, desc.shape[0], chunk):
        part = desc[start : start + chunk].to(torch.float32)  # (n, D)
        torch.addmm(-bias, weights, part.T, out=out[:, start : start + part.shape[0]])
    out = out.numpy()
    _sort_rows(out)
    return out


def sliced_wasserstein(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    generator: torch.Generator,
    repeats: int = 4,
    per_repeat: int = 128,
) -> float:
    """Sliced Wasserstein-1 between two descriptor sets (N, D) of equal N, each normalised per channel on its own.

    The mean over `repeats`×`per_repeat` random unit directions of mean |sorted(a·d) − sorted(b·d)|.
    Raises ValueError when the sets differ in size or width.
    """
    if a.shape != b.shape:
        raise ValueError(f"descriptor sets must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    moments_a, moments_b = _channel_moments(a), _channel_moments(b)
    total = 0.0
    for _ in range(repeats):
        dirs = torch.randn(a.shape[1], per_repeat, generator=generator, dtype=torch.float64)
        dirs = dirs / dirs.square().sum(dim=0, keepdim=True).sqrt()  # unit directions, (D, K)
        pa = _sorted_projections(a, dirs, moments_a)
        pb = _sorted_projections(b, dirs, moments_b)
        np.subtract(pa, pb, out=pa)
        total += float(np.abs(pa, out=pa).sum(dtype=np.float64)) / pa.size
    return total / repeats


def swd(a: DescriptorSet, b: DescriptorSet, *, seed: int, repeats: int = 4, per_repeat: int = 128) -> SWDResult:
    """SWD ×1e3 between two descriptor sets, per level and averaged.

    When the sets hold different numbers of descriptors, the larger is randomly subsampled to the
    smaller (seeded), since the sorted-projection distance pairs descriptors one to one.
    Raises ValueError when the sets were built from images of different sizes.
    """
    if a.resolutions != b.resolutions:
        raise ValueError(f"SWD compares images of one size; got pyramids {a.resolutions} and {b.resolutions}")
    generator = torch.Generator().manual_seed(seed)
    values = []
    count = 0
    for da, db in zip(a.levels(), b.levels(), strict=True):
        count = min(da.shape[0], db.shape[0])
        if da.shape[0] > count:
            da = da[torch.randperm(da.shape[0], generator=generator)[:count]]
        if db.shape[0] > count:
            db = db[torch.randperm(db.shape[0], generator=generator)[:count]]
        values.append(1e3 * sliced_wasserstein(da, db, generator=generator, repeats=repeats, per_repeat=per_repeat))
    assert a.resolutions is not None
    return SWDResult(resolutions=a.resolutions, levels=tuple(values), mean=float(np.mean(values)), descriptors=count)


def swd_images(a: torch.Tensor, b: torch.Tensor, *, seed: int = 0, batch: int = 256) -> SWDResult:
    """SWD ×1e3 between two in-memory image sets, uint8 (N, 3, H, H) each (a convenience over DescriptorSet)."""
    sets = []
    for images in (a, b):
        descriptors = DescriptorSet(seed=seed)  # same positions in both sets: identical sets give exactly 0
        for part in images.split(batch):
            descriptors.add(part)
        sets.append(descriptors)
    return swd(sets[0], sets[1], seed=seed)
