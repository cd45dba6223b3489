"""Cutting a patch out of encoded image bytes with libvips, reading only what the patch needs.

The result equals Pillow's `resize((p, p), LANCZOS, box=...)` on the fully decoded image (the
"Real patches" recipe of docs/design.md) without decoding or resizing the whole image:

1. the header (`anyres_data.probe.read_header`) gives the stored size and the EXIF orientation;
2. JPEGs are decoded with DCT shrink-on-load by k ∈ {1, 2, 4, 8}, the largest that leaves at least
   2.5× for the Lanczos step (f source pixels per output pixel, k ≤ f / 2.5);
3. only the source region under the patch plus the lanczos3 support is cut (sequential access:
   decoding stops below the region), rotated into displayed orientation, and
4. `reduceh` then `reducev` with lanczos3 (support scaled by the factor: antialiased, as Pillow's
   resize, and in Pillow's order) render it.

`reduce` places output pixels on a grid centred on its input, so the patch lands within a
quarter of a (shrunk) source pixel of the drawn spec (half a pixel below 2× reduction); the
returned spec says where it *really* lies, to sub-pixel precision, so data and model agree.
Output is always 8-bit sRGB RGB: EXIF orientation applied, CMYK and embedded ICC profiles
converted to sRGB, 16-bit reduced to 8, grey and palette expanded, alpha flattened on white.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pyvips

from anyres_data.probe import ImageHeader, read_header
from anyres_data.sampling.draw import DrawnSpec, SamplerSettings, Square, global_spec
from anyres_data.spec import PatchSpec

# Shrink-on-load leaves at least this many source pixels per output pixel for the Lanczos step.
# 2 is the textbook minimum; at 2.0-2.5 the DCT-scaled decode of 4:2:0 JPEGs (native chroma, box-like
# luma) drifts to ~40 dB of the full decode + Lanczos reference, at ≥ 2.5 it stays above ~42 dB.
HEADROOM = 2.5
MARGIN_PIXELS = 4  # output pixels rendered beyond each side of the patch and cropped off (≥ support + 1/2)

# EXIF orientation → for displayed x and y: (stored axis it comes from (0 = x, 1 = y), flipped?).
_ORIENTATION_AXES = {
    1: ((0, False), (1, False)),
    2: ((0, True), (1, False)),
    3: ((0, True), (1, True)),
    4: ((0, False), (1, True)),
    5: ((1, False), (0, False)),
    6: ((1, True), (0, False)),
    7: ((1, True), (0, True)),
    8: ((1, False), (0, True)),
}


class Patch(NamedTuple):
    """A cut patch: pixels (p, p, 3) uint8 HWC sRGB; the spec where it really lies; its square."""

    pixels: np.ndarray
    spec: PatchSpec
    square: Square


def shrink_factor(f: float) -> int:
    """JPEG shrink-on-load factor for f source pixels per output pixel: largest k ∈ {1, 2, 4, 8}, f/k ≥ HEADROOM."""
    for k in (8, 4, 2):
        if f / k >= HEADROOM:
            return k
    return 1


class _Axis(NamedTuple):
    start: int  # first pixel of the region, in displayed (shrunk) pixel indices; may be < 0
    size: int  # region width in pixels, all rendered (edges replicated beyond the image)
    centre: float  # where output pixel 0 of the patch really lies, displayed (shrunk) continuous coords


def _plan_axis(*, target: float, r: float, p: int, offset: float) -> _Axis:
    """Choose the region along one axis so that reduce's output grid lands nearest to `target`.

    `target` is the desired centre of the patch's first pixel and `offset` the position of
    pixel 0's left edge, both in continuous displayed (shrunk) coordinates; r = source pixels
    per output pixel. `reduce` of a region of W pixels gives n = round(W / r) pixels whose
    centres sit at start + W/2 + (i + 1/2 - n/2)·r: centred on the region, so moving the region
    by one pixel moves the grid by 1, and growing it by one moves it by 1/2 (or 1/2 - r/2 when
    n grows too). Trying a few widths gets within a quarter pixel for r ≥ 2, half a pixel at worst.
    """
    a = MARGIN_PIXELS
    best = None
    base = math.ceil((p + 2 * a) * r)
    for size in range(base, base + 2 * math.ceil(r) + 2):
        n = int(size / r + 0.5)  # libvips: VIPS_ROUND_UINT(in / shrink)
        shift = size / 2 + (a + 0.5 - n / 2) * r  # centre of output pixel a relative to the region's start
        start = round(target - offset - shift)
        centre = offset + start + shift
        if best is None or abs(centre - target) < abs(best.centre - target) - 1e-9:
            best = _Axis(start, size, centre)
    return best


def to_srgb8(image: pyvips.Image) -> pyvips.Image:
    """Any interpretation and depth → sRGB uchar, through the embedded ICC profile when there is one."""
    has_icc = image.get_typeof("icc-profile-data") != 0
    if image.interpretation == "cmyk":
        image = image.icc_transform("srgb", embedded=True, input_profile="cmyk")
    elif has_icc and image.interpretation in ("srgb", "rgb16") and image.bands in (3, 4):
        image = image.icc_transform("srgb", embedded=True)
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    return image


def prepare_for_resampling(image: pyvips.Image) -> pyvips.Image:
    """Make the region safe to resample: 8-bit, alpha composited on white, CMYK converted to sRGB.

    Alpha and CMYK are non-linear in the pixel values, so they must come before the Lanczos step
    (as in the reference, which converts the whole decoded image first); libvips' 8-bit reduce is
    also more exact than its 16-bit one. The cheap conversions (grey → RGB, an embedded RGB
    profile) run after it, on p×p pixels only.
    """
    if image.interpretation == "cmyk" or image.hasalpha() or image.format != "uchar":
        image = to_srgb8(image)
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255], max_alpha=255)
    return image


def _crop_displayed(image: pyvips.Image, *, orientation: int, x: tuple[int, int], y: tuple[int, int]):
    """Cut displayed-pixel ranges x = (start, stop), y = (start, stop) of a (shrunk) image, in display orientation.

    Ranges are clipped to the image; the returned (pad_x, pad_y) say how many pixels are missing
    before each range (to be replicated). Rotation works on the cut region only, in memory.
    """
    axes = _ORIENTATION_AXES[orientation]
    stored_size = (image.width, image.height)
    stored = [(0, 0), (0, 0)]
    pads = []
    for (start, stop), (src, flipped) in zip((x, y), axes, strict=True):
        size = stored_size[src]
        lo, hi = max(start, 0), min(stop, size)
        if lo >= hi:
            raise ValueError(f"patch region {start}..{stop} lies outside the image (0..{size})")
        pads.append(lo - start)
        stored[src] = (size - hi, size - lo) if flipped else (lo, hi)
    (sx0, sx1), (sy0, sy1) = stored
    region = image.crop(sx0, sy0, sx1 - sx0, sy1 - sy0)
    if orientation != 1:
        region = region.copy_memory().autorot()
    return region, pads


def cut_patch(data: bytes, drawn: DrawnSpec, *, header: ImageHeader | None = None) -> Patch:
    """Render `drawn.spec` of `drawn.square` from encoded image bytes: (p, p, 3) uint8 sRGB.

    The square is in displayed pixels (after EXIF orientation). The returned spec has the same
    s and p and the real (sub-pixel) offsets of the pixels produced. A global spec of a square
    smaller than p is upsampled (bicubic); a patch never is. Raises ValueError for a square
    outside the image or a patch that would need upsampling, Rejected when the header does not
    read (see `read_header`), pyvips.Error when the pixels do not decode.
    """
    header = header or read_header(data)
    square, spec = drawn.square, drawn.spec
    fits = square.m >= 1 and square.ox >= 0 and square.oy >= 0
    if not (fits and square.ox + square.m <= header.width and square.oy + square.m <= header.height):
        raise ValueError(f"square {square} does not fit the {header.width}×{header.height} image")
    f = square.m / spec.s  # displayed source pixels per output pixel
    if f < 1:
        if not drawn.is_global:
            raise ValueError(f"patch at s = {spec.s} from a square of side {square.m} would need upsampling")
        image = pyvips.Image.new_from_buffer(data, "", access="sequential", fail_on="error")
        return upsample_global(image, square=square, p=spec.p, orientation=header.orientation)
    k = shrink_factor(f) if header.format == "jpg" else 1
    options = {"shrink": k} if k > 1 else {}
    image = pyvips.Image.new_from_buffer(data, "", access="sequential", fail_on="error", **options)
    return render_patch(
        image, drawn, k=k, orientation=header.orientation, full_size=(header.stored_width, header.stored_height)
    )


def render_patch(
    image: pyvips.Image,
    drawn: DrawnSpec,
    *,
    k: int,
    orientation: int = 1,
    full_size: tuple[int, int] | None = None,
) -> Patch:
    """Render `drawn.spec` (f = m / s ≥ 1) from `image`, the stored image shrunk by k, as a Patch.

    Pixel i of `image` covers stored pixels [k·i, k·(i+1)) (JPEG shrink-on-load, or a level of a
    pyramid halved `log2 k` times). `orientation` is the EXIF orientation to apply (1 for an image
    stored as displayed), `full_size` the stored (width, height) before shrinking (default: k × the
    image's). Only the region under the patch plus the lanczos3 support is read from `image`.
    `between`, for an image stored in another colour space: the region is reduced horizontally in
    float and `between` turns it into 8-bit sRGB before the vertical pass (where Pillow rounds and
    clips its RGB intermediate).
    """
    square, spec = drawn.square, drawn.spec
    f = square.m / spec.s
    r = f / k
    left, top, _, _ = spec.box(square.m)
    axes = _ORIENTATION_AXES[orientation]
    full = full_size or (image.width * k, image.height * k)
    shrunk = (image.width, image.height)
    plans = []
    for origin, start, (src, flipped) in ((square.ox, left, axes[0]), (square.oy, top, axes[1])):
        # A flipped axis runs from the far edge: its shrunk pixel grid starts at full/k - floor(full/k).
        offset = full[src] / k - shrunk[src] if flipped else 0.0
        plans.append(_plan_axis(target=(origin + start) / k + 0.5 * r, r=r, p=spec.p, offset=offset))
    px, py = plans
    region, (pad_x, pad_y) = _crop_displayed(
        image, orientation=orientation, x=(px.start, px.start + px.size), y=(py.start, py.start + py.size)
    )
    if region.width != px.size or region.height != py.size:
        region = region.embed(pad_x, pad_y, px.size, py.size, extend="copy")
    region = prepare_for_resampling(region)
    if r != 1:
        region = region.reduceh(r, kernel="lanczos3").reducev(r, kernel="lanczos3")
    assert (region.width, region.height) == (int(px.size / r + 0.5), int(py.size / r + 0.5)), "libvips reduce size"
    pixels = to_srgb8(region.crop(MARGIN_PIXELS, MARGIN_PIXELS, spec.p, spec.p)).numpy()
    real = PatchSpec(
        spec.s,
        (px.centre * k - square.ox) / f - 0.5,
        (py.centre * k - square.oy) / f - 0.5,
        spec.p,
    )
    return Patch(pixels, real, square)


def upsample_global(image: pyvips.Image, *, square: Square, p: int, orientation: int = 1) -> Patch:
    """A square smaller than p of the (unshrunk) stored image rendered at p×p: bicubic, pixel centres aligned."""
    region, _ = _crop_displayed(
        image, orientation=orientation, x=(square.ox, square.ox + square.m), y=(square.oy, square.oy + square.m)
    )
    region = prepare_for_resampling(region)
    f = square.m / p
    shift = 0.5 - 0.5 * f  # vips affine works on pixel indices; this puts output centres at (i + 1/2)·f
    region = region.affine(
        [1 / f, 0, 0, 1 / f],
        idx=shift,
        idy=shift,
        oarea=[0, 0, p, p],
        interpolate=pyvips.Interpolate.new("bicubic"),
        extend="copy",
    )
    return Patch(to_srgb8(region).numpy(), PatchSpec.global_(p), square)


def cut_global(
    data: bytes,
    *,
    p: int,
    crop: str = "centre",
    rng: np.random.Generator | None = None,
    header: ImageHeader | None = None,
) -> Patch:
    """The whole square of side min(w, h) (centred, or at a random offset with `rng`) resized to p×p.

    This is how an LR image (or an HR image seen whole) becomes a global sample. Raises as `cut_patch`.
    """
    header = header or read_header(data)
    if crop == "random" and rng is None:
        raise ValueError("crop='random' needs an rng")
    settings = SamplerSettings(p=p, crop=crop, global_prob=1.0)
    drawn = global_spec(width=header.width, height=header.height, settings=settings, rng=rng)
    return cut_patch(data, drawn, header=header)
