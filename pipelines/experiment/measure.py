"""What the experiment measures, as in the paper's Table 4 (with SWD where the paper uses FID).

Per generator and evaluation mode ("model": G rendered at the spec; "upsample": G's p×p image
Lanczos-upsampled, the baseline):
- `swd_p`: SWD of whole p×p images against held-out ground truth;
- `whole_2`, `whole_4`: SWD of whole images at 2p and 4p against ground truth of that size (FID@R);
- `random`: pSWD at the training sampler's own scales ("pFID random");
- `patch_2`, `patch_4`: pSWD at fixed s = 2p and 4p; `patch_8`: s = 8p, past the HR set (extrapolation).
All ×1e3, lower is better; the noise floor is the same metric between two ground-truth sets.

Consistency: how far G's image rendered at s×s, Lanczos-reduced to p×p, lies from its own p×p
image (what the teacher loss asks for); two different latents differ by about 0.4. At 2p and 4p it
comes from the whole renders of `whole_2`/`whole_4` (whole_count latents), at 8p from
consistency_count more latents (extrapolation).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anyres_data.spec import PatchSpec, specs_to_tensor
from anyres_model.metrics.fakes import global_images, lanczos_windows, latents, patches, whole_images
from anyres_model.metrics.swd import DescriptorSet, swd
from pipelines.experiment import data
from pipelines.experiment.settings import ExperimentSettings

PATCH_METRICS = {"random": None, "patch_2": 2, "patch_4": 4, "patch_8": 8}  # scale of fixed windows
WHOLE_METRICS = {"swd_p": 1, "whole_2": 2, "whole_4": 4}  # size in units of p
CONSISTENCY_SCALES = (2, 4, 8)
BATCH = 50


def descriptors(images: torch.Tensor, seed: int = 2) -> DescriptorSet:
    d = DescriptorSet(seed=seed)
    for part in images.split(256):
        d.add(part)
    return d


def distance(reals: DescriptorSet, fakes: torch.Tensor) -> float:
    """SWD ×1e3 (mean over pyramid levels) between ground-truth descriptors and a set of images."""
    return swd(reals, descriptors(fakes), seed=2).mean


class GroundTruth:
    """Held-out real images for every metric, rendered once and kept with their descriptors."""

    def __init__(self, cfg: ExperimentSettings, *, set_seed: int = data.HELD_OUT_SEED) -> None:
        self.cfg = cfg
        self.set_seed = set_seed
        self._specs: dict[str, torch.Tensor] = {}
        self._descriptors: dict[str, DescriptorSet] = {}

    def count(self, metric: str) -> int:
        return self.cfg.eval_count if metric in PATCH_METRICS or metric == "swd_p" else self.cfg.whole_count

    def specs(self, metric: str) -> torch.Tensor:
        """(n, 4) windows of a patch metric; for a whole metric, the global spec of its size, n times."""
        if metric not in self._specs:
            n, p = self.count(metric), self.cfg.p
            if metric == "random":
                self._specs[metric] = data.random_specs(self.cfg, n)
            elif metric in PATCH_METRICS:
                self._specs[metric] = data.fixed_specs(self.cfg, PATCH_METRICS[metric], n)
            else:
                size = WHOLE_METRICS[metric] * p
                self._specs[metric] = specs_to_tensor([PatchSpec.global_(size)] * n)
        return self._specs[metric]

    def images(self, metric: str) -> torch.Tensor:
        seeds = data.held_out_seeds(self.count(metric), set_seed=self.set_seed)
        if metric in PATCH_METRICS:
            return data.real_windows(self.specs(metric), seeds)
        return data.real_wholes(WHOLE_METRICS[metric] * self.cfg.p, seeds)

    def descriptors(self, metric: str) -> DescriptorSet:
        if metric not in self._descriptors:
            self._descriptors[metric] = descriptors(self.images(metric))
        return self._descriptors[metric]


def upsample(base: torch.Tensor, size: int) -> torch.Tensor:
    """Lanczos upsampling of whole p×p images (uint8 (B, 3, p, p)) to size×size."""
    return lanczos_windows(base, specs_to_tensor([PatchSpec.global_(size)] * base.shape[0]))


@torch.no_grad()
def fakes(G, truth: GroundTruth, metric: str, *, mode: str, seed: int) -> torch.Tensor:
    """uint8 fakes for one metric: G rendering its specs ("model") or G's p×p image upsampled ("upsample")."""
    specs = truth.specs(metric)
    device = next(G.parameters()).device
    out = []
    for start in range(0, specs.shape[0], BATCH):
        index = np.arange(start, min(start + BATCH, specs.shape[0]))
        z = latents(seed, index, G.cfg.z_dim).to(device)
        if metric in WHOLE_METRICS:
            size = int(specs[0, 3])
            if mode == "model":
                out.append(whole_images(G, z, size))
            else:
                out.append(upsample(global_images(G, z), size))
        elif mode == "model":
            out.append(patches(G, z, specs[index]))
        else:
            out.append(lanczos_windows(global_images(G, z), specs[index]))
    return torch.cat(out)


