"""Synthetic photos with real structure (smooth noise at several scales, sharp edges, fine texture).

Flat or pure-noise images make resampling tests meaningless: a misplaced patch of a flat image
looks right, and pure noise punishes any kernel difference. These have content at every scale.
"""

from __future__ import annotations

import io

import numpy as np
import pyvips
from PIL import Image, ImageDraw


def structured_image(width: int, height: int, *, seed: int) -> np.ndarray:
    """An RGB uint8 (height, width, 3) image with smooth colour fields, edges and texture.

    Like photos, fine detail is mostly in luma and colour varies slowly (what JPEG's 4:2:0
    chroma subsampling assumes); edges between differently coloured shapes are sharp.
    """
    rng = np.random.default_rng(seed)
    side = max(width, height)
    out = np.full((height, width, 3), 128, np.float32)
    # (cells across, amplitude of colour, amplitude of luma)
    for cells, colour, luma in ((3, 70.0, 40.0), (12, 25.0, 40.0), (side // 24 + 2, 6.0, 30.0)):
        low = rng.normal(size=(cells, cells, 4)).astype(np.float32)
        low = np.concatenate([colour * low[..., :3] + luma * low[..., 3:]], axis=-1)  # (cells, cells, 3)
        field = pyvips.Image.new_from_array(low).resize(side / cells, kernel="cubic")
        out += field.crop(0, 0, width, height).numpy()  # (H, W, 3)
    base = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(base)
    for _ in range(12):
        x0, x1 = sorted(rng.integers(0, width, 2))
        y0, y1 = sorted(rng.integers(0, height, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x1, y1], outline=colour, width=int(rng.integers(1, 6)))
        else:
            draw.ellipse([x0, y0, x1, y1], fill=colour if rng.random() < 0.3 else None, outline=colour, width=3)
    arr = np.asarray(base).astype(np.float32)
    arr += rng.normal(scale=6.0, size=(height, width, 1)).astype(np.float32)  # fine grain, in luma
    return np.clip(arr, 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    """Encode with Pillow: fmt is a Pillow format name ("JPEG", "PNG", "WEBP", ...)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **options)
    return buf.getvalue()


def jpeg_with_orientation(pixels: np.ndarray, orientation: int, **options) -> bytes:
    """A JPEG that stores `pixels` as given and tags it with an EXIF orientation."""
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif.tobytes(), **options)
    return buf.getvalue()


def png16(pixels16: np.ndarray) -> bytes:
    """A 16-bit PNG (RGB or grey) from a uint16 array, written by libvips (Pillow cannot write 16-bit RGB)."""
    image = pyvips.Image.new_from_array(pixels16)
    image = image.copy(interpretation="rgb16" if image.bands >= 3 else "grey16")
    return image.pngsave_buffer()
