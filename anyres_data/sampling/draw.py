"""Drawing patch specs for real images: which square, which scale, which window (docs/design.md, "Real patches").

For an image of displayed size w×h, the unit square is a square of side m = min(w, h) at offset
(ox, oy) (random or centred). A patch is the p×p window at (x0, y0) of that square rendered at
s×s, with s_min ≤ s ≤ m (s_min = 2p by default, as in the paper's runs; never below p: only
downsampling, never upsampling). With probability `global_prob` a sample is instead global: the
whole square rendered at p×p (s = p, x0 = y0 = 0); the loader makes that choice per batch or per
element (`global_mixing`).

Everything here is pure arithmetic on sizes; cutting the pixels is `anyres_data.sampling.patches`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from anyres_data.settings import setting
from anyres_data.spec import PatchSpec

SCALE_MAX_DEFAULT = 0.5  # HR patches at s ≥ 2p, as in the paper's published runs


@dataclass(frozen=True)
class SamplerSettings:
    """How patches are drawn from real images (sizes in pixels of the displayed image)."""

    p: int = setting(256, "Patch size in pixels (the generator's output size).")
    s_min: float | None = setting(
        None, "Smallest target size s of the square rendering; None: p / scale_max (2p by default)."
    )
    scale_max: float = setting(
        SCALE_MAX_DEFAULT,
        "The reference implementation's zoom-out bound: s is at least p / scale_max (0.5 → s ≥ 2p, the "
        "published runs; 1 → s ≥ p). s_min, when given, replaces p / scale_max.",
    )
    s_max: float | None = setting(None, "Largest target size s; None: the square's side m (native resolution).")
    size_distribution: Literal["uniform", "log_uniform", "fixed"] = setting(
        "uniform",
        "How s is drawn between s_min and min(m, s_max): uniform in size (the paper's), uniform in "
        "log-size, or fixed at fixed_s.",
    )
    fixed_s: float | None = setting(
        None, "Target size for size_distribution=fixed (clipped to the square's side when larger)."
    )
    crop: Literal["random", "centre"] = setting(
        "random", "Where the square of side min(w, h) lies: random offset (training) or centred."
    )
    global_prob: float = setting(0.5, "Probability that a sample is global: the whole square resized to p×p.")
    global_mixing: Literal["batch", "element"] = setting(
        "batch",
        "batch: with probability global_prob the whole batch is global, else all HR patches (the reference's; "
        "minibatch-std groups never mix scales). element: each sample decides alone.",
    )

    def __post_init__(self) -> None:
        if self.p < 1:
            raise ValueError(f"p must be a positive number of pixels, got {self.p}")
        if self.s_min is not None and self.scale_max != SCALE_MAX_DEFAULT:
            raise ValueError("give s_min or scale_max, not both (s_min = p / scale_max)")
        if not 0 < self.scale_max <= 1:
            raise ValueError(f"scale_max must be in (0, 1] (s ≥ p / scale_max ≥ p), got {self.scale_max}")
        if self.s_min is not None and self.s_min < self.p:
            raise ValueError(f"s_min must be ≥ p = {self.p} (patches are never upsampled), got {self.s_min}")
        if self.s_max is not None and self.s_max < self.lowest_s:
            raise ValueError(f"s_max ({self.s_max}) must be ≥ s_min ({self.lowest_s})")
        if self.size_distribution == "fixed" and (self.fixed_s is None or self.fixed_s < self.p):
            raise ValueError(f"size_distribution=fixed needs fixed_s ≥ p = {self.p}, got {self.fixed_s}")
        if not 0 <= self.global_prob <= 1:
            raise ValueError(f"global_prob must be in [0, 1], got {self.global_prob}")

    @property
    def lowest_s(self) -> float:
        """The smallest target size any patch gets (s_min resolved)."""
        return float(self.s_min) if self.s_min is not None else self.p / self.scale_max


class ImageTooSmall(ValueError):
    """The image's shorter side is below p: it can give global samples but no patches."""


class Square(NamedTuple):
    """The unit square of a real image: side m at offset (ox, oy), in displayed-image pixels."""

    ox: int
    oy: int
    m: int


class DrawnSpec(NamedTuple):
    """A drawn sample: the square in the displayed image and the spec of the patch inside it."""

    square: Square
    spec: PatchSpec
    is_global: bool


