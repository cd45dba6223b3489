"""The replayable list of patch specs behind pFID/pSWD: seed → which image, which square, which window.

Specs are drawn by the training sampler (`anyres_data.sampling.draw.draw_spec`) on the real images'
displayed sizes from the manifest, so the metric sees the patch distribution that training
sees. Images are visited in rounds of a seeded permutation (each image once per round) and
rows are sorted by key first, so the list depends only on the set of images, the sampler
settings and the seed. Cutting a patch (`anyres_data.sampling.patches.cut_patch`) reports where it
*really* lies to sub-pixel precision; those realised specs are what the fakes are rendered at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anyres_data.sampling.draw import DrawnSpec, SamplerSettings, Square, draw_spec
from anyres_data.spec import PatchSpec


@dataclass(frozen=True)
class SpecList:
    """n drawn samples: source image keys (n,), squares (n, 3) = (ox, oy, m), specs (n, 4) = (s, x0, y0, p),
    is_global (n,), and the seed they came from."""

    seed: int
    keys: np.ndarray
    squares: np.ndarray
    specs: np.ndarray
    is_global: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def drawn(self, i: int) -> DrawnSpec:
        """Entry i as the sampler's DrawnSpec (what `cut_patch` takes)."""
        ox, oy, m = (int(v) for v in self.squares[i])
        s, x0, y0, p = self.specs[i]
        return DrawnSpec(
            Square(ox, oy, m), PatchSpec(float(s), float(x0), float(y0), round(p)), bool(self.is_global[i])
        )

    def arrays(self, prefix: str = "spec_") -> dict[str, np.ndarray]:
        """As plain arrays (no objects) for `np.savez`; keys are a fixed-width unicode array."""
        return {
            f"{prefix}seed": np.int64(self.seed),
            f"{prefix}keys": self.keys.astype(str),
            f"{prefix}squares": self.squares,
            f"{prefix}specs": self.specs,
            f"{prefix}is_global": self.is_global,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "spec_") -> SpecList:
        return cls(
            seed=int(arrays[f"{prefix}seed"]),
            keys=arrays[f"{prefix}keys"],
            squares=arrays[f"{prefix}squares"],
            specs=arrays[f"{prefix}specs"],
            is_global=arrays[f"{prefix}is_global"],
        )


def eligible_images(manifest: pd.DataFrame, settings: SamplerSettings) -> pd.DataFrame:
    """Rows (key, width, height) that can give patches without upsampling (shorter side ≥ p), sorted by key."""
    rows = manifest[["key", "width", "height"]].sort_values("key", kind="stable").reset_index(drop=True)
    if settings.global_prob < 1:
        rows = rows[np.minimum(rows["width"], rows["height"]) >= settings.p].reset_index(drop=True)
    return rows


def draw_spec_list(manifest: pd.DataFrame, *, n: int, settings: SamplerSettings, seed: int) -> SpecList:
    """n specs drawn by the training sampler from the manifest's images (columns key, width, height).

    Raises ValueError when no image is large enough for a p×p patch.
    """
    rows = eligible_images(manifest, settings)
    if rows.empty:
        raise ValueError(f"no image in the dataset has a shorter side ≥ p = {settings.p}: no patches to compare")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EC5]))
    rounds = -(-n // len(rows))
    order = np.concatenate([rng.permutation(len(rows)) for _ in range(rounds)])[:n]
    widths, heights = rows["width"].to_numpy(), rows["height"].to_numpy()
    drawn = [draw_spec(width=int(widths[i]), height=int(heights[i]), settings=settings, rng=rng) for i in order]
    return SpecList(
        seed=seed,
        keys=rows["key"].to_numpy().astype(str)[order],
        squares=np.array([d.square for d in drawn], dtype=np.int64).reshape(n, 3),
        specs=np.array([d.spec.as_tuple() for d in drawn], dtype=np.float64).reshape(n, 4),
        is_global=np.array([d.is_global for d in drawn], dtype=bool),
    )


def with_specs(specs: SpecList, realised: Sequence[PatchSpec] | np.ndarray) -> SpecList:
    """The same list with each spec replaced by where the cut patch really lies ((n, 4) or PatchSpecs)."""
    table = np.asarray([s.as_tuple() for s in realised] if not isinstance(realised, np.ndarray) else realised)
    if table.shape != specs.specs.shape:
        raise ValueError(f"expected {specs.specs.shape} realised specs, got {table.shape}")
    return SpecList(specs.seed, specs.keys, specs.squares, table.astype(np.float64), specs.is_global)