def scores(G, truth: GroundTruth, *, mode: str, seed: int, metrics=None) -> dict[str, float]:
    """Every metric (or those named) of one generator in one mode.

    In mode "model", the whole renders at 2p and 4p also give the consistency at those scales
    (`consistency_2`, `consistency_4`: the renders reduced to p×p against G's own p×p images).
    """
    names = metrics or [*WHOLE_METRICS, *PATCH_METRICS]
    out, base = {}, None
    for metric in names:
        images = fakes(G, truth, metric, mode=mode, seed=seed)
        out[metric] = distance(truth.descriptors(metric), images)
        if mode == "model" and metric == "swd_p":
            base = images  # G's p×p images: the consistency's reference below
        if mode == "model" and WHOLE_METRICS.get(metric, 1) > 1:
            if base is None:
                base = fakes(G, truth, "swd_p", mode="model", seed=seed)
            out[f"consistency_{WHOLE_METRICS[metric]}"] = float(reduction_gap(images, base[: images.shape[0]]).mean())
    return out


def floor(truth: GroundTruth, other: GroundTruth) -> dict[str, float]:
    """Each metric between two independent ground-truth sets of the same size: the best any model can do."""
    return {m: distance(truth.descriptors(m), other.images(m)) for m in [*WHOLE_METRICS, *PATCH_METRICS]}


def reduction_gap(big: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Per image, mean |Lanczos reduction of `big` to the size of `base` − base|, in [-1, 1] units.

    big: uint8 (B, 3, S, S); base: uint8 (B, 3, p, p). Returns (B,) float.
    """
    size = base.shape[-1]
    pixels = big.permute(0, 2, 3, 1).cpu().numpy()
    small = np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.LANCZOS)) for a in pixels])
    reduced = torch.from_numpy(small).permute(0, 3, 1, 2).to(torch.float32)
    return (reduced - base.cpu().to(torch.float32)).abs().flatten(1).mean(1) / 127.5


@torch.no_grad()
def consistency(G, *, seed: int, count: int, scales=CONSISTENCY_SCALES) -> dict[str, float]:
    """Mean over `count` latents of the gap between G's render at s = k·p reduced to p×p and its p×p image."""
    device = next(G.parameters()).device
    z = latents(seed, np.arange(count), G.cfg.z_dim).to(device)
    out = {}
    for k in scales:
        gaps = [
            reduction_gap(whole_images(G, part, k * G.patch_size), global_images(G, part)) for part in z.split(BATCH)
        ]
        out[str(k)] = float(torch.cat(gaps).mean())
    return out


def truth_consistency(cfg: ExperimentSettings) -> dict[str, float]:
    """The same gap for ground truth: a landscape rendered at s×s and reduced, against its own p×p rendering."""
    seeds = data.held_out_seeds(cfg.whole_count)
    base = data.real_wholes(cfg.p, seeds)
    return {str(k): float(reduction_gap(data.real_wholes(k * cfg.p, seeds), base).mean()) for k in CONSISTENCY_SCALES}


def cached(path: Path, key: dict, compute: Callable[[], dict]) -> dict:
    """`compute()`'s result, stored at `path` with `key`; reused while the key (checkpoint, settings) is the same."""
    if path.exists():
        stored = json.loads(path.read_text())
        if stored["key"] == key:
            return stored["values"]
    values = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "values": values}, indent=2))
    return values
