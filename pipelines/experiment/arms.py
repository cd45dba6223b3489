"""The arms: phase 1 (shared), (a) phase 1 continued on LR only, and the (b) variants of phase 2.

- (a) "LR only": phase 1 (global, fixed scale) on the LR set for phase1 + phase2 kimg; at higher
  resolutions it is evaluated by Lanczos-upsampling its p×p output.
- (b) "any-res": the same phase 1 for phase1 kimg, then phase 2 for phase2 kimg on HR patches at
  random scales mixed with LR global samples, with the frozen phase-1 G_ema as teacher. Each
  `AnyresArm` fixes λ, the smallest HR scale, how globals are mixed, and the teacher distance.

Every run is the library's `train` with a `TrainConfig`: resumable, its settings in config.json.
"""

from __future__ import annotations

import math
from pathlib import Path

from anyres_data.settings import from_dict
from anyres_model.checkpoint import run_checkpoint_path
from anyres_model.training.config import TrainConfig
from anyres_model.training.perceptual import default_alexnet_path
from anyres_model.training.train import train
from pipelines.experiment.data import Sets
from pipelines.experiment.settings import TREND_POINTS, AnyresArm, ExperimentSettings


def lpips_available() -> bool:
    """Whether LPIPS's AlexNet weights are where `--lpips alex` looks for them."""
    return default_alexnet_path().is_file()


def teacher_distance(arm: AnyresArm) -> str:
    """The teacher distance an arm trains with, as named in the results."""
    if not arm.structural:
        return "L1"
    return "L1 + LPIPS" if lpips_available() else "L1 + Laplacian-pyramid L1"


def _config(cfg: ExperimentSettings, run_dir: Path, *, seed: int, **fields) -> TrainConfig:
    base = {
        "run_dir": str(run_dir),
        "preset": cfg.preset,
        "snapshot_kimg": cfg.phase2_kimg / TREND_POINTS,  # phase 2 checkpoints for the trend
        "image_kimg": cfg.grid_kimg,
        "log_every": 25,
        "device": cfg.device,
        "lpips": "none",
        "threads": cfg.threads,
        "resume": True,
        "data": {"batch_size": cfg.batch, "workers": cfg.workers, "seed": seed, "shuffle_buffer": 500},
        "sampler": {"p": cfg.p},
    }
    for key, value in fields.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) else value
    return from_dict(TrainConfig, base)


def phase1_dir(cfg: ExperimentSettings, seed: int) -> Path:
    return cfg.out / f"seed{seed}" / "lr_only"


def phase1_end(cfg: ExperimentSettings, seed: int) -> Path:
    """Phase 1's checkpoint at phase1_kimg: where every (b) starts and (a) continues."""
    return run_checkpoint_path(phase1_dir(cfg, seed), round(1000 * cfg.phase1_kimg / cfg.batch))


def _step(cfg: ExperimentSettings, kimg: float) -> int:
    """The step whose snapshot holds `kimg`: a snapshot is written at the first step that reaches it."""
    return math.ceil(round(1000 * kimg) / cfg.batch)


def lr_only_checkpoint(cfg: ExperimentSettings, seed: int, kimg: float) -> Path:
    """(a)'s snapshot at `kimg` of training in all (phase 1 included)."""
    return run_checkpoint_path(phase1_dir(cfg, seed), _step(cfg, kimg))


def anyres_checkpoint(cfg: ExperimentSettings, arm: AnyresArm, seed: int, kimg: float) -> Path:
    """(b) `arm`'s snapshot at `kimg` of phase 2."""
    return run_checkpoint_path(anyres_dir(cfg, arm, seed), _step(cfg, kimg))


def train_lr_only(cfg: ExperimentSettings, sets: Sets, seed: int, *, total_kimg: float) -> Path:
    """Phase 1 on the LR set to `total_kimg` (phase1_kimg: the shared start; + phase2_kimg: arm (a))."""
    return train(
        _config(cfg, phase1_dir(cfg, seed), seed=seed, phase="global", total_kimg=total_kimg, data={"hr": str(sets.lr)})
    )


def anyres_dir(cfg: ExperimentSettings, arm: AnyresArm, seed: int) -> Path:
    return cfg.out / f"seed{seed}" / arm.run_name


def train_anyres(
    cfg: ExperimentSettings, sets: Sets, arm: AnyresArm, seed: int, *, total_kimg: float | None = None
) -> Path:
    """Phase 2 of one (b) arm from phase 1's checkpoint at phase1_kimg, for total_kimg (None: phase2_kimg).

    A shorter run resumes into the longer one: its checkpoints are the longer run's first ones.
    """
    structural = arm.structural
    fields = {
        "phase": "patch",
        "init": str(phase1_end(cfg, seed)),
        "total_kimg": cfg.phase2_kimg if total_kimg is None else total_kimg,
        "teacher_weight": arm.teacher_weight,
        "lpips": "alex" if structural and lpips_available() else "none",
        "teacher_structure": "laplacian" if structural and not lpips_available() else "none",
        "data": {"hr": sets.hr, "lr": str(sets.lr)},
        "sampler": {"scale_max": arm.scale_max, "global_mixing": arm.global_mixing},
    }
    return train(_config(cfg, anyres_dir(cfg, arm, seed), seed=seed, **fields))


def trend_checkpoints(cfg: ExperimentSettings, run_dir: Path, *, continued: bool) -> list[tuple[float, Path]]:
    """(kimg after phase 1, checkpoint) at TREND_POINTS + 1 evenly spaced lengths; 0 is phase 1's end.

    `continued`: the run is phase 1 continued ((a)), whose step count includes phase 1's.
    """

    start = run_checkpoint_path(run_dir.parent / "lr_only", _step(cfg, cfg.phase1_kimg))
    lengths = [cfg.phase2_kimg * i / TREND_POINTS for i in range(TREND_POINTS + 1)]
    if continued:
        return [(k, run_checkpoint_path(run_dir, _step(cfg, cfg.phase1_kimg + k))) for k in lengths]
    return [(k, run_checkpoint_path(run_dir, _step(cfg, k)) if k else start) for k in lengths]
