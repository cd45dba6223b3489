"""The bad-input corpus: files (and server behaviours) a build must survive, each with the outcome it must reach.

Every `Case` ends either kept, with the given displayed size and sniffed format, or rejected with
the given reason. Kept cases are different photos (seeds), so that only the intended near
duplicates are near. Header-only bombs are crafted by hand: a real JPEG whose SOF claims
65,000 x 65,000 pixels, and a PNG whose IHDR (with a valid CRC) claims 100,000 x 100,000.

The settings the expectations assume are `CORPUS_FILTERS` / `CORPUS_FETCH`.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from anyres_data.build.fetch import FetchSettings
from anyres_data.filters import FilterSettings
from tests.support.photos import encode, jpeg_with_orientation, png16, structured_image

CORPUS_FILTERS = FilterSettings(min_size=128, max_aspect=4.0, near_duplicate_distance=4)
CORPUS_FETCH = FetchSettings(
    timeout=0.5, first_byte_timeout=0.5, deadline=10.0, retries=1, backoff=0.05, max_bytes=3_000_000
)


@dataclass(frozen=True)
class Case:
    name: str  # the URL path's stem / the file's stem
    data: bytes
    expect: str  # "kept" or a rejection reason
    size: tuple[int, int] | None = None  # displayed (width, height) when kept
    fmt: str | None = None  # sniffed extension when kept
    ext: str = "jpg"  # extension in the URL or file name (may lie)
    content_type: str = "image/jpeg"  # what the server says (may lie)
    route: dict[str, Any] = field(default_factory=dict)  # ImageServer Route options (network cases)

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.ext}"


def header_bomb_jpeg(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 header claims `width` x `height` (at most 65,535 each)."""
    data = bytearray(encode(np.full((16, 16, 3), 90, np.uint8), "JPEG"))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def header_bomb_png(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2, interlace: int = 0) -> bytes:
    """A PNG whose IHDR (valid CRC) claims `width` x `height` pixels (RGB 8-bit by default), with a tiny IDAT.

    colour_type 6 is RGBA; interlace 1 is Adam7 (decoded whole).
    """

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _pil(pixels: np.ndarray, fmt: str, *, mode: str | None = None, **options: Any) -> bytes:
    image = Image.fromarray(pixels)
    if mode:
        image = image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def _palette_alpha_png(pixels: np.ndarray) -> bytes:
    image = Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    buf = io.BytesIO()
    image.save(buf, "PNG", transparency=0)
    return buf.getvalue()


def _animated(pixels: list[np.ndarray], fmt: str) -> bytes:
    frames = [Image.fromarray(p) for p in pixels]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def _corrupt_png(pixels: np.ndarray) -> bytes:
    """A PNG whose compressed pixel data is garbled in the middle (its IEND is intact)."""
    data = bytearray(encode(pixels, "PNG"))
    middle = len(data) // 2
    data[middle : middle + 256] = bytes((b * 7 + 13) % 256 for b in data[middle : middle + 256])
    return bytes(data)


SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="800" height="600">'
    b'<rect width="800" height="600" fill="red"/></svg>\n'
)
HTML = b"<!doctype html>\n<html><head><title>Gone</title></head><body>This photo is no longer available</body></html>\n"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def file_cases() -> list[Case]:
    """Cases that are files (served over HTTP or read from a folder alike)."""
    photo = structured_image(640, 480, seed=1)
    smaller = np.asarray(Image.fromarray(photo).resize((560, 420), Image.Resampling.LANCZOS))
    frames = [structured_image(200, 160, seed=s) for s in (40, 41, 42)]
    grey16 = (structured_image(400, 300, seed=6).astype(np.uint16) * 257)[..., :3]
    return [
        Case("jpeg", encode(photo, "JPEG", quality=95), "kept", (640, 480), "jpg"),
        Case("twin-of-jpeg", encode(photo, "JPEG", quality=95), "duplicate"),
        Case("jpeg-q60", encode(photo, "JPEG", quality=60), "near_duplicate"),
        Case("jpeg-resized", encode(smaller, "JPEG", quality=90), "near_duplicate"),
        Case("truncated", encode(structured_image(800, 600, seed=2), "JPEG", quality=90)[:40_000], "truncated"),
        Case("zero-bytes", b"", "empty"),
        Case("html-as-jpeg", HTML, "not_an_image"),
        Case("jpeg-bomb", header_bomb_jpeg(65_000, 65_000), "too_many_pixels"),
        Case("png-bomb", header_bomb_png(100_000, 100_000), "too_many_pixels", ext="png", content_type="image/png"),
        Case("cmyk", _pil(structured_image(500, 400, seed=3), "JPEG", mode="CMYK"), "kept", (500, 400), "jpg"),
        Case("png16", png16(grey16), "kept", (400, 300), "png", ext="png", content_type="image/png"),
        Case("grey", _pil(structured_image(300, 360, seed=7), "JPEG", mode="L"), "kept", (300, 360), "jpg"),
        Case(
            "palette-alpha",
            _palette_alpha_png(structured_image(320, 240, seed=8)),
            "kept",
            (320, 240),
            "png",
            ext="png",
            content_type="image/png",
        ),
        Case("exif-rotated", jpeg_with_orientation(structured_image(640, 480, seed=9), 6), "kept", (480, 640), "jpg"),
        Case("png-named-jpg", encode(structured_image(300, 200, seed=10), "PNG"), "kept", (300, 200), "png"),
        Case("webp", encode(structured_image(360, 240, seed=11), "WEBP", quality=90), "kept", (360, 240), "webp"),
        Case("tiff", encode(structured_image(256, 256, seed=12), "TIFF"), "kept", (256, 256), "tif", ext="tif"),
        Case("svg", SVG, "unsupported_format", ext="svg", content_type="image/svg+xml"),
        Case("pdf", PDF, "unsupported_format", ext="pdf", content_type="application/pdf"),
        Case("animated-gif", _animated(frames, "GIF"), "animated", ext="gif", content_type="image/gif"),
        Case("animated-webp", _animated(frames, "WEBP"), "animated", ext="webp", content_type="image/webp"),
        Case("below-min-size", encode(structured_image(120, 90, seed=13), "JPEG"), "below_min_size"),
        Case("extreme-aspect", encode(structured_image(1000, 200, seed=14), "JPEG"), "extreme_aspect"),
        Case("corrupt-png", _corrupt_png(structured_image(300, 300, seed=15)), "corrupt", ext="png"),
    ]


def network_cases() -> list[Case]:
    """Cases that only a server can produce (ImageServer Route options)."""
    photo = encode(structured_image(400, 300, seed=20), "JPEG", quality=90)
    # starts like a JPEG: a download whose first 64 KiB are no image stops there (not_an_image), before the cap
    big = b"\xff\xd8\xff\xe0" + np.random.default_rng(0).integers(0, 256, 4_000_000, dtype=np.uint8).tobytes()
    return [
        Case("http-404", b"gone", "http_404", route={"status": 404, "content_type": "text/html"}),
        Case("slow", encode(structured_image(300, 300, seed=21), "JPEG"), "timeout", route={"delay": 2.0}),
        Case("too-large", big, "too_large"),
        Case("too-large-streamed", big, "too_large", route={"content_length": False}),
        Case(
            "dropped",
            encode(structured_image(600, 600, seed=22), "JPEG"),
            "connection_error",
            route={"drop_after": 5000},
        ),
        Case("busy-then-ok", photo, "kept", (400, 300), "jpg", route={"fail_first": 1}),
    ]
