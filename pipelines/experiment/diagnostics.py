"""Diagnostics: why a generator does or does not zoom consistently.

- `zoom_probe`: freshly initialised generators rendered on denser grids, 3×3 against 1×1
  convolutions (is a fixed-scale StyleGAN3 already inconsistent before any training?).
- `scale_branch_ablation`: a phase-2 G as trained and with its scale branch zeroed (is the
  scale conditioning what helps or breaks the zoom?).
- `evaluation_spread`: one checkpoint's pSWD under other latent seeds (how far apart must two
  arms be before the table can tell them apart?).
- `teacher_gap`: how far a phase-2 G's renders and p×p image lie from its teacher's p×p image
  (does the student learn what the teacher loss asks, and does its own picture drift?).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from anyres_model.checkpoint import load_generator
from anyres_model.metrics.fakes import global_images, latents, whole_images
from anyres_model.networks.generator import Generator
from anyres_model.networks.presets import preset
from pipelines.experiment import measure
from pipelines.experiment.settings import ExperimentSettings


@torch.no_grad()
def zoom_probe(*, conv_kernel: int, seed: int, preset_name: str = "tiny64", count: int = 32) -> dict[str, float]:
    """A freshly initialised G: its consistency at 2p, 4p, 8p relative to the gap between two of its latents.

    1 means the zoomed render is as different from the base image as another latent's image is.
    The magnitude averages are warmed up first, as training would, so every layer sees normalised input.
    """
    g_cfg = dataclasses.replace(preset(preset_name)[0], conv_kernel=conv_kernel)
    torch.manual_seed(seed)
    G = Generator(g_cfg).eval()
    for _ in range(30):
        G(torch.randn(16, g_cfg.z_dim), update_emas=True)
    base = global_images(G, latents(seed, np.arange(count), g_cfg.z_dim)).to(torch.float32)
    other = float((base - base.roll(1, 0)).abs().mean() / 127.5)
    return {k: v / other for k, v in measure.consistency(G, seed=seed, count=count).items()}


@torch.no_grad()
def scale_branch_ablation(checkpoint: Path, cfg: ExperimentSettings) -> dict[str, dict[str, float]]:
    """Consistency and pSWD (random s, 2p, 4p) of a phase-2 G as trained and with its scale branch zeroed.

    Zeroing the branch gives the unconditioned network (tested in the model's tests), so the
    difference is what the scale embedding contributes.
    """
    truth = measure.GroundTruth(cfg)
    out = {}
    for name in ("as trained", "scale branch zeroed"):
        G = load_generator(checkpoint)
        if name != "as trained":
            for param in G.scale_branch_parameters():
                param.zero_()
        row = {
            f"consistency {k}p": v
            for k, v in measure.consistency(G, seed=10_000, count=max(cfg.eval_count // 3, 1)).items()
        }
        row.update(
            {
                f"pSWD {m}": v
                for m, v in measure.scores(
                    G, truth, mode="model", seed=10_000, metrics=["random", "patch_2", "patch_4"]
                ).items()
            }
        )
        out[name] = row
    return out


@torch.no_grad()
def evaluation_spread(
    checkpoint: Path, cfg: ExperimentSettings, *, seeds: int = 4, metric: str = "random"
) -> dict[int, float]:
    """`metric` of one checkpoint (rendered) with the latents of `seeds` seeds: 10 000 (the table's), 20 001, ….

    The real patches and specs stay those of the table; only the fakes' randomness changes.
    """
    truth, G = measure.GroundTruth(cfg), load_generator(checkpoint)
    out = {}
    for seed in [10_000, *range(20_001, 20_000 + seeds)]:
        out[seed] = measure.scores(G, truth, mode="model", seed=seed, metrics=[metric])[metric]
    return out


@torch.no_grad()
def teacher_gap(teacher: Path, student: Path, *, count: int = 20, scales=(2, 4)) -> dict[str, float]:
    """Mean |Lanczos reduction to p×p − image| in [-1, 1] over `count` latents (another latent ≈ 0.4).

    `own p vs teacher p`: the student's p×p image against its teacher's; `{k}p vs own p` and
    `{k}p vs teacher p`: its whole render at k·p, reduced to p×p, against either.
    """
    T, G = load_generator(teacher), load_generator(student)
    z = latents(10_000, list(range(count)), G.cfg.z_dim)
    own, taught = global_images(G, z), global_images(T, z)
    row = {"own p vs teacher p": float(measure.reduction_gap(own, taught).mean())}
    for k in scales:
        big = whole_images(G, z, G.cfg.patch_size * k)
        row[f"{k}p vs own p"] = float(measure.reduction_gap(big, own).mean())
        row[f"{k}p vs teacher p"] = float(measure.reduction_gap(big, taught).mean())
    return row
