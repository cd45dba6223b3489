"""The demo source: procedural landscapes of many native sizes, needing nothing but numpy.

Each image is a shaded relief map of a fractal terrain. The terrain is a sum of cosines, one per
integer frequency (kx, ky) of the unit square, with a 1/f^4 power spectrum and a phase drawn by
hashing (seed, kx, ky): the coefficients do not depend on the render size, so every size samples
the same continuous function. A render of size W×H is that function *as a Lanczos3 downsampler
would see it*: each frequency is weighted by the Lanczos3 frequency response at the W×H grid, then
sampled at pixel centres with one inverse FFT. Hence `render_demo(s, W, H)` ≈ a Lanczos downsample of
`render_demo(s, 4W, 4H)` (≥ 30 dB PSNR; tested): the ground truth exists at every resolution.

The 1/f^4 height spectrum makes the colours (a ramp over height) smooth, while the hill shading
(linear in the height gradient) has equal energy in every octave: detail at every scale, and a
near-linear image, which is what keeps renders at different sizes consistent.

Candidates are `demo://SEED/WxH.EXT` URLs; `demo_bytes(url)` renders and encodes one (JPEG Q92
mostly, some PNG and WebP), deterministically.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pyvips
import scipy.fft

from anyres_data.candidate import Candidate
from anyres_data.settings import setting

DEMO_FORMATS = ("jpeg", "png", "webp")
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
_FORMAT_WEIGHTS = {"jpeg": 0.8, "png": 0.1, "webp": 0.1}
_URL = re.compile(r"^demo://(?P<seed>\d+)/(?P<w>\d+)x(?P<h>\d+)\.(?P<ext>jpg|png|webp)$")
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class DemoSettings:
    """What the demo source proposes: `count` landscapes, sizes between two sides (log-uniform by default)."""

    count: int = setting(48, "number of demo images")
    seed: int = setting(0, "seed of the demo set; the same seed gives the same images")
    min_side: int = setting(200, "smallest image side in pixels (shorter sides are at least this)")
    max_side: int = setting(4000, "largest image side in pixels (longer sides are at most this)")
    side_distribution: Literal["log_uniform", "uniform"] = setting(
        "log_uniform", "how the longer side is drawn between min_side and max_side"
    )
    max_aspect: float = setting(2.5, "largest aspect ratio (longer / shorter side); 1 gives squares")
    formats: tuple[str, ...] = setting(
        DEMO_FORMATS, "image formats to encode, from jpeg,png,webp (mostly JPEG when all are allowed)"
    )


# ---------------------------------------------------------------------------------------------
# counter-based hashing: the same (seed, counter) gives the same number on every machine and size


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _hash_uniform(seed: int, *counters: int) -> float:
    """A uniform number in [0, 1) from a seed and integer counters."""
    x = _splitmix64(seed & _MASK64)
    for c in counters:
        x = _splitmix64(x ^ (c & _MASK64))
    return (x >> 11) * 2.0**-53


def _fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place on a uint64 array (a bijection: no collisions)."""
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


