"""The experiment's settings and its arms: one frozen dataclass each, saved with the results."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from anyres_data.settings import setting

TREND_POINTS = 4  # phase-2 checkpoints evaluated for the trend (the last is the final one)


@dataclass(frozen=True)
class ExperimentSettings:
    """The experiment's knobs; lengths in kimg (thousands of real samples), sizes in units of p."""

    out: Path = setting(Path("runs/experiment"), "Folder for datasets, runs and results.")
    data: Path | None = setting(
        None, "Folder of the LR and HR sets (built there if missing); None: OUT/data. Experiments can share one."
    )
    seeds: tuple[int, ...] = setting((0, 1), "Training seeds of the final table: (a) and the chosen (b) for each.")
    ablation_seed: int = setting(0, "Seed of the one-seed ablation runs.")
    ablations: tuple[str, ...] = setting(
        ("lambda25", "s_from_p", "element_mixing", "l1_only"),
        "One-seed ablations to train and report (each changes one factor of (b)); empty: none.",
    )
    ablation_kimg: float | None = setting(
        None,
        "Phase-2 length of each ablation, compared with the base at the same length; None: phase2_kimg."
        " Must be a multiple of phase2_kimg / 4 (a trend checkpoint of the base).",
    )
    final_arm: str | None = setting(
        None, "(b) setting of the final table; None: the protocol's rule chooses (its pick is reported either way)."
    )
    preset: Literal["tiny", "tiny64"] = setting("tiny64", "Generator size; tiny64 is p = 64, tiny p = 32.")
    lr_count: int = setting(2000, "Images in the LR set, each p×p.")
    hr_uniform_count: int = setting(50, "HR images with square sides uniform in [2p, hr_max_side·p].")
    hr_full_count: int = setting(10, "HR images at exactly hr_max_side·p (FFHQ6k's 1,000 full-size images, scaled).")
    hr_max_side: float = setting(4.0, "Largest HR side in units of p (the evaluated scales go up to it).")
    phase1_kimg: float = setting(10.0, "Phase 1 length shared by both arms.")
    phase2_kimg: float = setting(10.0, "Extra length: phase 1 continued (a) or phase 2 (b).")
    batch: int = setting(16, "Batch size.")
    eval_count: int = setting(500, "Ground-truth patches (and fakes) per patch metric, and whole images at p.")
    whole_count: int = setting(
        200, "Ground-truth whole images (and renders) at 2p and 4p; their renders also give the consistency."
    )
    consistency_count: int = setting(30, "Latents of the consistency measure at 8p (extrapolation).")
    trend_count: int = setting(200, "Ground-truth patches per metric at each point of the phase-2 trend.")
    trend_latents: int = setting(20, "Latents of the consistency measure at each trend point.")
    device: Literal["cpu", "cuda"] = setting("cpu", "Where training and evaluation run.")
    workers: int = setting(0, "Loader workers (0: in the training process, fastest on 2 cores at these sizes).")
    threads: int | None = setting(None, "torch threads per training run; None: the free cores.")
    grid_kimg: float = setting(5.0, "Training image grids every this many kimg (0: none).")

    def __post_init__(self) -> None:
        step_images = 1000 * self.phase1_kimg / self.batch
        if not math.isclose(step_images, round(step_images)):
            raise ValueError("phase1_kimg × 1000 must be a multiple of the batch (phase 2 starts at that step)")
        every = self.phase2_kimg / TREND_POINTS  # the snapshot interval: phase 2 starts from a snapshot
        if not math.isclose(self.phase1_kimg / every, round(self.phase1_kimg / every)):
            raise ValueError(f"phase1_kimg must be a multiple of phase2_kimg / {TREND_POINTS} (phase 2 starts there)")
        if self.ablation_kimg is not None and not (
            0 < self.ablation_kimg <= self.phase2_kimg
            and math.isclose(self.ablation_kimg / every, round(self.ablation_kimg / every))
        ):
            raise ValueError(f"ablation_kimg must be a multiple of phase2_kimg / {TREND_POINTS} up to phase2_kimg")
        unknown = set(self.ablations) - {arm.name for arm in ABLATIONS}
        if unknown:
            raise ValueError(f"unknown ablations {sorted(unknown)}; choose from {[arm.name for arm in ABLATIONS]}")
        if self.final_arm not in (None, BASE.name, *self.ablations):
            raise ValueError(
                f"final_arm must be None, {BASE.name!r} or one of the ablations run, got {self.final_arm!r}"
            )
        if self.hr_max_side < 2:
            raise ValueError(f"hr_max_side must be ≥ 2 (HR patches are drawn at s ≥ 2p), got {self.hr_max_side}")

    @property
    def ablation_length(self) -> float:
        return self.phase2_kimg if self.ablation_kimg is None else self.ablation_kimg

    @property
    def p(self) -> int:
        return 64 if self.preset == "tiny64" else 32


@dataclass(frozen=True)
class AnyresArm:
    """The phase-2 settings of one (b) arm: the factors the ablations vary, one at a time."""

    name: str
    teacher_weight: float = 5.0  # λ, the paper's
    scale_max: float = 0.5  # HR patches at s ≥ p / scale_max: 2p, as in the published runs
    global_mixing: Literal["batch", "element"] = "batch"  # the reference's: a whole batch is global or not
    structural: bool = True  # add a structural term to the teacher's L1: LPIPS when its weights exist, else Laplacian
    label: str = ""

    @property
    def run_name(self) -> str:
        return f"anyres-{self.name}"


BASE = AnyresArm("base", label="(b) λ 5, s ≥ 2p, per-batch, L1 + structural")
ABLATIONS = (
    AnyresArm("lambda25", teacher_weight=25.0, label="λ 25"),
    AnyresArm("s_from_p", scale_max=1.0, label="s ≥ p"),
    AnyresArm("element_mixing", global_mixing="element", label="per-element mixing"),
    AnyresArm("l1_only", structural=False, label="L1 only"),
)
ARMS_BY_NAME = {arm.name: arm for arm in (BASE, *ABLATIONS)}
