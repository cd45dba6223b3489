"""Settings of a training run (`anyres-train`): one dataclass for the CLI, YAML files and Python."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from anyres_data.sampling.draw import SamplerSettings
from anyres_data.sampling.loader import LoaderSettings
from anyres_data.settings import setting
from anyres_model.metrics.evaluate import EvalSettings
from anyres_model.networks.config import DiscriminatorConfig, GeneratorConfig
from anyres_model.networks.presets import preset as preset_configs

DEFAULT_P = 32  # the default preset's (tiny) patch size; another preset moves it unless --p is given

Phase = Literal["global", "patch"]


@dataclass(frozen=True)
class TrainConfig:
    """Two-phase any-resolution training (paper §3.2). Lengths in kimg = thousands of real samples."""

    run_dir: Path = setting(Path("runs/anyres"), "Folder for checkpoints, logs, image grids and the resolved config.")
    phase: Phase = setting(
        "global",
        "global: phase 1, fixed-scale pretraining (every sample global: s = p, v = (0.5, 0.5)); "
        "patch: phase 2, HR patches at random scales mixed with global samples, with the teacher.",
    )
    preset: Literal["tiny", "tiny64", "small", "paper"] = setting(
        "tiny",
        "Model size: tiny (p = 32, CPU), tiny64 (p = 64, narrow, CPU experiments), small (p = 64), "
        "paper (p = 256). The patch size --p follows it unless another is given (then they must agree).",
    )
    conv_kernel: int | None = setting(
        None,
        "Kernel size of G's modulated convolutions; None: the preset's (3, StyleGAN3-T). 1 is StyleGAN3-R's "
        "choice, and makes G's picture change less when it is rendered at another scale (see the README).",
    )
    init: Path | None = setting(
        None,
        "Phase-1 run directory (its newest checkpoint) or checkpoint file that phase 2 starts from "
        "(G, D, G_ema); its G_ema becomes the frozen teacher.",
    )
    resume: bool = setting(
        False, "Continue from the newest checkpoint in run_dir: weights, optimisers, RNG and data position."
    )
    total_kimg: float = setting(100.0, "Training length in kimg (real samples shown to D, all ranks).")
    lr_g: float = setting(0.0025, "Adam learning rate of G.")
    lr_d: float = setting(0.002, "Adam learning rate of D.")
    adam_betas: tuple[float, float] = setting((0.0, 0.99), "Adam betas of both networks.")
    r1_gamma: float | None = setting(
        None,
        "R1 weight γ; None: 2·(p/256)², which follows StyleGAN3's recommendations (2 at 256, 8 at 512, 32 at 1024).",
    )
    r1_interval: int = setting(16, "Lazy R1: every this many D steps, weighted by the interval (0: no R1).")
    ema_kimg: float | None = setting(None, "Half-life of G's EMA in kimg; None: 10 × batch / 32 (StyleGAN3).")
    ema_rampup: float | None = setting(
        0.05, "Phase 1: the EMA half-life is at most this fraction of the images seen; None: off."
    )
    patch_ema_rampup: bool = setting(
        False,
        "Apply ema_rampup in phase 2 too. Off by default, as in the reference: phase 2's G_ema starts from "
        "phase 1's trained G_ema, and a ramp-up counted from phase 2's start would shrink its half-life.",
    )
    xflip: bool = setting(True, "Mirror half of the real samples (their specs are mirrored too).")
    teacher_weight: float = setting(5.0, "λ of the teacher loss in phase 2 (the paper's value; 0: no teacher).")
    teacher_structure: Literal["none", "laplacian"] = setting(
        "none",
        "Weight-free structural term added to the teacher distance: laplacian = L1 of the difference's "
        "Laplacian-pyramid bands (for runs without LPIPS's AlexNet weights); none: L1 (+ LPIPS) only.",
    )
    lpips: str = setting(
        "alex",
        "LPIPS trunk for the teacher loss: alex (AlexNet weights from the torch hub cache), a path to "
        "alexnet-owt-7be5be79.pth, random (tests only), or none (L1 only).",
    )
    snapshot_kimg: float = setting(10.0, "Checkpoint every this many kimg (and at the end).")
    image_kimg: float = setting(10.0, "Image grid (several scales) every this many kimg (0: never).")
    log_every: int = setting(10, "Log scalars every this many steps.")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "auto: CUDA when available, else CPU.")
    amp: bool = setting(False, "bfloat16 autocast for G and D forward passes (CUDA only).")
    compile: bool = setting(False, "torch.compile G and D (CUDA only).")
    threads: int | None = setting(
        None, "torch CPU threads; None: the cores left after the loader workers (shared by local ranks)."
    )
    eval_kimg: float = setting(
        0.0, "Evaluate G_ema every this many kimg, results in RUN/eval.jsonl and the log (0: never)."
    )
    eval: EvalSettings = setting(
        EvalSettings(metrics=("swd", "pswd", "pswd_up"), n=2048, swd_n=2048),
        "Metrics during training (anyres-eval's settings; data: the HR set when empty).",
        cli_prefix="eval_",
    )
    data: LoaderSettings = setting(
        LoaderSettings(), "Training data: HR and LR shards, batch, workers, seed.", cli_prefix=""
    )
    sampler: SamplerSettings = setting(
        SamplerSettings(p=DEFAULT_P),
        "How real patches are drawn (phase 2; phase 1 uses global samples only).",
        cli_prefix="",
    )

    def __post_init__(self) -> None:
        patch_size = preset_configs(self.preset)[0].patch_size
        if self.sampler.p == DEFAULT_P and patch_size != DEFAULT_P:  # left at the default: follow the preset
            object.__setattr__(self, "sampler", dataclasses.replace(self.sampler, p=patch_size))
        if self.sampler.p != patch_size:
            raise ValueError(f"--p is {self.sampler.p} but preset {self.preset!r} renders {patch_size}² patches")
        if self.total_kimg <= 0:
            raise ValueError(f"total_kimg must be > 0, got {self.total_kimg}")
        if self.conv_kernel is not None and (self.conv_kernel < 1 or self.conv_kernel % 2 == 0):
            raise ValueError(f"conv_kernel must be odd and ≥ 1, got {self.conv_kernel}")
        if self.r1_interval < 0:
            raise ValueError(f"r1_interval must be ≥ 0, got {self.r1_interval}")
        if self.lpips not in ("alex", "random", "none") and not Path(self.lpips).expanduser().is_file():
            raise ValueError(f"--lpips {self.lpips!r}: give alex, random, none, or the path of an existing file")

    def network_configs(self) -> tuple[GeneratorConfig, DiscriminatorConfig]:
        """The preset's network configs with this run's overrides."""
        g_cfg, d_cfg = preset_configs(self.preset)
        if self.conv_kernel is not None:
            g_cfg = dataclasses.replace(g_cfg, conv_kernel=self.conv_kernel)
        return g_cfg, d_cfg

    @property
    def gamma(self) -> float:
        return self.r1_gamma if self.r1_gamma is not None else 2.0 * (self.sampler.p / 256) ** 2
