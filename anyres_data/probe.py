"""Probe image bytes with libvips: header facts without decoding, then a bounded-memory decode check.

`read_header` sniffs the format from the bytes (never from a URL or a Content-Type) and reads the
stored size, EXIF orientation (so the displayed size), bands and bit depth from the header only:
a 65,000 x 65,000 JPEG costs as much as a thumbnail to probe. `decode_thumbnail` then decodes
every pixel, streamed and shrunk on load (JPEG DCT scaling), so truncated or corrupt data is caught
while memory stays small even for 18,000 x 12,000 photos.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyvips
from pyvips import ffi, vips_lib

from anyres_data.rejects import Rejected

# libvips loader -> file extension of the stored original. Loaders not listed (svg, pdf, vips, csv,
# matrix, ...) read formats that are not raster photos: unsupported_format.
FORMATS = {
    "jpegload": "jpg",
    "uhdrload": "jpg",  # UltraHDR: a JPEG with a gain map
    "pngload": "png",
    "webpload": "webp",
    "tiffload": "tif",
    "gifload": "gif",
    "heifload": "heic",  # "avif" when the HEIF container holds AV1
    "jp2kload": "jp2",
    "jxlload": "jxl",
}
BIT_DEPTH = {"uchar": 8, "char": 8, "ushort": 16, "short": 16, "uint": 32, "int": 32, "float": 32, "double": 64}
# Magic numbers of media that libvips does not load but that are worth naming in a rejection.
_NOT_PHOTOS = [
    (0, b"%PDF-", "PDF document"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM video"),
    (4, b"ftyp", "MP4/QuickTime video"),
    (0, b"FLV", "Flash video"),
    (0, b"OggS", "Ogg media"),
    (8, b"AVI ", "AVI video"),
    (0, b"\x00\x00\x01\xba", "MPEG video"),
]


@dataclass(frozen=True)
class ImageHeader:
    """What the header says. Sizes in pixels; `width`/`height` as displayed (EXIF orientation applied)."""

    format: str  # extension of the sniffed format: jpg png webp tif gif heic avif jp2 jxl
    stored_width: int
    stored_height: int
    orientation: int  # EXIF orientation 1..8; 5..8 swap width and height for display
    width: int
    height: int
    bands: int
    interpretation: str  # libvips' name: srgb, cmyk, b-w, grey16, rgb16, ...
    bit_depth: int  # bits per sample
    n_pages: int  # frames of an animation, pages of a TIFF, 1 for a still image
    interlaced: bool  # progressive JPEG / interlaced PNG: decoding needs memory in proportion to pixels

    @property
    def pixels(self) -> int:
        return self.stored_width * self.stored_height


def read_header(data: bytes) -> ImageHeader:
    """Header facts of encoded image bytes, without decoding pixels.

    Raises Rejected: empty, not_an_image (no format libvips knows), unsupported_format (vector,
    video, PDF, ...), corrupt (a known format whose header does not read).
    """
    if not data:
        raise Rejected("empty", "0 bytes")
    # Decide from libvips' format sniffing, not from error text: libvips' error buffer is shared by
    # all threads of the process, so a message may be another thread's.
    if vips_lib.vips_foreign_find_load_buffer(data, len(data)) == ffi.NULL:
        for offset, magic, kind in _NOT_PHOTOS:
            if data[offset : offset + len(magic)] == magic:
                raise Rejected("unsupported_format", kind)
        raise Rejected("not_an_image", f"no image format recognised; starts with {data[:24]!r}")
    try:
        image = pyvips.Image.new_from_buffer(data, "")
    except pyvips.Error as err:
        raise Rejected("corrupt", _first_line(err)) from None
    loader = image.get("vips-loader").removesuffix("_buffer").removesuffix("_source")
    if loader not in FORMATS:
        raise Rejected("unsupported_format", f"{loader.removesuffix('load')} is not a raster photo format")
    fmt = FORMATS[loader]
    if loader == "heifload" and _get(image, "heif-compression", "hevc") == "av1":
        fmt = "avif"
    orientation = int(_get(image, "orientation", 1))
    orientation = orientation if 1 <= orientation <= 8 else 1
    swap = orientation >= 5
    return ImageHeader(
        format=fmt,
        stored_width=image.width,
        stored_height=image.height,
        orientation=orientation,
        width=image.height if swap else image.width,
        height=image.width if swap else image.height,
        bands=image.bands,
        interpretation=str(image.interpretation),
        bit_depth=int(_get(image, "bits-per-sample", BIT_DEPTH.get(str(image.format), 8))),
        n_pages=int(_get(image, "n-pages", 1)),
        interlaced=bool(_get(image, "interlaced", 0)),
    )


def decode_thumbnail(data: bytes, header: ImageHeader, *, size: int = 32, fail_on: str = "error") -> np.ndarray:
    """Decode the whole image and return its luminance squashed to `size` x `size`, as displayed.

    Every pixel is decoded (streamed, shrunk on load where the format allows), so this is the check
    that the image really decodes; the result feeds the perceptual hash. `fail_on` is libvips'
    level: "truncated", "error" (default) or "warning".
    Returns float32 (size, size) in [0, 255]. Raises Rejected: truncated, corrupt.
    """
    try:
        thumb = pyvips.Image.thumbnail_buffer(data, size, height=size, size="force", option_string=f"fail_on={fail_on}")
        if thumb.hasalpha():
            thumb = thumb.flatten(background=255)
        grey = thumb.colourspace("b-w")[0].cast("float")
        return grey.numpy()  # (size, size)
    except pyvips.Error as err:
        reason = "truncated" if _looks_truncated(header.format, data, str(err)) else "corrupt"
        raise Rejected(reason, _first_line(err)) from None


def _looks_truncated(fmt: str, data: bytes, message: str) -> bool:
    """Whether a failed decode is due to missing data: the format's end marker is absent, or libvips says so.

    The end marker decides where the format has one: libvips' message may be another thread's.
    """
    tail = data[-16:]
    if fmt == "jpg":
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if fmt == "png":
        return b"IEND" not in tail
    if fmt == "gif":
        return not data.rstrip(b"\x00").endswith(b"\x3b")
    if fmt == "webp":
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    lowered = message.lower()
    return any(words in lowered for words in ("premature end", "truncated", "unexpected end", "out of data"))


def _get(image: pyvips.Image, name: str, default: object) -> object:
    return image.get(name) if image.get_typeof(name) else default


def _first_line(err: pyvips.Error) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    # libvips puts the operation first ("unable to write to memory"), the cause after it.
    return "; ".join(lines[1:3] or lines[:1])
