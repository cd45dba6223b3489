"""`anyres-data sample`: a contact sheet of training patches, each beside its source with the spec drawn on it.

Look at your data: for each sample, a thumbnail of the source image (as displayed, EXIF orientation
applied) shows the unit square (yellow) and the patch's window (red; the whole square, in cyan, for
a global sample), and the patch itself sits beside it, exactly as the loader would cut it.
"""

from __future__ import annotations

import random

import numpy as np
import pyvips
from PIL import Image, ImageDraw, ImageFont

from anyres_data.dataset.shards import image_bytes, resolve_shards
from anyres_data.probe import ImageHeader, read_header
from anyres_data.rejects import Rejected
from anyres_data.sampling.draw import SamplerSettings, draw_spec
from anyres_data.sampling.loader import SkipCounts, read_samples
from anyres_data.sampling.patches import Patch, cut_patch

PAD = 8
CAPTION = 34  # pixels of text under each cell
SQUARE_COLOUR, WINDOW_COLOUR, GLOBAL_COLOUR = (255, 210, 0), (255, 40, 40), (0, 220, 255)


def _thumbnail(data: bytes, tile: int) -> np.ndarray:
    """The whole image as displayed, fitted into tile×tile: (h, w, 3) uint8."""
    thumb = pyvips.Image.thumbnail_buffer(data, tile, height=tile)  # applies EXIF orientation
    if thumb.hasalpha():
        thumb = thumb.flatten(background=[255] * (thumb.bands - 1))
    return thumb.colourspace("srgb").cast("uchar")[:3].numpy()


def _cell(data: bytes, header: ImageHeader, patch: Patch, *, is_global: bool, key: str, tile: int, font) -> Image.Image:
    """Thumbnail with the square and window drawn on it, the patch beside it, a caption below."""
    cell = Image.new("RGB", (2 * tile + 3 * PAD, tile + CAPTION + 2 * PAD), (32, 32, 32))
    thumb = Image.fromarray(_thumbnail(data, tile))
    t = thumb.width / header.width  # thumbnail pixels per displayed pixel
    draw = ImageDraw.Draw(thumb)
    ox, oy, m = patch.square
    draw.rectangle([ox * t, oy * t, (ox + m) * t - 1, (oy + m) * t - 1], outline=SQUARE_COLOUR, width=1)
    left, top, right, bottom = patch.spec.box(m)
    colour = GLOBAL_COLOUR if is_global else WINDOW_COLOUR
    window = [(ox + left) * t, (oy + top) * t, (ox + right) * t, (oy + bottom) * t]
    draw.rectangle(window, outline=colour, width=2)
    cx, cy = (window[0] + window[2]) / 2, (window[1] + window[3]) / 2
    draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=colour)
    cell.paste(thumb, (PAD + (tile - thumb.width) // 2, PAD + (tile - thumb.height) // 2))
    shown = Image.fromarray(patch.pixels)
    if patch.spec.p != tile:
        shown = shown.resize((tile, tile), Image.Resampling.LANCZOS)  # for display only
    cell.paste(shown, (2 * PAD + tile, PAD))
    vx, vy = patch.spec.centre
    what = "global (s = p)" if is_global else f"s={patch.spec.s:.0f} ({patch.spec.s / m:.0%} of m)"
    lines = [f"{key}  {header.width}x{header.height} {header.format}", f"{what}  v=({vx:.3f}, {vy:.3f})"]
    ImageDraw.Draw(cell).multiline_text((PAD, tile + PAD + 4), "\n".join(lines), fill=(230, 230, 230), font=font)
    return cell


def contact_sheet(
    dataset: str,
    *,
    settings: SamplerSettings,
    n: int = 16,
    seed: int = 0,
    columns: int = 4,
    tile: int | None = None,
) -> tuple[Image.Image, dict[str, int]]:
    """Cut n samples from `dataset` (any form `resolve_shards` takes) and lay them out on one image.

    Shards are visited in a seeded random order and their first samples used. `tile` is the display
    size of thumbnails and patches (default min(p, 320)). Returns the sheet and the skip counts.
    Raises ValueError when no sample could be cut.
    """
    tile = tile or min(settings.p, 320)
    urls = resolve_shards(dataset)
    random.Random(seed).shuffle(urls)
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=12)
    skips = SkipCounts()
    cells = []
    for sample in read_samples(({"url": url} for url in urls), skips=skips):
        key, data = sample["__key__"], image_bytes(sample)
        if data is None:
            skips.add("no_image", key, LookupError("no image member"))
            continue
        try:
            header = read_header(data)
            drawn = draw_spec(width=header.width, height=header.height, settings=settings, rng=rng)
            patch = cut_patch(data, drawn, header=header)
        except (Rejected, pyvips.Error, ValueError) as error:
            skips.add("unreadable", key, error)
            continue
        cells.append(_cell(data, header, patch, is_global=drawn.is_global, key=key, tile=tile, font=font))
        if len(cells) == n:
            break
    if not cells:
        raise ValueError(f"no sample of {dataset!r} could be cut (skipped: {skips.as_dict()})")
    columns = min(columns, len(cells))
    rows = -(-len(cells) // columns)
    width, height = cells[0].size
    sheet = Image.new("RGB", (columns * width, rows * height), (16, 16, 16))
    for i, cell in enumerate(cells):
        sheet.paste(cell, ((i % columns) * width, (i // columns) * height))
    return sheet, skips.as_dict()
