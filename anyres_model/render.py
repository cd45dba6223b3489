"""Rendering at any resolution: whole images, crops at any scale, tile by tile; and `anyres-render`.

`render(G, z, size)` renders the whole image at size×size (spec s = size, offset 0, p = size);
`render_crop(G, z, spec)` renders any window at any scale (the paper's Fig. 1). Both render either
in one pass or, with `tile=T`, tile by tile: each T×T block of the window is rendered as its own
spec, a square with `border` more pixels around the block (shifted inwards at the window's edges),
and cropped. Tile offsets are multiples of the generator's grid step (P / first-layer sampling
rate), so every tile's layer grids are sub-grids of the one-pass render's and the tiles agree with
it; the border keeps each tile's own edge effects (the layers see zeros beyond their margins) out
of the kept pixels. Memory depends on T, not on the size.

A patch size that is not a multiple of the grid step is rendered slightly larger and cropped: the
grids start at the window's corner, so the kept pixels are exactly the window's.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from anyres_data.settings import setting, to_dict
from anyres_data.spec import PatchSpec
from anyres_model.checkpoint import load_generator, resolve_checkpoint
from anyres_model.networks.generator import Generator
from anyres_model.panels import enlarge, labelled_grid

BORDER_SAMPLES = 2  # default tile border: margin_size * this many pixels (see docs/model.md for the error it leaves)


@dataclass(frozen=True)
class Tile:
    """One tile of a window: the spec G renders and which of its pixels are kept where."""

    spec: PatchSpec  # the rendered square: the tile plus at least `border` pixels on its inner sides
    inner_top: int  # the kept block starts at this row/column of the rendered square
    inner_left: int
    top: int  # ... and goes to rows top..top+height, columns left..left+width of the window
    left: int
    height: int
    width: int


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def default_border(generator: Generator) -> int:
    """Pixels rendered around each tile and cropped: BORDER_SAMPLES * margin_size, rounded to the grid step."""
    return _round_up(BORDER_SAMPLES * generator.cfg.margin_size, generator.synthesis.grid_step)


def tile_layout(window: PatchSpec, *, tile: int, border: int, step: int) -> list[Tile]:
    """Cover the window's p×p pixels with tile×tile blocks, each rendered with `border` extra pixels around it.

    The one-pass render of the window is p' = p rounded up to `step` pixels across (then cropped to p).
    Tiles render (tile + 2 border)² squares inside that p'×p' extent: at the window's edges a square
    is shifted inwards rather than sticking out, so its edge meets the window's edge exactly where the
    one-pass render's does, and both see the same boundary there. Tile size and border are rounded up
    to multiples of `step`, so every square's offset is a whole number of first-layer samples.
    A window no larger than one square is one tile. Raises ValueError for tile < 1 or border < 0.
    """
    if tile < 1 or border < 0:
        raise ValueError(f"tile must be >= 1 and border >= 0, got tile={tile}, border={border}")
    extent = _round_up(window.p, step)
    tile, border = _round_up(tile, step), _round_up(border, step)
    span = tile + 2 * border
    if span >= extent:
        return [Tile(dataclasses.replace(window, p=extent), 0, 0, 0, 0, window.p, window.p)]
    tiles = []
    for top in range(0, window.p, tile):
        for left in range(0, window.p, tile):
            sy = min(max(top - border, 0), extent - span)
            sx = min(max(left - border, 0), extent - span)
            spec = PatchSpec(window.s, window.x0 + sx, window.y0 + sy, span)
            tiles.append(
                Tile(spec, top - sy, left - sx, top, left, min(tile, window.p - top), min(tile, window.p - left))
            )
    return tiles


@torch.no_grad()
def iter_tiles(
    generator: Generator, ws: torch.Tensor, window: PatchSpec, *, tile: int | None = None, border: int | None = None
) -> Iterator[tuple[Tile, torch.Tensor]]:
    """Render the window tile by tile for latents ws (B, num_ws, w_dim): yields (tile, pixels (B, C, h, w)).

    tile None renders the window in one pass (border 0); border None uses `default_border`.
    """
    step = generator.synthesis.grid_step
    if tile is None:
        tile, border = window.p, 0
    elif border is None:
        border = default_border(generator)
    for t in tile_layout(window, tile=tile, border=border, step=step):
        img = generator.synthesis(ws, t.spec)
        yield t, img[:, :, t.inner_top : t.inner_top + t.height, t.inner_left : t.inner_left + t.width]


@torch.no_grad()
def render_crop(
    generator: Generator,
    z: torch.Tensor,
    spec: PatchSpec,
    *,
    tile: int | None = None,
    border: int | None = None,
    context: int = 0,
    truncation_psi: float = 1.0,
) -> torch.Tensor:
    """The window `spec` names (any scale s, any offset, any p), for each z: (B, C, p, p) float32.

    Without context this is what G(z, spec) renders (for any p, in bounded memory), including the
    generator's own behaviour at the window's edges. context > 0 renders that many more pixels
    around the window (rounded up to the grid step) and cuts them away: the crop then shows the
    window as part of the surrounding image. tile: render tile by tile with at most tile×tile kept
    pixels per pass (None: one pass); border: pixels rendered and cropped around each tile
    (None: `default_border`). Raises ValueError for a negative context.
    """
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    context = _round_up(context, generator.synthesis.grid_step)
    window = PatchSpec(spec.s, spec.x0 - context, spec.y0 - context, spec.p + 2 * context)
    ws = generator.mapping(z, truncation_psi=truncation_psi)
    out = torch.empty(z.shape[0], generator.cfg.img_channels, spec.p, spec.p, device=ws.device)
    for t, img in iter_tiles(generator, ws, window, tile=tile, border=border):
        # the tile's block of the enlarged window, intersected with the requested window
        y0, x0 = max(t.top, context), max(t.left, context)
        y1, x1 = min(t.top + t.height, context + spec.p), min(t.left + t.width, context + spec.p)
        if y1 > y0 and x1 > x0:
            block = img[:, :, y0 - t.top : y1 - t.top, x0 - t.left : x1 - t.left]
            out[:, :, y0 - context : y1 - context, x0 - context : x1 - context] = block
    return out


def render(
    generator: Generator,
    z: torch.Tensor,
    size: int,
    *,
    tile: int | None = None,
    border: int | None = None,
    truncation_psi: float = 1.0,
) -> torch.Tensor:
    """The whole image at size×size pixels (any integer size), for each z: (B, C, size, size) float32."""
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    return render_crop(
        generator, z, PatchSpec.global_(int(size)), tile=tile, border=border, truncation_psi=truncation_psi
    )


def zoom_specs(patch_size: int, *, levels: int, centre: tuple[float, float]) -> list[PatchSpec]:
    """The whole image at P×P, then P×P crops centred on `centre` at s = 2P, 4P, ... (paper Fig. 1).

    Raises ValueError for levels < 1.
    """
    if levels < 1:
        raise ValueError(f"zoom levels must be >= 1, got {levels}")
    crops = [PatchSpec.from_centre(s=float(patch_size * 2**k), v=centre, p=patch_size) for k in range(1, levels)]
    return [PatchSpec.global_(patch_size), *crops]


def to_numpy_image(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) float in [-1, 1] -> (H, W, C) uint8."""
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def zoom_strip(
    generator: Generator, z: torch.Tensor, specs: list[PatchSpec], *, truncation_psi: float = 1.0
) -> Image.Image:
    """One row of panels, one per spec (rendered at its p, shown at ≥ MIN_PANEL px), each labelled above
    with its scale, and the later crops' windows outlined on the first panel in their panels' colours.

    The first panel is rendered as G renders that window; the others with context (no edge effects).
    """
    context = default_border(generator)  # show zoomed crops as parts of the image, without edge effects
    panels = [
        enlarge(
            to_numpy_image(
                render_crop(generator, z[:1], spec, context=context if i else 0, truncation_psi=truncation_psi)[0]
            )
        )
        for i, spec in enumerate(specs)
    ]
    size = panels[0].width
    colours = ["#ff3030", "#30ff30", "#3090ff", "#ffd030", "#ff30ff", "#30ffff"]
    base = specs[0]
    bl, bt, br, bb = base.window  # unit-square coordinates of the first panel
    first = ImageDraw.Draw(panels[0])
    for i, spec in enumerate(specs[1:], start=1):
        left, top, right, bottom = spec.window
        box = [
            (v - o) / (e - o) * size for v, o, e in ((left, bl, br), (top, bt, bb), (right, bl, br), (bottom, bt, bb))
        ]
        colour = colours[(i - 1) % len(colours)]
        first.rectangle(box, outline=colour, width=2)
        ImageDraw.Draw(panels[i]).rectangle([0, 0, size - 1, size - 1], outline=colour, width=3)
    p = base.p
    labels = ["whole image" if spec.s == p else f"s = {spec.s:g} ({spec.s / p:g}P)" for spec in specs]
    return labelled_grid([panels], column_labels=labels)