def _phases(seed: int, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """Phase in [0, 2π) of each frequency: (len(ky), len(kx)) float64, a function of (seed, kx, ky) only."""
    key = (ky.astype(np.int64).astype(np.uint64) << np.uint64(32))[:, None] | kx.astype(np.uint64)[None, :]
    key ^= np.uint64(_splitmix64(seed & _MASK64))
    _fmix64(key)
    return (key >> np.uint64(11)).astype(np.float64) * (2.0 * math.pi * 2.0**-53)


# ---------------------------------------------------------------------------------------------
# the continuous image and its band-limited sampling


_BAND = 0.75  # highest frequency kept, in cycles per output sample: Lanczos3 passes ~nothing beyond


@lru_cache(maxsize=1)
def _lanczos3_response() -> tuple[np.ndarray, np.ndarray]:
    """Frequency response of the Lanczos3 kernel, tabulated for ν in [0, _BAND] cycles per sample."""
    t = np.linspace(-3.0, 3.0, 6001)
    kernel = np.sinc(t) * np.sinc(t / 3.0)
    nu = np.linspace(0.0, _BAND, 385)
    response = (kernel[None, :] * np.cos(2 * np.pi * nu[:, None] * t[None, :])).sum(1) / kernel.sum()
    return nu, response


def _taper(k: np.ndarray, n: int) -> np.ndarray:
    """Lanczos3 response of integer frequency k (cycles per image side) on an n-sample grid."""
    nu, response = _lanczos3_response()
    return np.interp(np.abs(k) / n, nu, response, right=0.0).astype(np.float32)


_RHO0 = 1.5  # softens the few largest waves so that no single one dominates the terrain


def _amplitude(rho: np.ndarray) -> np.ndarray:
    """Amplitude per frequency, rho in cycles per image height: a 1/f^4 power spectrum, none at DC."""
    return np.where(rho > 0, 1.0 / (rho * rho + _RHO0 * _RHO0), 0.0)


@lru_cache(maxsize=64)
def _norms(aspect: float) -> tuple[float, float]:
    """Fixed scales that give height and gradient about unit variance, from a size-independent band."""
    k = np.arange(-64, 65)
    rho = np.hypot(k[None, :] / aspect, k[:, None])
    power = 0.5 * _amplitude(rho) ** 2  # a cosine of amplitude 2A per half-plane frequency, summed over the plane
    grad = power * (2 * np.pi * rho) ** 2 / 2  # the directional derivative sees half the gradient power
    return 1.0 / math.sqrt(2 * power.sum()), 1.0 / math.sqrt(2 * grad.sum())


_ROWS_PER_CHUNK = 256  # bounds the temporaries of a large render to a few tens of MB


def _fields(seed: int, width: int, height: int, light: float) -> tuple[np.ndarray, np.ndarray]:
    """Height and its derivative along the light direction, both (height, width) float32, ~unit variance.

    The scene is periodic on the unit square: frequency (kx, ky) has kx cycles across the width and ky
    down the height, and contributes 2A·cos(2π(kx·x + ky·y) + φ) for each (kx, ky) of a half-plane.
    Pixel (i, j) samples the Lanczos3-filtered scene at its centre ((j + 0.5) / W, (i + 0.5) / H):
    frequencies up to _BAND cycles per pixel are weighted by the filter's response and folded onto the
    W×H grid (aliased) as a sampler would, then one inverse real FFT per field renders them.
    """
    aspect = width / height
    kx = np.arange(int(_BAND * width) + 1)
    ky_all = np.arange(-int(_BAND * height), int(_BAND * height) + 1)
    fx = (kx / aspect).astype(np.float32)  # cycles per image height
    taper_x = _taper(kx, width)
    direct = kx <= width // 2  # stored in place; beyond the Nyquist column, as the conjugate mirror
    mirror_cols = width - kx[~direct]
    h_bins = np.zeros((height, width // 2 + 1), np.complex64)
    d_bins = np.zeros_like(h_bins)
    dx, dy = math.cos(light), math.sin(light)
    chunk = min(_ROWS_PER_CHUNK, height)  # rows of one chunk must be distinct modulo the height
    for start in range(0, len(ky_all), chunk):
        ky = ky_all[start : start + chunk]
        fy = ky.astype(np.float32)
        amp = _amplitude(np.hypot(fx[None, :], fy[:, None])).astype(np.float32)
        amp *= _taper(ky, height)[:, None] * taper_x[None, :]
        amp[ky <= 0, 0] = 0.0  # on the kx = 0 line the half-plane holds ky > 0 only
        phase = _phases(seed, kx, ky)
        phase += (np.pi / width) * kx[None, :] + (np.pi / height) * ky[:, None]  # pixel centres
        h = amp * np.exp(1j * phase.astype(np.float32))
        d = h * ((2j * np.pi) * (dx * fx[None, :] + dy * fy[:, None])).astype(np.complex64)
        rows = ky % height
        h_bins[rows, : direct.sum()] += h[:, direct]
        d_bins[rows, : direct.sum()] += d[:, direct]
        mirror_rows = (-ky) % height
        h_bins[mirror_rows[:, None], mirror_cols[None, :]] += np.conj(h[:, ~direct])
        d_bins[mirror_rows[:, None], mirror_cols[None, :]] += np.conj(d[:, ~direct])
    # the inverse real FFT takes the real part of columns 0 and W/2: double them to match 2A·cos
    real_cols = [0, width // 2] if width % 2 == 0 else [0]
    h_bins[:, real_cols] *= 2
    d_bins[:, real_cols] *= 2
    norm_h, norm_d = _norms(round(aspect, 6))
    scale = width * height  # irfft2 divides by the number of samples
    h_field = scipy.fft.irfft2(h_bins, s=(height, width), workers=1)
    del h_bins
    h_field *= np.float32(scale * norm_h)
    d_field = scipy.fft.irfft2(d_bins, s=(height, width), workers=1)
    del d_bins
    d_field *= np.float32(scale * norm_d)
    return h_field, d_field


# palettes: (height in standard deviations above sea level, RGB); below 0 is water. Stops are far
# apart (≥ 0.3 std): a steep ramp would turn small height changes into edges that alias.
_PALETTES = (
    (  # temperate
        (-2.5, (18, 42, 92)),
        (-0.3, (58, 112, 160)),
        (0.0, (196, 184, 140)),
        (0.35, (104, 148, 70)),
        (1.0, (52, 96, 48)),
        (1.7, (122, 112, 98)),
        (2.4, (236, 236, 240)),
    ),
    (  # desert
        (-2.5, (40, 70, 96)),
        (-0.3, (90, 140, 150)),
        (0.0, (226, 200, 150)),
        (0.7, (214, 164, 102)),
        (1.4, (170, 96, 58)),
        (2.3, (110, 62, 46)),
    ),
    (  # arctic
        (-2.5, (12, 30, 52)),
        (-0.3, (44, 88, 120)),
        (0.0, (150, 160, 166)),
        (0.4, (206, 214, 222)),
        (1.1, (242, 246, 250)),
        (1.8, (140, 144, 152)),
        (2.5, (250, 250, 252)),
    ),
    (  # autumn
        (-2.5, (24, 40, 60)),
        (-0.3, (60, 96, 110)),
        (0.0, (170, 160, 120)),
        (0.4, (170, 120, 50)),
        (1.0, (150, 60, 34)),
        (1.6, (96, 80, 60)),
        (2.4, (226, 222, 214)),
    ),
)


_EXPOSURE = 0.85  # headroom for the shading: clipping at 255 is a nonlinearity that breaks consistency


def render_demo(seed: int, width: int, height: int) -> np.ndarray:
    """Render demo landscape `seed` at `width`×`height` pixels: (height, width, 3) uint8 RGB.

    Any size samples the same band-limited scene (see the module docstring). Raises ValueError for
    sides below 8 px.
    """
    if width < 8 or height < 8:
        raise ValueError(f"demo images need sides of at least 8 px, got {width}x{height}")
    palette = _PALETTES[int(_hash_uniform(seed, 1) * len(_PALETTES))]
    light = 2 * math.pi * _hash_uniform(seed, 2)
    sea = -0.9 + 1.2 * _hash_uniform(seed, 3)  # sea level in standard deviations of height
    relief = 0.28 + 0.12 * _hash_uniform(seed, 4)
    h, d = _fields(seed, width, height, light)
    stops = np.array([s for s, _ in palette], np.float32) + np.float32(sea)
    colours = np.array([c for _, c in palette], np.float32) * np.float32(_EXPOSURE)
    out = np.empty((height, width, 3), np.uint8)
    for top in range(0, height, _ROWS_PER_CHUNK):  # bands of rows keep the temporaries small
        hb, db = h[top : top + _ROWS_PER_CHUNK], d[top : top + _ROWS_PER_CHUNK]
        land = np.clip((hb - np.float32(sea)) * np.float32(1 / 0.4) + np.float32(0.5), 0.0, 1.0)  # a wide shore
        shade = np.float32(1.0) + np.float32(relief) * db * (np.float32(0.15) + np.float32(0.85) * land)
        np.clip(shade, 0.3, 1.7, out=shade)  # water is flatter than land
        for c in range(3):
            channel = np.interp(hb, stops, colours[:, c]).astype(np.float32)
            channel *= shade
            np.clip(channel + np.float32(0.5), 0, 255, out=channel)
            out[top : top + _ROWS_PER_CHUNK, :, c] = channel
    return out


# ---------------------------------------------------------------------------------------------
# the source


def demo_url(seed: int, width: int, height: int, fmt: str) -> str:
    """The URL that names one demo image (what `demo_bytes` reads back)."""
    return f"demo://{seed}/{width}x{height}.{_EXTENSIONS[fmt]}"


def demo_bytes(url: str) -> bytes:
    """Render and encode the image a `demo://SEED/WxH.EXT` URL names: the encoded file's bytes.

    Encoder settings are fixed (JPEG Q92 4:2:0, PNG level 6, WebP Q90), so the same URL gives the
    same bytes with the same libvips. Raises ValueError for a URL this source did not make.
    """
    match = _URL.match(url)
    if not match:
        raise ValueError(f"not a demo URL: {url!r} (expected demo://SEED/WIDTHxHEIGHT.jpg|png|webp)")
    seed, width, height, ext = int(match["seed"]), int(match["w"]), int(match["h"]), match["ext"]
    pixels = render_demo(seed, width, height)
    image = pyvips.Image.new_from_memory(pixels.data, width, height, 3, "uchar")
    if ext == "jpg":
        return image.write_to_buffer(".jpg", Q=92, keep="none")
    if ext == "png":
        return image.write_to_buffer(".png", compression=6, keep="none")
    return image.write_to_buffer(".webp", Q=90, keep="none")


def _smooth_side(n: int) -> int:
    """The largest 5-smooth integer ≤ n (FFT-friendly sizes keep large renders fast)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n -= 1


def demo_size(
    seed: int,
    index: int,
    *,
    min_side: int,
    max_side: int,
    side_distribution: str = "log_uniform",
    max_aspect: float = 2.5,
) -> tuple[int, int]:
    """(width, height) of demo image `index`: longer side log-uniform or uniform, aspect 1 to max_aspect, 30% portrait.

    Log-uniform sides are rounded down to 5-smooth integers (fast FFTs for huge renders); uniform
    ones to the nearest integer, so that a set meant to cover a range of sizes covers it evenly.
    """
    u = _hash_uniform(seed, index, 10)
    if side_distribution == "uniform":
        longer = min_side + (max_side - min_side) * u
    else:
        longer = min_side * (max_side / min_side) ** u
    aspect = max_aspect ** _hash_uniform(seed, index, 11)
    shorter = max(min_side, longer / aspect)
    smooth = _smooth_side if side_distribution == "log_uniform" else int
    longer, shorter = smooth(round(longer)), smooth(round(shorter))
    shorter = min(max(shorter, min_side), longer)
    if _hash_uniform(seed, index, 12) < 0.3:
        return shorter, longer
    return longer, shorter


def _pick_format(seed: int, index: int, formats: tuple[str, ...]) -> str:
    weights = np.array([_FORMAT_WEIGHTS[f] for f in formats])
    cumulative = np.cumsum(weights / weights.sum())
    return formats[int(np.searchsorted(cumulative, _hash_uniform(seed, index, 13), side="right"))]


def iter_demo(settings: DemoSettings) -> Iterator[Candidate]:
    """Candidates of the demo set, in index order; each knows its size, so nothing is rendered here.

    Raises ValueError (at once) for a count below 0, sides out of order or below 8 px, or an unknown format.
    """
    if settings.count < 0:
        raise ValueError(f"--demo-count must be ≥ 0, got {settings.count}")
    if not 8 <= settings.min_side <= settings.max_side:
        raise ValueError(f"need 8 ≤ --demo-min-side ≤ --demo-max-side, got {settings.min_side} and {settings.max_side}")
    if settings.max_aspect < 1 or settings.side_distribution not in ("log_uniform", "uniform"):
        raise ValueError(
            f"--demo-max-aspect must be ≥ 1 and --demo-side-distribution log_uniform or uniform, got "
            f"{settings.max_aspect} and {settings.side_distribution!r}"
        )
    unknown = sorted(set(settings.formats) - set(DEMO_FORMATS))
    if unknown or not settings.formats:
        raise ValueError(f"--demo-formats: unknown {unknown or 'empty list'}; choose from {','.join(DEMO_FORMATS)}")
    return _demo_candidates(settings)


def _demo_candidates(settings: DemoSettings) -> Iterator[Candidate]:
    for index in range(settings.count):
        image_seed = _splitmix64(_splitmix64(settings.seed & _MASK64) ^ index) >> 1
        width, height = demo_size(
            settings.seed,
            index,
            min_side=settings.min_side,
            max_side=settings.max_side,
            side_distribution=settings.side_distribution,
            max_aspect=settings.max_aspect,
        )
        fmt = _pick_format(settings.seed, index, settings.formats)
        yield Candidate(
            source="demo",
            source_id=f"{settings.seed}-{index:06d}",
            url=demo_url(image_seed, width, height, fmt),
            width=width,
            height=height,
            license="CC0-1.0",
            owner="anyres demo",
            title=f"demo landscape {index} (seed {settings.seed})",
            extra={"demo_seed": image_seed},
        )
