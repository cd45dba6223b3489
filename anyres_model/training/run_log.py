"""What a training run writes as it goes: scalars (CSV + TensorBoard), image grids, time shares, the scales drawn."""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from anyres_data.spec import PatchSpec
from anyres_model.networks.generator import Generator
from anyres_model.panels import labelled_grid
from anyres_model.render import render_crop, to_numpy_image

PARTS = ("data", "G", "D", "teacher", "lpips")


class StepTimer:
    """Wall time per part of a training step (data, G, D, teacher, lpips), synchronising CUDA when timed."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - start

    def shares(self) -> dict[str, float]:
        """Fraction of the timed wall time spent in each part."""
        total = sum(self.seconds.values()) or 1.0
        return {name: self.seconds.get(name, 0.0) / total for name in PARTS}

    def reset(self) -> None:
        self.seconds.clear()


COVERAGE_EDGES = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0)  # s / p, bin lower edges


@dataclass
class SpecCoverage:
    """Which scales training really drew: a histogram of s / p over every real sample (globals in the first bin).

    Counted from the batches the loader delivered, so it is the realised coverage, not the intended
    one; `counts[i]` holds samples with COVERAGE_EDGES[i] ≤ s / p < COVERAGE_EDGES[i + 1].
    """

    counts: list[int] = field(default_factory=lambda: [0] * len(COVERAGE_EDGES))
    sum_s: float = 0.0  # pixels
    p: int = 0

    def add(self, specs: torch.Tensor) -> None:
        """Count a batch's specs (B, 4) = (s, x0, y0, p)."""
        ratio = (specs[:, 0] / specs[:, 3]).double().cpu().numpy()
        edges = np.asarray(COVERAGE_EDGES) * (1 - 1e-6)  # s = 2p counts as ≥ 2p despite rounding
        index = np.clip(np.searchsorted(edges, ratio, side="right") - 1, 0, len(edges) - 1)
        for i in index:
            self.counts[int(i)] += 1
        self.sum_s += float(specs[:, 0].double().sum())
        self.p = int(specs[0, 3])

    @property
    def total(self) -> int:
        return sum(self.counts)

    def share_at_least(self, k: float) -> float:
        """Share of samples with s ≥ k·p (k must be one of COVERAGE_EDGES)."""
        start = COVERAGE_EDGES.index(k)
        return sum(self.counts[start:]) / max(self.total, 1)

    def summary(self) -> dict[str, float]:
        """E[s] in pixels and in units of p, and the share of samples at s ≥ 2p, 3p, 4p."""
        mean = self.sum_s / max(self.total, 1)
        return {
            "samples": self.total,
            "mean_s": mean,
            "mean_s_over_p": mean / self.p if self.p else 0.0,
            **{f"share_s_ge_{k:g}p": self.share_at_least(k) for k in (2.0, 3.0, 4.0)},
        }

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(COVERAGE_EDGES), "counts": list(self.counts), "sum_s": self.sum_s, "p": self.p}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpecCoverage:
        if list(data["edges"]) != list(COVERAGE_EDGES):
            raise ValueError("coverage was counted with other bins")
        return cls(counts=[int(c) for c in data["counts"]], sum_s=float(data["sum_s"]), p=int(data["p"]))


class ScalarLog:
    """Scalars to `log.csv` (one row per logging step; new names add columns) and TensorBoard."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "log.csv"
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self._columns: list[str] | None = None
        if self.path.exists():
            with self.path.open() as f:
                self._columns = next(csv.reader(f), None)

    def write(self, values: Mapping[str, float], *, kimg: float) -> None:
        row = {"kimg": round(kimg, 4), **{k: float(v) for k, v in values.items()}}
        new = [c for c in row if c not in (self._columns or [])]
        if self._columns is None or new:  # first row, or new scalars (e.g. the first evaluation): widen the file
            old_rows = []
            if self._columns is not None:
                with self.path.open(newline="") as f:
                    old_rows = list(csv.DictReader(f))
            self._columns = [*(self._columns or []), *new]
            with self.path.open("w", newline="") as f:
                writer = csv.DictWriter(f, self._columns, restval="")
                writer.writeheader()
                writer.writerows(old_rows)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self._columns, restval="").writerow(row)
        step = round(kimg * 1000)
        for name, value in values.items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def grid_specs(patch_size: int, scales: tuple[int, ...] = (1, 2, 4)) -> list[PatchSpec]:
    """The global image and centre crops at s = k·P: the columns of the training image grid."""
    return [PatchSpec.from_centre(s=float(patch_size * k), v=(0.5, 0.5), p=patch_size) for k in scales]


def grid_name(nimg: int) -> str:
    """The training grid's file name after `nimg` images: kimg to the image, so no grid replaces another."""
    return f"grid-{nimg / 1000:010.3f}kimg.png"


@torch.no_grad()
def save_image_grid(generator: Generator, z: torch.Tensor, path: Path) -> None:
    """One row per latent, one column per scale (global, 2P, 4P centre crops), labelled, as a PNG;
    each panel enlarged to at least MIN_PANEL px."""
    p = generator.patch_size
    specs = grid_specs(p)
    columns = [render_crop(generator, z, spec) for spec in specs]  # each (B, C, P, P)
    panels = [[to_numpy_image(col[i]) for col in columns] for i in range(z.shape[0])]
    labels = ["global" if spec.s == p else f"{spec.s / p:g}P crop (s = {spec.s:g})" for spec in specs]
    grid = labelled_grid(panels, column_labels=labels, row_labels=[f"z{i}" for i in range(z.shape[0])])
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
