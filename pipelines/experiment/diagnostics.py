"""Diagnostics: why a generator does or does not zoom consistently.

- `zoom_probe`: freshly initialised generators rendered on denser grids, 3×3 against 1×1
  convolutions (is a fixed-scale StyleGAN3 already inconsistent before any training?).
- `scale_branch_ablation`: a phase-2 G as trained and with its scale branch zeroed (is the
  scale conditioning what helps or breaks the zoom?).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from anyres_model.checkpoint import load_generator
from anyres_model.metrics.fakes import global_images, latents
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