def draw_square(*, width: int, height: int, crop: str, rng: np.random.Generator) -> Square:
    """The square of side min(width, height): random integer offset or centred (floor of the half)."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}×{height}")
    m = min(width, height)
    if crop == "centre":
        return Square((width - m) // 2, (height - m) // 2, m)
    if crop == "random":
        return Square(int(rng.integers(0, width - m + 1)), int(rng.integers(0, height - m + 1)), m)
    raise ValueError(f"crop must be 'random' or 'centre', got {crop!r}")


def size_range(m: float, settings: SamplerSettings) -> tuple[float, float]:
    """[lo, hi] for the target size s of a square of side m.

    Raises ImageTooSmall (a ValueError) when m < p: such an image cannot give a patch without upsampling.
    """
    p = settings.p
    if m < p:
        raise ImageTooSmall(f"image too small for patches: square side {m} < p = {p}")
    hi = float(m) if settings.s_max is None else min(float(m), settings.s_max)
    lo = min(settings.lowest_s, hi)
    return lo, hi


def draw_size(m: float, settings: SamplerSettings, rng: np.random.Generator) -> float:
    """Draw the target size s for a square of side m (see `SamplerSettings.size_distribution`)."""
    lo, hi = size_range(m, settings)
    if settings.size_distribution == "fixed":
        return min(float(settings.fixed_s), hi)
    if settings.size_distribution == "log_uniform":
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return float(rng.uniform(lo, hi))


def draw_spec(*, width: int, height: int, settings: SamplerSettings, rng: np.random.Generator) -> DrawnSpec:
    """Draw where a sample comes from in a displayed image of width×height pixels.

    With probability `settings.global_prob` the sample is global (s = p, offsets 0); otherwise a
    target size s and a window offset (x0, y0) uniform in [0, s - p]² (continuous). Raises
    ImageTooSmall (a ValueError) for a patch from an image whose shorter side is below p.
    """
    square = draw_square(width=width, height=height, crop=settings.crop, rng=rng)
    if rng.random() < settings.global_prob:
        return DrawnSpec(square, PatchSpec.global_(settings.p), True)
    s = draw_size(square.m, settings, rng)
    x0, y0 = rng.uniform(0.0, s - settings.p, size=2)
    return DrawnSpec(square, PatchSpec(s, float(x0), float(y0), settings.p), False)


def global_spec(*, width: int, height: int, settings: SamplerSettings, rng: np.random.Generator) -> DrawnSpec:
    """A global sample of a width×height image: its square (per `settings.crop`) rendered at p×p."""
    square = draw_square(width=width, height=height, crop=settings.crop, rng=rng)
    return DrawnSpec(square, PatchSpec.global_(settings.p), True)


def expected_patch_size(m: float, settings: SamplerSettings) -> float:
    """E[s | m]: the mean target size of a (non-global) patch from a square of side m."""
    lo, hi = size_range(m, settings)
    if settings.size_distribution == "fixed":
        return min(float(settings.fixed_s), hi)
    if hi == lo:
        return lo
    if settings.size_distribution == "log_uniform":
        return (hi - lo) / math.log(hi / lo)
    return (lo + hi) / 2


def expected_scale(*, widths: Sequence[int], heights: Sequence[int], settings: SamplerSettings) -> float:
    """E[s] over the samples drawn from images of these displayed sizes (the paper's Table 1 column).

    Global samples count as s = p with probability `global_prob`; images whose shorter side is
    below p give no patches and are left out of the patch average (the loader skips them).
    Raises ValueError when no image is large enough and global_prob < 1.
    """
    sides = np.minimum(np.asarray(widths, dtype=np.float64), np.asarray(heights, dtype=np.float64))
    usable = sides[sides >= settings.p]
    if settings.global_prob == 1:
        return float(settings.p)
    if usable.size == 0:
        raise ValueError(f"no image has a shorter side ≥ p = {settings.p}: no patches can be drawn")
    patch_mean = float(np.mean([expected_patch_size(m, settings) for m in usable]))
    return settings.global_prob * settings.p + (1 - settings.global_prob) * patch_mean


def worker_rng(seed: int, *, rank: int, worker: int, epoch: int) -> np.random.Generator:
    """The random stream of one DataLoader worker: independent across (seed, rank, worker, epoch)."""
    return np.random.default_rng(np.random.SeedSequence([seed, rank, worker, epoch]))