@dataclass(frozen=True)
class RenderSettings:
    """What `anyres-render` draws from a checkpoint."""

    size: int = setting(1024, "pixels across the whole image (any integer)")
    tile: int | None = setting(
        512, "render tile by tile, this many pixels across (memory grows with tile²); 0: one pass"
    )
    border: int | None = setting(None, "pixels rendered and cropped around each tile (default: 2 * margin_size)")
    seed: int = setting(0, "seed of the latent z (its own RNG: the image can be regenerated alone)")
    truncation_psi: float = setting(1.0, "truncation: 1 = none, < 1 pulls w towards the average")
    which: str = setting("G_ema", "generator state in the checkpoint (G_ema or G)")
    out: Path = setting(
        Path("render.png"), "output PNG of one image (a JSON file with the settings is written beside it)"
    )
    seeds: str | None = setting(None, "several seeds, e.g. 0-35,40 (as StyleGAN3's gen_images.py), into --outdir")
    outdir: Path | None = setting(None, "folder for one PNG per seed, seed0000.png, ... (instead of --out)")
    zoom: bool = setting(False, "write a strip: the whole image, then crops at s = 2P, 4P, ... (each P×P)")
    zoom_levels: int = setting(4, "panels of the zoom strip")
    zoom_centre: tuple[float, float] = setting((0.5, 0.5), "centre of the zoom crops, unit-square coordinates x,y")
    device: str = setting("cpu", "torch device to render on")


