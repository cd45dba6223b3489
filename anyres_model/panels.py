"""Pictures people can read: small renders enlarged to a legible size and laid out with labels beside them.

Training grids and zoom strips show P×P panels (32 px for the tiny preset). Each panel is enlarged by
a whole factor with nearest-neighbour sampling (every generated pixel stays a visible square, nothing
is invented) to at least MIN_PANEL px, and labels go in bands above the columns and left of the
rows, never over the pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MIN_PANEL = 256  # px: the smallest side a panel is shown at
GAP = 4  # px between panels
FONT_SIZE = 16
BAND = FONT_SIZE + 12  # px: height of the column labels' band


def enlarge(panel: np.ndarray | Image.Image, min_side: int = MIN_PANEL) -> Image.Image:
    """`panel` ((H, W[, C]) uint8 or an image) enlarged by the smallest whole factor that makes its shorter
    side at least `min_side`, nearest-neighbour; as it is when already that large."""
    image = panel if isinstance(panel, Image.Image) else Image.fromarray(panel.squeeze())
    factor = math.ceil(min_side / min(image.size))
    if factor <= 1:
        return image.convert("RGB")
    return image.convert("RGB").resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_SIZE)


def labelled_grid(
    panels: Sequence[Sequence[np.ndarray | Image.Image]],
    *,
    column_labels: Sequence[str],
    row_labels: Sequence[str] | None = None,
    min_panel: int = MIN_PANEL,
) -> Image.Image:
    """Rows of panels (each enlarged to ≥ `min_panel` px, all to the first one's size) on white, with
    `column_labels` above the columns and `row_labels` (if given) left of the rows.

    Raises ValueError when a row or a label list does not match the number of columns or rows.
    """
    columns = len(column_labels)
    if any(len(row) != columns for row in panels) or (row_labels is not None and len(row_labels) != len(panels)):
        raise ValueError(f"{len(panels)} rows of panels do not match {columns} column labels / the row labels")
    cells = [[enlarge(panel, min_panel) for panel in row] for row in panels]
    width, height = cells[0][0].size
    font = _font()
    draw_probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 0 if row_labels is None else max(draw_probe.textlength(t, font=font) for t in row_labels) + 2 * GAP
    left = math.ceil(left)
    grid = Image.new("RGB", (left + columns * (width + GAP) + GAP, BAND + len(cells) * (height + GAP) + GAP), "white")
    draw = ImageDraw.Draw(grid)
    for j, label in enumerate(column_labels):
        x = left + GAP + j * (width + GAP)
        draw.text((x + width / 2, BAND / 2), label, fill="black", font=font, anchor="mm")
    for i, row in enumerate(cells):
        y = BAND + GAP + i * (height + GAP)
        if row_labels is not None:
            draw.text((GAP, y + height / 2), row_labels[i], fill="black", font=font, anchor="lm")
        for j, cell in enumerate(row):
            grid.paste(cell.resize((width, height), Image.Resampling.NEAREST), (left + GAP + j * (width + GAP), y))
    return grid
