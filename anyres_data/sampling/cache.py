"""The training cache: per image, a tiled pyramidal TIFF of its displayed 8-bit sRGB pixels.

A patch cut from the original JPEG pays for entropy-decoding every row above it (and, for a
progressive file, the whole file), so its cost grows with the image. From a tiled pyramid it pays
for the few tiles under it, at the level that suits its scale, whatever the image's size:

```
CACHE/                     OUT/cache by default, or any fsspec URL
  KEY.tif                  one per image, found from the sample's key
  _done/SHARD.json         per shard: what its task did; written last, it marks the shard complete
  cache.json               settings, counts, bytes, versions; written when the build finishes
```

Each `KEY.tif` holds level 0, the image as displayed (EXIF orientation applied, CMYK and ICC
profiles converted to sRGB, 16-bit reduced to 8, alpha flattened on white, grey expanded to RGB),
and levels 1, 2, … each halved from the one above by libvips (a 2×2 mean, floor sizes), so that
pixel i of level l covers pixels [2^l·i, 2^l·(i+1)) of level 0, in tiles of `tile`² pixels.

A patch of target size s from a square of side m (f = m / s level-0 pixels per output pixel) is
read from the coarsest level l with f / 2^l ≥ LEVEL_HEADROOM: only the region under the patch plus
the lanczos3 support, reduced with lanczos3 as `anyres_data.sampling.patches` does for a JPEG shrunk on load.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

import fsspec
import numpy as np
import pyvips
from fsspec.implementations.local import LocalFileSystem

from anyres_data import storage
from anyres_data.payload import Data, vips_image
from anyres_data.sampling.draw import DrawnSpec
from anyres_data.sampling.patches import Patch, prepare_for_resampling, render_patch, to_srgb8, upsample_global
from anyres_data.settings import from_dict, setting

CACHE_FORMAT = "anyres-cache/1"
ENTRY_SUFFIX = ".tif"
# A level is used while it leaves at least this many of its pixels per output pixel for lanczos3
# (measured: see docs/sampler.md, "The training cache").
LEVEL_HEADROOM = 2.5
# Full-range YCbCr as JFIF defines it (the offsets 0, 128, 128 are added after the matrix).
_TO_YCBCR = [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
_FROM_YCBCR = np.linalg.inv(np.array(_TO_YCBCR))  # (3, 3)


@dataclass(frozen=True)
class CacheFormat:
    """How each cache entry is encoded (what `anyres-data cache` writes; recorded in cache.json)."""

    compression: Literal["jpeg", "webp", "deflate", "zstd", "lzw", "none"] = setting(
        "jpeg",
        "tile compression: jpeg (lossy; libvips stores YCbCr 4:2:0 below Q 90, RGB 4:4:4 from Q 90), webp "
        "(lossy, 4:2:0), or lossless deflate, zstd, lzw, none",
    )
    quality: int = setting(93, "quality of jpeg and webp tiles, 1-100")
    colour: Literal["auto", "ycbcr", "rgb"] = setting(
        "auto",
        "what the 3 bands hold: ycbcr (full-range JFIF YCbCr, converted by anyres itself: 4:4:4 JPEG tiles "
        "at a third of RGB's size; needs jpeg at quality ≥ 90, where libvips writes tiles without a colour "
        "transform, or a lossless compression) or rgb (sRGB, readable by any TIFF reader); auto: ycbcr where "
        "it can be, else rgb",
    )
    tile: int = setting(128, "tile side in pixels (a multiple of 16)")
    min_side: int = setting(0, "cache only images whose shorter displayed side is at least this many pixels")

    def __post_init__(self) -> None:
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be 1-100, got {self.quality}")
        if self.tile < 16 or self.tile % 16:
            raise ValueError(f"tile must be a multiple of 16 pixels, got {self.tile}")
        if self.min_side < 0:
            raise ValueError(f"min_side must be 0 or more, got {self.min_side}")
        if self.colour == "ycbcr" and not self._raw_bands:
            raise ValueError(
                "colour=ycbcr needs compression jpeg at quality ≥ 90 or a lossless one (webp and "
                "jpeg below 90 convert colours themselves): use colour=rgb"
            )

    @property
    def _raw_bands(self) -> bool:
        """Whether the compression stores the 3 bands as given (no colour transform of its own)."""
        return self.compression in ("deflate", "zstd", "lzw", "none") or (
            self.compression == "jpeg" and self.quality >= 90
        )

    @property
    def ycbcr(self) -> bool:
        """Whether entries hold YCbCr (the resolved `colour`)."""
        return self.colour == "ycbcr" or (self.colour == "auto" and self._raw_bands)

    def wants(self, width: int, height: int) -> bool:
        """Whether an image of this displayed size belongs in the cache."""
        return min(width, height) >= self.min_side


def entry_url(cache: str, key: str) -> str:
    """Where the entry of sample `key` lies in the cache at `cache` (a key has no dots or slashes)."""
    return storage.join(cache, key + ENTRY_SUFFIX)


def displayed_srgb8(data: Data) -> pyvips.Image:
    """The image as the sampler sees it: displayed orientation, 8-bit sRGB RGB, alpha on white.

    Raises pyvips.Error when the data does not decode.
    """
    image = vips_image(data, access="random", fail_on="error").autorot()
    image = to_srgb8(prepare_for_resampling(image))
    if image.bands == 1:
        image = image.colourspace("srgb")
    return image


def encode_entry(data: Data, fmt: CacheFormat) -> bytes:
    """The cache entry of encoded image bytes: a tiled pyramidal TIFF (no metadata, no orientation tag)."""
    options = {"Q": fmt.quality} if fmt.compression in ("jpeg", "webp") else {}
    if fmt.compression == "deflate":
        options["predictor"] = "horizontal"
    image = displayed_srgb8(data)
    if fmt.ycbcr:
        image = image.recomb(_TO_YCBCR).linear(1, [0.5, 128.5, 128.5]).cast("uchar")  # + 0.5: cast truncates
    return image.tiffsave_buffer(
        tile=True,
        pyramid=True,
        tile_width=fmt.tile,
        tile_height=fmt.tile,
        compression=fmt.compression,
        keep="none",
        **options,
    )


def level_for(f: float, levels: int, headroom: float = LEVEL_HEADROOM) -> int:
    """Pyramid level for f level-0 pixels per output pixel: the coarsest with f / 2^l ≥ headroom."""
    if f < headroom:
        return 0
    return max(0, min(levels - 1, math.floor(math.log2(f / headroom) + 1e-12)))


class CacheMismatch(ValueError):
    """A cache entry that does not hold the image it should (another size): read the original instead."""


class _Reader:
    """A pyvips source over a seekable fsspec file: libtiff reads headers and tiles by range, not whole."""

    def __init__(self, url: str) -> None:
        self.file = fsspec.open(url, "rb").open()
        self.source = pyvips.SourceCustom()
        self.source.on_read(self._read)
        self.source.on_seek(self._seek)

    def _read(self, size: int) -> bytes:
        return self.file.read(size)

    def _seek(self, offset: int, whence: int) -> int:
        return self.file.seek(offset, whence)

    def close(self) -> None:
        self.file.close()


def _open_page(url: str, page: int, reader: _Reader | None) -> pyvips.Image:
    if reader is None:
        return pyvips.Image.new_from_file(url, page=page, access="random", fail_on="error")
    return pyvips.Image.new_from_source(reader.source, "", page=page, access="random", fail_on="error")


def ycbcr_to_srgb8(image: pyvips.Image) -> pyvips.Image:
    """Full-range YCbCr → 8-bit sRGB, rounded and clipped, as a JPEG decoder hands Pillow its pixels.

    libvips evaluates it lazily: on a level, only the region a patch reads is converted, and the
    Lanczos passes then run on 8 bits, as `cut_patch` runs them on a decoded original (a float
    pass costs as much again).
    """
    rgb = image.linear(1, [0, -128, -128]).recomb(_FROM_YCBCR.tolist()).linear(1, 0.5)
    return rgb.cast("uchar").copy(interpretation="srgb")  # cast truncates and clips to 0..255


def cut_cached(
    url: str, drawn: DrawnSpec, *, width: int, height: int, ycbcr: bool, headroom: float = LEVEL_HEADROOM
) -> Patch:
    """Render `drawn` from the cache entry at `url` of a width×height (displayed) image.

    The same patch, at the same real spec convention, as `cut_patch` on the original: the square is
    in displayed pixels, the returned spec says where the patch really lies. `ycbcr`: the entry
    holds YCbCr (`CacheFormat.ycbcr`), turned into 8-bit RGB before resampling. Local entries are
    opened by path; any other fsspec URL is read by range through a pyvips custom source. Raises
    FileNotFoundError for a missing entry, CacheMismatch for an entry of another size, pyvips.Error
    when it does not decode.
    """
    fs, path = fsspec.core.url_to_fs(url)
    local = isinstance(fs, LocalFileSystem)
    if local and not os.path.exists(path):
        raise FileNotFoundError(f"no cache entry {path}")
    reader = None if local else _Reader(url)
    try:
        top = _open_page(path if local else url, 0, reader)
        if (top.width, top.height) != (width, height):
            raise CacheMismatch(f"{url} holds a {top.width}×{top.height} image, the original is {width}×{height}")
        square, spec = drawn.square, drawn.spec
        f = square.m / spec.s
        if f < 1:
            return upsample_global(ycbcr_to_srgb8(top) if ycbcr else top, square=square, p=spec.p)
        levels = top.get("n-pages") if top.get_typeof("n-pages") else 1
        level = level_for(f, levels, headroom)
        image = top if level == 0 else _open_page(path if local else url, level, reader)
        k = 2**level
        if (image.width, image.height) != (width // k, height // k):
            raise CacheMismatch(f"{url}: level {level} is {image.width}×{image.height}, not a halving of level 0")
        return render_patch(ycbcr_to_srgb8(image) if ycbcr else image, drawn, k=k)
    finally:
        if reader is not None:
            reader.close()


@dataclass(frozen=True)
class CacheIndex:
    """A written cache as a reader needs it: where it is and how its entries are encoded."""

    url: str
    format: CacheFormat
    ycbcr: bool

    def entry(self, key: str) -> str:
        return entry_url(self.url, key)


def open_cache(url: str) -> CacheIndex:
    """The cache at `url`, from its cache.json. Raises ValueError when there is no finished cache there."""
    url = storage.full_url(url).rstrip("/")
    record_url = storage.join(url, "cache.json")
    if not storage.exists(record_url):
        raise ValueError(f"{url} holds no finished cache (no cache.json): run `anyres-data cache` (again)")
    record = storage.read_json(record_url)
    if record.get("format") != CACHE_FORMAT:
        raise ValueError(f"{record_url}: format {record.get('format')!r}, expected {CACHE_FORMAT!r}")
    return CacheIndex(url, from_dict(CacheFormat, record["settings"]), bool(record["ycbcr"]))


def find_cache(dataset: str) -> CacheIndex | None:
    """The cache recorded in the dataset.json of the dataset folder `dataset` (or OUT/shards), if any."""
    root = dataset.rstrip("/")
    for candidate in (root, root.rsplit("/", 1)[0] if root.endswith("/shards") else None):
        if candidate and storage.exists(storage.join(candidate, "dataset.json")):
            recorded = storage.read_json(storage.join(candidate, "dataset.json")).get("cache")
            if not recorded:
                return None
            url = recorded["url"]
            return open_cache(
                storage.join(storage.full_url(candidate), url) if "://" not in url and not url.startswith("/") else url
            )
    return None
