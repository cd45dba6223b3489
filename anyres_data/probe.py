"""Probe image bytes with libvips: header facts without decoding, then a bounded-memory decode check.

`read_header` sniffs the format from the bytes (never from a URL or a Content-Type) and reads the
stored size, EXIF orientation (so the displayed size), bands and bit depth from the header only:
a 65,000 x 65,000 JPEG costs as much as a thumbnail to probe. It also estimates the memory a full
decode holds (`decode_bytes`), which the filters limit. `decode_thumbnail` then decodes every pixel,
streamed and shrunk on load (JPEG DCT scaling), so truncated or corrupt data is caught while memory
stays small even for 18,000 x 12,000 photos. Both take bytes or a spilled file (payload.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyvips

from anyres_data.payload import Data, head, recognised, size_of, tail, vips_image, vips_thumbnail
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
# Other kinds of data, only to name what a non-image is (its bytes are never quoted: they may be private).
_OTHER_DATA = [
    (0, b"\x1f\x8b", "gzip data"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"\x7fELF", "an executable"),
    (257, b"ustar", "a tar archive"),
]
# Decoders that hold the whole image at once, and the memory they need as a multiple of the decoded size
# (stored width x height x bands x bytes per sample), measured with libvips 8.18 on 6000 x 6000 images
# for the build's decode check and the loader's patch cut, whichever needs more: progressive JPEG 1.0x
# (4:2:0 chroma) or 2.0x (4:4:4: one 16-bit coefficient per sample), interlaced PNG 1.6x, GIF 1.4x of
# RGBA, WebP 2.7x (the loader decodes it whole), AVIF 5x; JPEG XL and JPEG 2000 (no loader in that
# libvips) are counted at 2x. Baseline JPEG, non-interlaced PNG and TIFF decode in strips: 0.
_WHOLE_DECODE = {"png": 2.0, "gif": 1.5, "webp": 3.0, "heic": 6.0, "avif": 6.0, "jxl": 2.0, "jp2": 2.0}


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
    decode_bytes: int = 0  # memory a full decode holds at once (estimate); 0 where libvips decodes in strips

    @property
    def pixels(self) -> int:
        return self.stored_width * self.stored_height


def read_header(data: Data) -> ImageHeader:
    """Header facts of encoded image bytes (or a spilled file), without decoding pixels.

    Raises Rejected: empty, not_an_image (no format libvips knows), unsupported_format (vector,
    video, PDF, ...), corrupt (a known format whose header does not read).
    """
    if not size_of(data):
        raise Rejected("empty", "0 bytes")
    # Decide from libvips' format sniffing, not from error text: libvips' error buffer is shared by
    # all threads of the process, so a message may be another thread's.
    if not recognised(data):
        raise not_an_image(head(data, 512), size_of(data))
    try:
        image = vips_image(data)
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
    bit_depth = int(_get(image, "bits-per-sample", BIT_DEPTH.get(str(image.format), 8)))
    interlaced = bool(_get(image, "interlaced", 0))
    return ImageHeader(
        format=fmt,
        stored_width=image.width,
        stored_height=image.height,
        orientation=orientation,
        width=image.height if swap else image.width,
        height=image.width if swap else image.height,
        bands=image.bands,
        interpretation=str(image.interpretation),
        bit_depth=bit_depth,
        n_pages=int(_get(image, "n-pages", 1)),
        interlaced=interlaced,
        decode_bytes=_decode_bytes(image, fmt, bit_depth=bit_depth, interlaced=interlaced),
    )


def _decode_bytes(image: pyvips.Image, fmt: str, *, bit_depth: int, interlaced: bool) -> int:
    """Memory a full decode holds at once: the decoded size times the decoder's factor (see _WHOLE_DECODE)."""
    if fmt == "jpg":
        factor = (1.0 if _get(image, "jpeg-chroma-subsample", "") == "4:2:0" else 2.0) if interlaced else 0.0
    elif fmt == "png":
        factor = _WHOLE_DECODE["png"] if interlaced else 0.0
    else:
        factor = _WHOLE_DECODE.get(fmt, 0.0)
    bands = 4 if fmt == "gif" else image.bands  # GIFs are decoded to RGBA whatever they hold
    return int(image.width * image.height * bands * math.ceil(bit_depth / 8) * factor)


