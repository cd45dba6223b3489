"""The experiment's data: an LR set, an HR set shaped like FFHQ6k, and ground truth at any scale.

The domain is the demo source: procedural landscapes that are band-limited functions of the unit
square, so real images and real patches exist at exactly the scale being evaluated.

- LR: `lr_count` images at p×p (the many low-resolution images).
- HR: `hr_uniform_count` squares with sides uniform in [2p, hr_max_side·p] plus `hr_full_count`
  at exactly hr_max_side·p (FFHQ6k's 5,000 + 1,000 at 512..1024 for p = 256, scaled). Two builds
  with the same shard size, so resampled shards draw them in proportion to their counts.
- Held-out ground truth: demo sets no training set uses (seed 999; 998 for the noise floor).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from anyres_data.build import BuildSettings, build
from anyres_data.sources import SourceSettings
from anyres_data.sources.demo import DemoSettings, iter_demo, render_demo
from anyres_data.spec import PatchSpec, specs_to_tensor
from pipelines.experiment.settings import ExperimentSettings

HR_SHARD_SIZE = 10
HELD_OUT_SEED, FLOOR_SEED = 999, 998


class Sets(NamedTuple):
    lr: Path
    hr: str  # shard URLs for LoaderSettings.hr: the two HR builds joined by '::'
    hr_parts: tuple[Path, ...]


def _build_demo(out: Path, demo: DemoSettings, shard_size: int) -> Path:
    settings = BuildSettings(
        source="demo",
        out=str(out),
        sources=SourceSettings(demo=demo),
        shard_size=shard_size,
        workers=0,
        progress=False,
        resume=(out / "_work").exists(),
    )
    if not (out / "manifest.parquet").exists():
        build(settings)
    return out


def build_sets(cfg: ExperimentSettings) -> Sets:
    """Build (or find) the LR set and the two HR builds with `anyres-data build` from the demo source."""
    root = cfg.data or cfg.out / "data"
    p = cfg.p
    lr = _build_demo(root / "lr", DemoSettings(count=cfg.lr_count, seed=100, min_side=p, max_side=p), 250)
    uniform, full = hr_demo_settings(cfg)
    parts = (
        _build_demo(root / "hr-uniform", uniform, HR_SHARD_SIZE),
        _build_demo(root / "hr-full", full, HR_SHARD_SIZE),
    )
    return Sets(lr=lr, hr="::".join(str(part) for part in parts), hr_parts=parts)


def hr_demo_settings(cfg: ExperimentSettings) -> tuple[DemoSettings, DemoSettings]:
    """The HR set's two demo builds: squares with sides uniform in [2p, top], and squares at exactly top."""
    p, top = cfg.p, round(cfg.hr_max_side * cfg.p)
    square = {"side_distribution": "uniform", "max_aspect": 1.0}
    uniform = DemoSettings(count=cfg.hr_uniform_count, seed=200, min_side=2 * p, max_side=top, **square)
    full = DemoSettings(count=cfg.hr_full_count, seed=201, min_side=top, max_side=top, **square)
    return uniform, full


def hr_sides(cfg: ExperimentSettings) -> np.ndarray:
    """The square sides of the HR set's images, in pixels (from the demo settings; nothing is read)."""
    return np.array([c.width for demo in hr_demo_settings(cfg) for c in iter_demo(demo)])


def held_out_seeds(count: int, *, set_seed: int = HELD_OUT_SEED) -> list[int]:
    """Per-image seeds of `count` held-out landscapes (a demo set no training set uses)."""
    demo = DemoSettings(count=count, seed=set_seed, min_side=8, max_side=8)
    return [int(c.extra["demo_seed"]) for c in iter_demo(demo)]


def fixed_specs(cfg: ExperimentSettings, scale: int, count: int) -> torch.Tensor:
    """One p×p window per held-out image of the (scale·p)² rendering, at integer offsets: (count, 4)."""
    rng = np.random.default_rng([7, scale])
    s, p = scale * cfg.p, cfg.p
    offsets = rng.integers(0, s - p + 1, size=(count, 2))
    return specs_to_tensor([PatchSpec(float(s), float(x), float(y), p) for x, y in offsets])


def random_specs(cfg: ExperimentSettings, count: int) -> torch.Tensor:
    """Windows at the training sampler's own scales (the analogue of the paper's "pFID random").

    Per window: an HR image's side m drawn from the HR set, s uniform in [2p, m] (the sampler's
    distribution for scale_max 0.5), rounded to whole pixels so the ground truth can be rendered at
    s×s; the offset is an integer in [0, s − p]. Returns (count, 4).
    """
    rng = np.random.default_rng([7, 0])
    sides = hr_sides(cfg)
    p, out = cfg.p, []
    for m in rng.choice(sides, size=count):
        s = round(rng.uniform(2 * p, m))
        x, y = rng.integers(0, s - p + 1, size=2)
        out.append(PatchSpec(float(s), float(x), float(y), p))
    return specs_to_tensor(out)


def real_windows(specs: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """Ground truth: landscape i rendered at s_i×s_i, cut to its integer window; uint8 (n, 3, p, p)."""
    out = []
    for spec, image_seed in zip(specs.tolist(), seeds, strict=True):
        s, x0, y0, p = (int(v) for v in spec)
        pixels = render_demo(image_seed, s, s)[y0 : y0 + p, x0 : x0 + p]
        out.append(torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1))
    return torch.stack(out)


def real_wholes(size: int, seeds: list[int]) -> torch.Tensor:
    """Ground truth: each landscape rendered whole at size×size; uint8 (n, 3, size, size)."""
    return torch.stack([torch.from_numpy(render_demo(seed, size, size).copy()).permute(2, 0, 1) for seed in seeds])