def latent(seed: int, z_dim: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """z (1, z_dim) from its own generator seeded with `seed`."""
    return torch.randn(1, z_dim, generator=torch.Generator().manual_seed(seed)).to(device)


def parse_seeds(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7] (ranges inclusive, as StyleGAN3's gen_images.py). Raises ValueError."""
    seeds = []
    for part in (p.strip() for p in text.split(",")):
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise ValueError(f"--seeds {text!r}: expected seeds and ranges such as 0-35,40") from None
        if first < 0 or last < first:
            raise ValueError(f"--seeds {text!r}: {part} is not a range of seeds ≥ 0")
        seeds.extend(range(first, last + 1))
    return seeds


def run_render(settings: RenderSettings, checkpoint: Path) -> list[Path]:
    """Render what `settings` asks for from `checkpoint`: one PNG (`out`), or one per seed in `outdir`
    (`seeds`, else `seed`); returns their paths. Raises ValueError for --seeds without --outdir."""
    if settings.seeds is not None and settings.outdir is None:
        raise ValueError("--seeds writes one image per seed: give the folder with --outdir (--out is for one image)")
    checkpoint = resolve_checkpoint(checkpoint)
    generator = load_generator(checkpoint, settings.which, map_location=settings.device)
    if settings.outdir is None:
        return [_render_one(settings, generator, checkpoint, seed=settings.seed, out=settings.out)]
    seeds = parse_seeds(settings.seeds) if settings.seeds is not None else [settings.seed]
    return [
        _render_one(settings, generator, checkpoint, seed=seed, out=settings.outdir / f"seed{seed:04d}.png")
        for seed in seeds
    ]


def _render_one(settings: RenderSettings, generator: Generator, checkpoint: Path, *, seed: int, out: Path) -> Path:
    z = latent(seed, generator.cfg.z_dim, settings.device)
    if settings.zoom:
        specs = zoom_specs(generator.patch_size, levels=settings.zoom_levels, centre=settings.zoom_centre)
        image = zoom_strip(generator, z, specs, truncation_psi=settings.truncation_psi)
    else:
        canvas = np.empty((settings.size, settings.size, generator.cfg.img_channels), dtype=np.uint8)
        ws = generator.mapping(z, truncation_psi=settings.truncation_psi)
        tile = settings.tile or None
        for t, img in iter_tiles(generator, ws, PatchSpec.global_(settings.size), tile=tile, border=settings.border):
            canvas[t.top : t.top + t.height, t.left : t.left + t.width] = to_numpy_image(img[0])
        image = Image.fromarray(canvas.squeeze(-1) if canvas.shape[-1] == 1 else canvas)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    record = {
        "checkpoint": str(checkpoint),
        "seed": seed,
        "settings": to_dict(settings),
        "generator": to_dict(generator.cfg),
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    return out