def not_an_image(start: bytes, size: int) -> Rejected:
    """The rejection for data no image loader recognises, from its first bytes (which it names, never quotes)."""
    for offset, magic, kind in _NOT_PHOTOS:
        if start[offset : offset + len(magic)] == magic:
            return Rejected("unsupported_format", kind)
    return Rejected("not_an_image", f"no image format recognised in {size} bytes of {_kind_of(start)}")


def _kind_of(start: bytes) -> str:
    """What non-image data looks like: 'an HTML page', 'text', 'gzip data', 'binary data', ..."""
    for offset, magic, kind in _OTHER_DATA:
        if start[offset : offset + len(magic)] == magic:
            return kind
    lowered = start.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if lowered.startswith(b"<?xml"):
        return "XML"
    if lowered.startswith((b"{", b"[")):
        return "JSON or text"
    try:
        text = start.decode()
    except UnicodeDecodeError:
        return "binary data"
    return "text" if all(c.isprintable() or c.isspace() for c in text) else "binary data"


def decode_thumbnail(data: Data, header: ImageHeader, *, size: int = 32, fail_on: str = "error") -> np.ndarray:
    """Decode the whole image and return its luminance squashed to `size` x `size`, as displayed.

    Every pixel is decoded (streamed, shrunk on load where the format allows), so this is the check
    that the image really decodes; the result feeds the perceptual hash. `fail_on` is libvips'
    level: "truncated", "error" (default) or "warning".
    Returns float32 (size, size) in [0, 255]. Raises Rejected: truncated, corrupt.
    """
    try:
        thumb = vips_thumbnail(data, size, height=size, size="force", option_string=f"fail_on={fail_on}")
        if thumb.hasalpha():
            thumb = thumb.flatten(background=255)
        grey = thumb.colourspace("b-w")[0].cast("float")
        return grey.numpy()  # (size, size)
    except pyvips.Error as err:
        reason = "truncated" if _looks_truncated(header.format, data, str(err)) else "corrupt"
        raise Rejected(reason, _first_line(err)) from None


def check_complete(data: Data, header: ImageHeader) -> None:
    """Reject data whose format has an end marker (JPEG, PNG, GIF, WebP's RIFF size) that is missing.

    Costs a few bytes of reading, no decoding: how a reader that decodes only part of an image (the
    loader cuts one patch) still refuses a file whose end is cut or zeroed, as the build's full
    decode check does. Raises Rejected("truncated").
    """
    if _missing_end(header.format, data):
        raise Rejected("truncated", f"the {header.format} data ends before the image does (no end marker)")


def _missing_end(fmt: str, data: Data) -> bool | None:
    """Whether the format's end marker is missing; None for formats without one."""
    end = tail(data, 1 << 16)
    if fmt == "jpg":
        return not end.rstrip(b"\x00").endswith(b"\xff\xd9")
    if fmt == "png":
        return b"IEND" not in end[-16:]
    if fmt == "gif":
        return not end.rstrip(b"\x00").endswith(b"\x3b")
    if fmt == "webp":
        return int.from_bytes(head(data, 8)[4:8], "little") + 8 > size_of(data)
    return None


def _looks_truncated(fmt: str, data: Data, message: str) -> bool:
    """Whether a failed decode is due to missing data: the format's end marker is absent, or libvips says so.

    The end marker decides where the format has one: libvips' message may be another thread's.
    """
    missing = _missing_end(fmt, data)
    if missing is not None:
        return missing
    lowered = message.lower()
    return any(words in lowered for words in ("premature end", "truncated", "unexpected end", "out of data"))


def _get(image: pyvips.Image, name: str, default: object) -> object:
    return image.get(name) if image.get_typeof(name) else default


def _first_line(err: pyvips.Error) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    # libvips puts the operation first ("unable to write to memory"), the cause after it.
    return "; ".join(lines[1:3] or lines[:1])
