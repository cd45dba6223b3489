"""`anyres-train`: two-phase any-resolution GAN training from streamed shards (paper §3.2).

Phase 1 ("global") is standard fixed-resolution training: every real sample is a whole image
resized to p×p and G renders the global spec. Phase 2 ("patch") starts from phase 1's G_ema (as G) and D,
keeps phase 1's G_ema frozen as the teacher, and trains on HR patches at random scales mixed
with global samples; fakes are rendered at exactly the real batch's specs.

One step: G (non-saturating loss + λ·teacher loss), D (logistic loss), every `r1_interval`
steps a lazy R1 step on D, then the EMA of G. Randomness is stateless: the latents and flips of
step t on rank r come from a generator seeded with (seed, r, t), and the data loader restarts at
batch t, so a resumed run continues exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from anyres_data.sampling.loader import PatchBatch, make_loader
from anyres_data.settings import changed_settings, from_dict, to_dict
from anyres_model.checkpoint import (
    load_checkpoint,
    network_config,
    run_checkpoint_path,
    run_checkpoints,
    save_checkpoint,
)
from anyres_model.metrics.evaluate import evaluate
from anyres_model.networks.discriminator import Discriminator
from anyres_model.networks.generator import Generator
from anyres_model.training import distributed
from anyres_model.training.config import TrainConfig
from anyres_model.training.ema import ema_beta, update_ema
from anyres_model.training.losses import discriminator_loss, generator_loss, r1_penalty
from anyres_model.training.perceptual import load_lpips
from anyres_model.training.run_log import ScalarLog, SpecCoverage, StepTimer, grid_name, save_image_grid
from anyres_model.training.teacher import teacher_loss

GRID_LATENTS = 6
# Settings that may differ between a run and its resumption (they do not change what is computed).
RESUMABLE_CHANGES = {"resume", "total_kimg", "snapshot_kimg", "image_kimg", "log_every", "threads", "eval_kimg", "eval"}


@dataclass
class Networks:
    """The modules of a run; `teacher` is None in phase 1.

    `G_run`/`D_run` are what the main forward passes call: the modules themselves, or their
    torch.compile'd versions (R1's double backward always goes through the plain D).
    """

    G: Generator
    D: Discriminator
    G_ema: Generator
    teacher: Generator | None
    G_run: nn.Module | None = None
    D_run: nn.Module | None = None

    def __post_init__(self) -> None:
        self.G_run = self.G_run or self.G
        self.D_run = self.D_run or self.D


@dataclass
class Progress:
    step: int = 0  # completed steps (= batches consumed per rank)
    nimg: int = 0  # real samples shown to D, all ranks
    coverage: SpecCoverage = field(default_factory=SpecCoverage)  # scales drawn on this rank


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) in [0, 255] → float in [-1, 1]."""
    return images.to(torch.float32) / 127.5 - 1


