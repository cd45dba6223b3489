"""Aspect-ratio buckets with SDXL size and crop conditioning, from the same shards as the patch sampler.

Diffusion trainers take whole images in **buckets** (NovelAI's scheme, kohya-ss sd-scripts,
SDXL): a set of sizes W×H of about the same area, every image resized to *cover* the bucket of
its nearest aspect ratio and cropped to it, every batch from one bucket. SDXL also conditions on
the image's `original_size`, the `crops_coords_top_left` of the crop and the `target_size`.

- **The bucket set** is kohya-ss' `make_bucket_resolutions`: for every width W from `min_side` to
  `max_side` in steps of `step`, H = min(max_side, ⌊(A // W) / step⌋·step) with A = resolution²,
  kept when H ≥ min_side, with its transpose H×W; plus the square ⌊resolution / step⌋·step. Every
  side is a multiple of `step` and W·H ≤ A. Sorted by (W, H), which is also the bucket index.
- **Assignment** (`assign="aspect"`, kohya's `select_bucket`): the bucket whose W/H is nearest
  to the image's w/h in absolute difference of the ratios; a tie goes to the lower index.
  `assign="log_aspect"`: nearest in |log(W/H) − log(w/h)| instead (symmetric for portrait and
  landscape). Sizes are the displayed ones (EXIF orientation applied): the manifest's `width`
  and `height`, or the image header in the loader — the same numbers.
- **Resize and crop** (kohya's `trim_and_resize_if_required`): scale = max(W/w, H/h); the image
  is resized to (rw, rh) = (⌊w·scale + ½⌋, ⌊h·scale + ½⌋) ≥ (W, H), then cropped at (left, top),
  uniform integers in [0, rw − W] × [0, rh − H] (random) or ⌊(rw − W)/2⌋, ⌊(rh − H)/2⌋ (centre).
  Pixel (i, j) of the result is centred on ((left + i + ½)·w/rw, (top + j + ½)·h/rh) of the
  displayed original: `Placement.box` is Pillow's `resize((W, H), LANCZOS, box=...)` for it.
- **No upscaling** unless `upscale=True`: an image smaller than its bucket on either side
  (scale > 1) is skipped and counted as too small. (kohya upscales; with `--bucket_no_upscale`
  it makes a bucket per image size instead — here the bucket set stays fixed.)

Everything up to the placement is computed from the sizes alone (`assign_buckets` works on manifest
columns, a million rows in well under a second); `cut_bucket` renders a placement from the encoded
bytes with libvips: JPEG shrink-on-load, `reduceh`/`reducev` lanczos3 over the whole axis (which
puts libvips' output grid exactly on the (rw, rh) grid), then the crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import pyvips

from anyres_data.probe import ImageHeader, read_header
from anyres_data.sampling.draw import ImageTooSmall
from anyres_data.sampling.patches import HEADROOM, prepare_for_resampling, to_srgb8
from anyres_data.settings import setting


@dataclass(frozen=True)
class BucketSettings:
    """Which buckets exist, how an image is assigned to one and cut (sides in displayed pixels)."""

    resolution: int = setting(1024, "Side of the area budget: every bucket has W·H ≤ resolution² pixels.")
    step: int = setting(64, "Bucket widths and heights are multiples of this (kohya's bucket_reso_steps).")
    min_side: int | None = setting(None, "Smallest bucket side; None: resolution / 2, rounded down to step.")
    max_side: int | None = setting(None, "Largest bucket side; None: 2 × resolution, rounded down to step.")
    assign: Literal["aspect", "log_aspect"] = setting(
        "aspect",
        "aspect: the bucket nearest in W/H − w/h (kohya-ss); log_aspect: nearest in log(W/H) − log(w/h).",
    )
    upscale: bool = setting(
        False, "Upscale (bicubic) images smaller than their bucket; False: skip them, counted as too_small."
    )
    crop: Literal["random", "centre"] = setting(
        "random", "Where the bucket is cut from the resized image: random (training) or centred."
    )
    headroom: float = setting(
        HEADROOM,
        "JPEG shrink-on-load leaves at least this many source pixels per output pixel for the Lanczos step "
        "(the patch sampler's 2.5). Below 2 is a trade: 1.5 loads a 4000×3000 photo at half size for a 1024² "
        "bucket, faster, at 39–48 dB from Pillow's full-decode Lanczos instead of ≥ 45 dB.",
    )

    def __post_init__(self) -> None:
        if self.step < 1 or self.resolution < self.step:
            raise ValueError(f"need resolution ≥ step ≥ 1, got resolution {self.resolution}, step {self.step}")
        if self.lowest_side < self.step or self.lowest_side > self.highest_side:
            raise ValueError(
                f"min_side ({self.lowest_side}) must be ≥ step ({self.step}) and ≤ max_side ({self.highest_side})"
            )
        if self.headroom < 1:
            raise ValueError(f"headroom must be ≥ 1 (shrink-on-load never below the output size), got {self.headroom}")
        if self.lowest_side * self.lowest_side > self.resolution**2:
            raise ValueError(
                f"no bucket: min_side {self.lowest_side} squared exceeds the area budget {self.resolution}²"
            )

    @property
    def lowest_side(self) -> int:
        """min_side resolved."""
        return (
            self.min_side
            if self.min_side is not None
            else max(self.step, self.resolution // 2 // self.step * self.step)
        )

    @property
    def highest_side(self) -> int:
        """max_side resolved."""
        return self.max_side if self.max_side is not None else 2 * self.resolution // self.step * self.step


class Bucket(NamedTuple):
    width: int
    height: int


def bucket_sizes(settings: BucketSettings) -> tuple[Bucket, ...]:
    """The bucket set, sorted by (width, height): kohya-ss' `make_bucket_resolutions`."""
    area, step = settings.resolution**2, settings.step
    lo, hi = settings.lowest_side, settings.highest_side
    square = int(np.sqrt(area)) // step * step
    sizes = {(square, square)}
    for width in range(lo, hi + 1, step):
        height = min(hi, area // width // step * step)
        if height >= lo:
            sizes |= {(width, height), (height, width)}
    return tuple(Bucket(w, h) for w, h in sorted(sizes))


class BucketTable:
    """A bucket set with its aspect ratios, ready to assign images (built once, reused for every image)."""

    def __init__(self, settings: BucketSettings) -> None:
        self.settings = settings
        self.sizes = bucket_sizes(settings)
        widths = np.array([b.width for b in self.sizes], dtype=np.float64)
        heights = np.array([b.height for b in self.sizes], dtype=np.float64)
        key = np.log if settings.assign == "log_aspect" else (lambda x: x)
        self._key = key
        self._order = np.argsort(widths / heights, kind="stable")  # by aspect ratio; ties keep index order
        self._sorted = key(widths / heights)[self._order]
        self.widths, self.heights = widths.astype(np.int64), heights.astype(np.int64)

    def __len__(self) -> int:
        return len(self.sizes)

    def nearest(self, widths: np.ndarray, heights: np.ndarray) -> np.ndarray:
        """Index of the nearest bucket per image (int64), by the settings' rule; ties to the lower index."""
        value = self._key(np.asarray(widths, dtype=np.float64) / np.asarray(heights, dtype=np.float64))
        upper = np.clip(np.searchsorted(self._sorted, value), 1, len(self._sorted) - 1)
        lower = upper - 1
        if len(self._sorted) == 1:
            return np.zeros(value.shape, np.int64)
        err_lo, err_hi = np.abs(value - self._sorted[lower]), np.abs(self._sorted[upper] - value)
        i_lo, i_hi = self._order[lower], self._order[upper]
        pick_hi = (err_hi < err_lo) | ((err_hi == err_lo) & (i_hi < i_lo))
        return np.where(pick_hi, i_hi, i_lo).astype(np.int64)

    def assign(self, widths: np.ndarray, heights: np.ndarray) -> np.ndarray:
        """Bucket index per image (int64), −1 where the image is smaller than its bucket and upscale is off."""
        widths, heights = np.asarray(widths, dtype=np.int64), np.asarray(heights, dtype=np.int64)
        index = self.nearest(widths, heights)
        if self.settings.upscale:
            return index
        fits = (widths >= self.widths[index]) & (heights >= self.heights[index])
        return np.where(fits, index, -1)


def assign_buckets(widths: np.ndarray, heights: np.ndarray, settings: BucketSettings) -> np.ndarray:
    """Bucket index (into `bucket_sizes(settings)`) per image of displayed size widths × heights; −1: too small."""
    return BucketTable(settings).assign(widths, heights)


class Placement(NamedTuple):
    """Where an image goes: its bucket (index, W×H), the size it is resized to, the crop in that size.

    All in displayed pixels: `original` (w, h), `resized` (rw, rh), `crop` (left, top) in the resized image.
    """

    bucket: int
    target: Bucket
    original: tuple[int, int]
    resized: tuple[int, int]
    crop: tuple[int, int]

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the crop in the displayed original: Pillow's `resize(..., box=)`."""
        (w, h), (rw, rh), (left, top), (bw, bh) = self.original, self.resized, self.crop, self.target
        return (left * w / rw, top * h / rh, (left + bw) * w / rw, (top + bh) * h / rh)


def resized_size(width: int, height: int, target: Bucket) -> tuple[int, int]:
    """kohya's cover resize: scale = max(W/w, H/h), sizes rounded half up (≥ the bucket on both sides)."""
    scale = max(target.width / width, target.height / height)
    return int(width * scale + 0.5), int(height * scale + 0.5)


def place(*, width: int, height: int, table: BucketTable, rng: np.random.Generator | None) -> Placement:
    """The placement of a displayed width×height image: nearest bucket, cover size, crop (random with rng).

    Raises ImageTooSmall (a ValueError) when the image is smaller than its bucket and upscale is off,
    ValueError for a random crop without an rng or a non-positive size.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}×{height}")
    index = int(table.assign(np.array([width]), np.array([height]))[0])
    if index < 0:
        nearest = table.sizes[int(table.nearest(np.array([width]), np.array([height]))[0])]
        raise ImageTooSmall(f"{width}×{height} is smaller than its bucket {nearest.width}×{nearest.height}")
    target = table.sizes[index]
    rw, rh = resized_size(width, height, target)
    if table.settings.crop == "centre":
        crop = ((rw - target.width) // 2, (rh - target.height) // 2)
    elif rng is None:
        raise ValueError("crop='random' needs an rng")
    else:
        crop = (int(rng.integers(0, rw - target.width + 1)), int(rng.integers(0, rh - target.height + 1)))
    return Placement(index, target, (width, height), (rw, rh), crop)


def bucket_shrink(header: ImageHeader, f: float, *, headroom: float = HEADROOM) -> int:
    """JPEG shrink-on-load factor for f source pixels per output pixel.

    The patch cutter's rule — the largest k ∈ {1, 2, 4, 8} with f / k ≥ headroom — among the k that
    divide both stored sides: then the shrunk pixel grid is exactly the original's, and the
    whole-axis reduce lands on the (rw, rh) grid with no offset. Other formats load at full size.
    """
    if header.format != "jpg":
        return 1
    divides = [k for k in (8, 4, 2) if not header.stored_width % k and not header.stored_height % k]
    return next((k for k in divides if f / k >= headroom), 1)


def cut_bucket(
    data: bytes, placement: Placement, *, header: ImageHeader | None = None, headroom: float = HEADROOM
) -> np.ndarray:
    """Render a placement from encoded image bytes: (H, W, 3) uint8 sRGB, H×W the bucket.

    libvips loads with JPEG shrink-on-load (`bucket_shrink` with `headroom`), reduces the whole image to (rw, rh)
    with lanczos3 (horizontal first, in displayed axes, like Pillow), turns it into display
    orientation and crops the bucket; demand-driven, so only what the crop needs is computed. An
    image smaller than its resized size (upscale only) is interpolated bicubically instead. Raises
    ValueError when the placement is for another size, Rejected for an unreadable header,
    pyvips.Error when the pixels do not decode.
    """
    header = header or read_header(data)
    (w, h), (rw, rh), (left, top) = placement.original, placement.resized, placement.crop
    bw, bh = placement.target
    if (header.width, header.height) != (w, h):
        raise ValueError(f"placement for {w}×{h}, image is {header.width}×{header.height}")
    fx, fy = w / rw, h / rh  # displayed source pixels per output pixel
    if fx < 1 or fy < 1:
        return _upscale(data, header=header, placement=placement)
    k = bucket_shrink(header, min(fx, fy), headroom=headroom)
    image = pyvips.Image.new_from_buffer(
        data, "", access="sequential", fail_on="error", **({"shrink": k} if k > 1 else {})
    )
    assert (image.width * k, image.height * k) == (header.stored_width, header.stored_height), "shrink-on-load size"
    image = prepare_for_resampling(image)
    swap = header.orientation >= 5  # stored x is displayed y
    passes = (("reducev", fx), ("reduceh", fy)) if swap else (("reduceh", fx), ("reducev", fy))
    for operation, f in passes:  # displayed x first
        if f / k != 1:
            image = getattr(image, operation)(f / k, kernel="lanczos3")
    size = (image.height, image.width) if swap else (image.width, image.height)
    assert size == (rw, rh), f"libvips reduce gave {size}, not {(rw, rh)}"
    if header.orientation != 1:
        image = _orient(image.copy_memory(), header.orientation)
    return to_srgb8(image.crop(left, top, bw, bh)).numpy()


def _orient(image: pyvips.Image, orientation: int) -> pyvips.Image:
    """Stored → displayed orientation (EXIF 1..8), in memory."""
    if orientation in (5, 6, 7, 8):
        image = image.rot("d90" if orientation in (5, 6) else "d270")
        return image.flip("horizontal") if orientation in (5, 7) else image
    if orientation == 3:
        return image.rot("d180")
    return image.flip("horizontal" if orientation == 2 else "vertical") if orientation in (2, 4) else image


def _upscale(data: bytes, *, header: ImageHeader, placement: Placement) -> np.ndarray:
    """An image smaller than its resized size: bicubic interpolation, pixel centres aligned exactly."""
    image = pyvips.Image.new_from_buffer(data, "", access="sequential", fail_on="error")
    image = _orient(prepare_for_resampling(image).copy_memory(), header.orientation)
    (w, h), (rw, rh), (left, top) = placement.original, placement.resized, placement.crop
    fx, fy = w / rw, h / rh
    image = image.affine(
        [1 / fx, 0, 0, 1 / fy],
        idx=0.5 - 0.5 * fx,  # vips affine works on pixel indices: output centres at (i + 1/2)·f
        idy=0.5 - 0.5 * fy,
        oarea=[left, top, placement.target.width, placement.target.height],
        interpolate=pyvips.Interpolate.new("bicubic"),
        extend="copy",
    )
    return to_srgb8(image).numpy()


class BucketCounts(NamedTuple):
    """Images per bucket (aligned with `sizes`), how many were too small for theirs, each image's bucket."""

    sizes: tuple[Bucket, ...]
    counts: np.ndarray  # (len(sizes),) int64
    too_small: int
    index: np.ndarray  # (images,) int64 bucket index per image, −1: too small

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + self.too_small


def count_buckets(widths: np.ndarray, heights: np.ndarray, settings: BucketSettings) -> BucketCounts:
    """How many images of these displayed sizes land in each bucket, and how many are skipped as too small."""
    table = BucketTable(settings)
    index = table.assign(widths, heights)
    counts = np.bincount(index[index >= 0], minlength=len(table)).astype(np.int64)
    return BucketCounts(table.sizes, counts, int((index < 0).sum()), index)