def mirror(images: torch.Tensor, specs: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror the samples where `flip` (B,) is true: the patch left-right, its spec x0 → s − x0 − p."""
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    specs = specs.clone()
    s, x0, p = specs[:, 0], specs[:, 1], specs[:, 3]
    specs[:, 1] = torch.where(flip, s - x0 - p, x0)
    return images, specs


def cpu_threads(*, workers: int) -> int:
    """torch threads for a CPU run: the cores left after the loader workers, shared by the local ranks.

    More threads than free cores makes every parallel op wait for preempted threads: on 2 cores with
    2 loader workers, 2 torch threads ran 10× slower than 1.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, cores // local_ranks - workers)


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The RNG of one step on one rank: independent of everything that came before, so resuming is exact."""
    state = np.random.SeedSequence([seed, rank, step]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def build_networks(cfg: TrainConfig, device: torch.device) -> Networks:
    """Fresh networks of the preset; for phase 2, G and G_ema from phase 1's G_ema, its D, and a frozen teacher copy."""
    g_cfg, d_cfg = cfg.network_configs()
    G = Generator(g_cfg).to(device)
    D = Discriminator(d_cfg).to(device)
    if cfg.phase == "global":
        for param in G.scale_branch_parameters():
            param.requires_grad_(False)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    teacher = None
    if cfg.phase == "patch":
        if cfg.init is None:
            raise ValueError(
                "phase 'patch' starts from a phase-1 checkpoint: give --init RUN_DIR (or a checkpoint file)"
            )
        init = load_checkpoint(cfg.init, map_location=device)
        if init.config.get("G") != to_dict(g_cfg) or init.config.get("D") != to_dict(d_cfg):
            raise ValueError(
                f"--init {cfg.init} was trained with other network settings than this run's "
                f"(preset {cfg.preset!r}, conv_kernel {g_cfg.conv_kernel})"
            )
        # The paper initialises G with G_fixed, the teacher: phase 1's G_ema. (Phase 1's raw G is a
        # noisy iterate around it; starting from it puts the teacher loss far from zero even at s = P.)
        G.load_state_dict(init.tensors["G_ema"])
        D.load_state_dict(init.tensors["D"])
        G_ema.load_state_dict(init.tensors["G_ema"])
        teacher = copy.deepcopy(G_ema)
    return Networks(G=G, D=D, G_ema=G_ema, teacher=teacher)


def make_optimizers(cfg: TrainConfig, nets: Networks) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G; Adam for D with lr and betas adjusted for the lazy R1 steps (StyleGAN2's c = k/(k+1))."""
    b1, b2 = cfg.adam_betas
    trainable = [param for param in nets.G.parameters() if param.requires_grad]
    opt_g = torch.optim.Adam(trainable, lr=cfg.lr_g, betas=(b1, b2), eps=1e-8)
    c = cfg.r1_interval / (cfg.r1_interval + 1) if cfg.r1_interval > 0 else 1.0
    opt_d = torch.optim.Adam(nets.D.parameters(), lr=cfg.lr_d * c, betas=(b1**c, b2**c), eps=1e-8)
    return opt_g, opt_d


def check_resumable(saved: dict[str, Any], current: TrainConfig) -> None:
    """Raise ValueError when the saved run was trained with settings that resuming would change."""
    changed = changed_settings(
        saved, to_dict(current), may_change=lambda name: not RESUMABLE_CHANGES.isdisjoint(name.split("."))
    )
    if changed:
        details = ", ".join(f"{name}: {before!r} → {after!r}" for name, before, after in changed)
        raise ValueError(f"cannot resume {current.run_dir} with changed settings ({details}); use another --run-dir")


def save_run(path: Path, cfg: TrainConfig, nets: Networks, opts, progress: Progress) -> None:
    """Checkpoint: networks, optimisers, torch RNG states, progress and the config (state_dicts + JSON only)."""
    g_cfg, d_cfg = nets.G.cfg, nets.D.cfg
    tensors: dict[str, Any] = {
        "G": nets.G.state_dict(),
        "D": nets.D.state_dict(),
        "G_ema": nets.G_ema.state_dict(),
        "opt_G": opts[0].state_dict(),
        "opt_D": opts[1].state_dict(),
        "rng_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        tensors["rng_cuda"] = torch.cuda.get_rng_state_all()
    if nets.teacher is not None:
        tensors["teacher"] = nets.teacher.state_dict()
    config = {**network_config(g_cfg, d_cfg), "train": to_dict(cfg)}
    extra = {
        "step": progress.step,
        "nimg": progress.nimg,
        "kimg": progress.nimg / 1000,
        "coverage": progress.coverage.to_dict(),
    }
    save_checkpoint(path, config=config, tensors=tensors, extra_json=extra)


def restore_run(path: Path, cfg: TrainConfig, nets: Networks, opts, device: torch.device) -> Progress:
    """Load what `save_run` wrote into the (already built) networks and optimisers."""
    ckpt = load_checkpoint(path, map_location=device)
    check_resumable(ckpt.config["train"], cfg)
    nets.G.load_state_dict(ckpt.tensors["G"])
    nets.D.load_state_dict(ckpt.tensors["D"])
    nets.G_ema.load_state_dict(ckpt.tensors["G_ema"])
    if nets.teacher is not None:
        nets.teacher.load_state_dict(ckpt.tensors["teacher"])
    opts[0].load_state_dict(ckpt.tensors["opt_G"])
    opts[1].load_state_dict(ckpt.tensors["opt_D"])
    torch.set_rng_state(ckpt.tensors["rng_cpu"].cpu())
    if "rng_cuda" in ckpt.tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in ckpt.tensors["rng_cuda"]])
    extra = ckpt.extra_json
    coverage = SpecCoverage.from_dict(extra["coverage"]) if "coverage" in extra else SpecCoverage()
    return Progress(step=int(extra["step"]), nimg=int(extra["nimg"]), coverage=coverage)


def train_step(
    cfg: TrainConfig,
    nets: Networks,
    opts: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    batch: PatchBatch,
    *,
    step: int,
    proc: distributed.Process,
    lpips_model: nn.Module | None,
    timer: StepTimer,
) -> dict[str, torch.Tensor]:
    """One G step, one D step (+ lazy R1). Returns detached scalars for logging."""
    G, D, G_run, D_run = nets.G, nets.D, nets.G_run, nets.D_run
    opt_g, opt_d = opts
    dev = proc.device
    rng = step_generator(cfg.data.seed, proc.rank, step)
    b = batch.images.shape[0]
    reals = to_float(batch.images.to(dev, non_blocking=True))
    specs = batch.specs.to(dev)
    if cfg.xflip:
        reals, specs = mirror(reals, specs, (torch.rand(b, generator=rng) < 0.5).to(dev))
    z_g = torch.randn(b, G.cfg.z_dim, generator=rng).to(dev)
    z_d = torch.randn(b, G.cfg.z_dim, generator=rng).to(dev)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp)
    stats: dict[str, torch.Tensor] = {}

    # G: fool D at the real batch's specs; stay faithful to the teacher
    with timer.part("G"):
        D.requires_grad_(False)
        with autocast:
            fakes = G_run(z_g, specs)
            fake_logits = D_run(fakes).float()
        loss_g = generator_loss(fake_logits).mean()
    stats["loss/G"] = loss_g.detach()
    if nets.teacher is not None and cfg.teacher_weight > 0:
        with timer.part("teacher"), torch.no_grad(), autocast:
            target = nets.teacher(z_g).float()
        with timer.part("lpips"):
            tl = teacher_loss(fakes.float(), specs, target, lpips_model, structure=cfg.teacher_structure)
            loss_t = tl.total.mean()
        loss_g = loss_g + cfg.teacher_weight * loss_t
        stats["loss/teacher_l1"] = tl.l1.mean().detach()
        stats["loss/teacher_lpips"] = tl.lpips.mean().detach()
        if tl.structure is not None:
            stats["loss/teacher_structure"] = tl.structure.mean().detach()
    with timer.part("G"):
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        distributed.average_gradients(G, proc.world_size)
        opt_g.step()
        D.requires_grad_(True)

    # D: tell reals from fakes rendered at the same specs
    with timer.part("D"):
        with torch.no_grad(), autocast:
            fakes = G_run(z_d, specs, update_emas=True)
        with autocast:
            real_logits = D_run(reals).float()
            fake_logits = D_run(fakes).float()
        loss_d = discriminator_loss(real_logits, fake_logits).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        distributed.average_gradients(D, proc.world_size)
        opt_d.step()
        stats["loss/D"] = loss_d.detach()
        stats["D/real"] = real_logits.mean().detach()
        stats["D/fake"] = fake_logits.mean().detach()

        if cfg.r1_interval > 0 and step % cfg.r1_interval == 0:
            r1 = r1_penalty(D, reals)
            loss_r1 = (cfg.gamma / 2) * r1.mean() * cfg.r1_interval
            opt_d.zero_grad(set_to_none=True)
            loss_r1.backward()
            distributed.average_gradients(D, proc.world_size)
            opt_d.step()
            stats["loss/r1"] = r1.mean().detach()
    return stats


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training as `cfg` says; returns the path of the last checkpoint."""
    proc = distributed.init_process(cfg.device)
    if (cfg.amp or cfg.compile) and proc.device.type != "cuda":
        raise ValueError("--amp and --compile are for CUDA; this run is on the CPU")
    previous_threads = torch.get_num_threads()
    if proc.device.type == "cpu":
        torch.set_num_threads(cfg.threads or cpu_threads(workers=cfg.data.workers))
    run_dir = cfg.run_dir
    existing = run_checkpoints(run_dir)
    if existing and not cfg.resume:
        raise ValueError(f"{run_dir} already holds checkpoints: add --resume to continue, or use another --run-dir")
    torch.manual_seed(cfg.data.seed)  # network initialisation; identical on every rank
    nets = build_networks(cfg, proc.device)
    lpips_model = None  # built before any RNG state is restored: a random trunk (tests) draws from torch's RNG
    if nets.teacher is not None and cfg.teacher_weight > 0 and cfg.lpips != "none":
        lpips_model = load_lpips(cfg.lpips).to(proc.device)
    opts = make_optimizers(cfg, nets)
    progress = Progress()
    if cfg.resume and existing:
        progress = restore_run(existing[-1], cfg, nets, opts, proc.device)
    distributed.broadcast_module(nets.G, proc.world_size)
    distributed.broadcast_module(nets.D, proc.world_size)
    distributed.broadcast_module(nets.G_ema, proc.world_size)
    if proc.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))

    sampler = cfg.sampler
    if cfg.phase == "global":
        sampler = type(sampler)(**{**to_dict(sampler), "global_prob": 1.0})
    loader = make_loader(cfg.data, sampler, rank=proc.rank, world_size=proc.world_size, start_batch=progress.step)
    if cfg.compile:
        nets.G_run, nets.D_run = torch.compile(nets.G), torch.compile(nets.D)

    batch_total = cfg.data.batch_size * proc.world_size
    ema_kimg = cfg.ema_kimg if cfg.ema_kimg is not None else 10 * batch_total / 32
    rampup = cfg.ema_rampup if cfg.phase == "global" or cfg.patch_ema_rampup else None
    total_nimg = round(cfg.total_kimg * 1000)
    grid_z = torch.randn(GRID_LATENTS, nets.G.cfg.z_dim, generator=torch.Generator().manual_seed(cfg.data.seed)).to(
        proc.device
    )
    log = ScalarLog(run_dir) if proc.is_main else None
    timer = StepTimer(proc.device)
    next_snapshot = _next_multiple(progress.nimg, cfg.snapshot_kimg)
    next_image = _next_multiple(progress.nimg, cfg.image_kimg) if cfg.image_kimg > 0 else math.inf
    next_eval = _next_multiple(progress.nimg, cfg.eval_kimg) if cfg.eval_kimg > 0 else math.inf
    bar = tqdm(total=total_nimg, initial=progress.nimg, unit="img", unit_scale=True, disable=not proc.is_main)
    last_path = existing[-1] if existing and cfg.resume else None
    window_start, window_nimg = time.perf_counter(), 0
    data = iter(loader)
    try:
        while progress.nimg < total_nimg:
            with timer.part("data"):
                batch = next(data)
            stats = train_step(
                cfg, nets, opts, batch, step=progress.step, proc=proc, lpips_model=lpips_model, timer=timer
            )
            progress.step += 1
            progress.nimg += batch_total
            progress.coverage.add(batch.specs)
            window_nimg += batch_total
            beta = ema_beta(batch=batch_total, nimg=progress.nimg, ema_kimg=ema_kimg, rampup=rampup)
            update_ema(nets.G_ema, nets.G, beta)
            bar.update(batch_total)

            if progress.step % cfg.log_every == 0 or progress.nimg >= total_nimg:
                values = {k: distributed.all_ranks_mean(v, proc.world_size).item() for k, v in stats.items()}
                elapsed = time.perf_counter() - window_start
                values["speed/samples_per_s"] = window_nimg / max(elapsed, 1e-9)
                values["speed/s_per_kimg"] = elapsed / max(window_nimg / 1000, 1e-9)
                values.update({f"time/{k}": v for k, v in timer.shares().items()})
                skipped = loader.skipped()
                values["data/skipped"] = float(sum(skipped.values()))
                if log is not None:
                    log.write(values, kimg=progress.nimg / 1000)
                bar.set_postfix({k.split("/")[-1]: f"{values[k]:.3g}" for k in ("loss/G", "loss/D") if k in values})
                timer.reset()
                window_start, window_nimg = time.perf_counter(), 0

            if proc.is_main and progress.nimg >= next_image:
                save_image_grid(nets.G_ema, grid_z, run_dir / "images" / grid_name(progress.nimg))
                next_image = _next_multiple(progress.nimg, cfg.image_kimg)
            if proc.is_main and progress.nimg >= next_eval:
                record = run_eval(cfg, nets.G_ema, progress)
                if log is not None:
                    log.write({f"eval/{k}": v for k, v in record["metrics"].items()}, kimg=progress.nimg / 1000)
                next_eval = _next_multiple(progress.nimg, cfg.eval_kimg)
            if progress.nimg >= next_snapshot or progress.nimg >= total_nimg:
                last_path = run_checkpoint_path(run_dir, progress.step)
                distributed.check_in_sync(nets.G, proc.world_size)
                if proc.is_main:
                    save_run(last_path, cfg, nets, opts, progress)
                    coverage = {"rank0": progress.coverage.summary(), "histogram": progress.coverage.to_dict()}
                    (run_dir / "coverage.json").write_text(json.dumps(coverage, indent=2))
                next_snapshot = _next_multiple(progress.nimg, cfg.snapshot_kimg)
    finally:
        bar.close()
        if log is not None:
            log.close()
        distributed.shutdown()
        torch.set_num_threads(previous_threads)
    assert last_path is not None
    return last_path


def run_eval(cfg: TrainConfig, generator: Generator, progress: Progress) -> dict[str, Any]:
    """Measure G_ema with `cfg.eval` (data: the HR set unless given); append the result to RUN/eval.jsonl."""
    settings = cfg.eval if cfg.eval.data else dataclasses.replace(cfg.eval, data=cfg.data.hr)
    results = evaluate(generator, settings, progress=False)
    record = {
        "kimg": progress.nimg / 1000,
        "step": progress.step,
        "metrics": {name: m["value"] for name, m in results["metrics"].items()},
    }
    with (cfg.run_dir / "eval.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def _next_multiple(nimg: int, kimg: float) -> float:
    """The next image count, after `nimg`, that is a multiple of `kimg` thousand."""
    every = max(round(kimg * 1000), 1)
    return (nimg // every + 1) * every


def load_train_config(path: Path) -> TrainConfig:
    """The training settings saved in a checkpoint."""
    return from_dict(TrainConfig, load_checkpoint(path).config["train"])
