"""Does any-resolution training work? A controlled experiment on 2 CPU cores (the paper's Table 4, scaled down).

    python pipelines/experiment.py run                 # everything, resumable: rerun to continue
    python pipelines/experiment.py run --seeds 0 --phase1-kimg 2 --phase2-kimg 1   # a quick look

The domain is the demo source: procedural landscapes that are band-limited functions of the unit
square, so the ground truth exists at every resolution — real images and real patches are
rendered at exactly the scale being evaluated. With the tiny generator (p = 32):

- LR set: `lr_count` images at p×p; HR set: `hr_count` images (3% as many) with sides in [2p, 8p].
- Arm (a) "LR only": phase 1 (global, fixed scale) on the LR set for phase1 + phase2 kimg; at
  higher resolutions it is evaluated by Lanczos-upsampling its p×p output.
- Arm (b) "any-res": the same phase 1 for phase1 kimg, then phase 2 for phase2 kimg on HR patches
  at random scales mixed with LR global samples, with the frozen phase-1 generator as teacher
  (L1 teacher loss: LPIPS needs AlexNet weights that cannot be downloaded here).
- Metrics: SWD at p (whole images) and patch-SWD at s = 2p, 4p, 8p (p×p windows of the s×s
  image at random positions), against `eval_count` held-out ground-truth images per scale, per
  seed; plus the noise floor: the same metric between two independent ground-truth sets of the
  same size. (b) is also evaluated by upsampling its own p×p output, which separates "detail the
  model adds" from "a better base image".

- Consistency: how far (b)'s image rendered at s×s and Lanczos-reduced to p×p lies from its own
  p×p image (what the teacher loss asks for), against the ground truth's own gap.
- Trend: pSWD at 4p and 8p and consistency at TREND_POINTS + 1 lengths along phase 2 (and along
  (a)'s continuation), from the runs' snapshots.

Diagnostics (why (b) does or does not zoom consistently): `probe` (fresh generators, 3×3 against
1×1 convolutions), `distill CKPT` (the teacher loss alone from a phase-1 checkpoint) and
`scale-branch CKPT` (a phase-2 G with and without its scale conditioning).

Outputs in `out`: datasets, runs per seed and arm, `results.json`, `results.md` (the tables),
`pswd.png` (the plot), `trend.png` (along phase 2) and `renders.png` (one latent at p, 4p, 8p for
both arms). Every evaluation is cached beside its run and reused when the command is run again.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import typer
from PIL import Image

from anyres_data.build import BuildSettings, build
from anyres_data.settings import from_dict, setting, to_dict, typer_options
from anyres_data.sources import SourceSettings
from anyres_data.sources.demo import DemoSettings, iter_demo, render_demo
from anyres_data.spec import PatchSpec, specs_to_tensor
from anyres_model.checkpoint import load_generator, run_checkpoint_path
from anyres_model.metrics.fakes import global_images, lanczos_windows, latents, patches, to_uint8, whole_images
from anyres_model.metrics.swd import DescriptorSet, swd
from anyres_model.networks.generator import Generator
from anyres_model.networks.presets import preset
from anyres_model.render import render
from anyres_model.teacher import teacher_loss
from anyres_model.train import train
from anyres_model.train_config import TrainConfig

ARMS = ("lr_only", "anyres")
SCALES = (2, 4, 8)


@dataclass(frozen=True)
class ExperimentSettings:
    """The experiment's knobs; lengths in kimg (thousands of real samples)."""

    out: Path = setting(Path("runs/experiment"), "Folder for datasets, runs and results.")
    data: Path | None = setting(
        None, "Folder of the LR and HR sets (built there if missing); None: OUT/data. Experiments can share one."
    )
    seeds: tuple[int, ...] = setting((0, 1), "Training seeds (one run of each arm per seed).")
    lr_count: int = setting(2000, "Images in the LR set, each p×p.")
    hr_count: int = setting(60, "Images in the HR set, sides in [2p, 8p] (3% of the LR set).")
    phase1_kimg: float = setting(20.0, "Phase 1 length shared by both arms.")
    phase2_kimg: float = setting(20.0, "Extra length: phase 1 continued (a) or phase 2 (b).")
    batch: int = setting(16, "Batch size.")
    teacher_weight: float = setting(5.0, "λ of the teacher loss in phase 2.")
    eval_count: int = setting(1000, "Ground-truth images (and patches) per evaluated scale.")
    workers: int = setting(0, "Loader workers (0: in the training process, fastest on 2 cores for p = 32).")
    conv_kernel: int | None = setting(
        None, "Kernel of G's modulated convolutions; None: the preset's 3 (StyleGAN3-T, the paper's); 1 as StyleGAN3-R."
    )
    threads: int | None = setting(None, "torch threads per training run; None: the free cores.")

    def __post_init__(self) -> None:
        step_images = 1000 * self.phase1_kimg / self.batch
        if not math.isclose(step_images, round(step_images)):
            raise ValueError("phase1_kimg × 1000 must be a multiple of the batch (phase 2 starts at that step)")
        every = self.phase2_kimg / TREND_POINTS  # the snapshot interval: phase 2 starts from a snapshot
        if not math.isclose(self.phase1_kimg / every, round(self.phase1_kimg / every)):
            raise ValueError(f"phase1_kimg must be a multiple of phase2_kimg / {TREND_POINTS} (phase 2 starts there)")


P = 32  # the tiny preset's patch size
CONSISTENCY_COUNT = 200  # latents (and ground-truth images) of the consistency measure
TREND_POINTS = 4  # phase-2 checkpoints evaluated for the trend (the last is the final one)
TREND_COUNT = 300  # ground-truth patches per scale at each trend point


def build_sets(cfg: ExperimentSettings) -> tuple[Path, Path]:
    """The LR set (p×p) and the HR set (sides 2p–8p), built by `anyres-data build` from the demo source (resumable)."""
    paths = []
    for name, count, lo, hi, seed in (
        ("lr", cfg.lr_count, P, P, 100),
        ("hr", cfg.hr_count, 2 * P, 8 * P, 200),
    ):
        out = (cfg.data or cfg.out / "data") / name
        demo = DemoSettings(count=count, seed=seed, min_side=lo, max_side=hi)
        settings = BuildSettings(
            source="demo",
            out=str(out),
            sources=SourceSettings(demo=demo),
            shard_size=250 if name == "lr" else 10,
            workers=0,
            progress=False,
            resume=(out / "_work").exists(),
        )
        if not (out / "manifest.parquet").exists():
            build(settings)
        paths.append(out)
    return paths[0], paths[1]


def train_config(cfg: ExperimentSettings, run_dir: Path, *, seed: int, **overrides) -> TrainConfig:
    base = {
        "run_dir": str(run_dir),
        "preset": "tiny",
        "snapshot_kimg": cfg.phase2_kimg / TREND_POINTS,  # phase 2 checkpoints for the trend
        "image_kimg": cfg.phase2_kimg,
        "log_every": 25,
        "device": "cpu",
        "lpips": "none",
        "teacher_weight": cfg.teacher_weight,
        "conv_kernel": cfg.conv_kernel,
        "threads": cfg.threads,
        "data": {"batch_size": cfg.batch, "workers": cfg.workers, "seed": seed, "shuffle_buffer": 500},
        "sampler": {"p": P},
    }
    for key, value in overrides.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) else value
    return from_dict(TrainConfig, base)


def train_arms(cfg: ExperimentSettings, lr: Path, hr: Path, seed: int) -> dict[str, Path]:
    """Phase 1 → (b) phase 2 from its checkpoint at phase1_kimg → (a) phase 1 continued. Each step resumes."""
    root = cfg.out / f"seed{seed}"
    phase1 = root / "lr_only"
    total = cfg.phase1_kimg + cfg.phase2_kimg
    common = dict(seed=seed, resume=True)
    train(train_config(cfg, phase1, phase="global", total_kimg=cfg.phase1_kimg, data={"hr": str(lr)}, **common))
    start = run_checkpoint_path(phase1, round(1000 * cfg.phase1_kimg / cfg.batch))
    anyres = train(
        train_config(
            cfg,
            root / "anyres",
            phase="patch",
            init=str(start),
            total_kimg=cfg.phase2_kimg,
            data={"hr": str(hr), "lr": str(lr)},
            **common,
        )
    )
    lr_only = train(train_config(cfg, phase1, phase="global", total_kimg=total, data={"hr": str(lr)}, **common))
    return {"lr_only": lr_only, "anyres": anyres}


def trend_checkpoints(cfg: ExperimentSettings, seed: int) -> dict[str, list[tuple[float, Path]]]:
    """Per arm, (kimg after phase 1, checkpoint) at TREND_POINTS + 1 evenly spaced lengths; 0 is phase 1's end."""
    root = cfg.out / f"seed{seed}"

    def step(kimg: float) -> int:  # a snapshot is written at the first step that reaches its kimg
        return math.ceil(round(1000 * kimg) / cfg.batch)

    lengths = [cfg.phase2_kimg * i / TREND_POINTS for i in range(TREND_POINTS + 1)]
    start = run_checkpoint_path(root / "lr_only", step(cfg.phase1_kimg))
    return {
        "lr_only": [(k, run_checkpoint_path(root / "lr_only", step(cfg.phase1_kimg + k))) for k in lengths],
        "anyres": [(k, run_checkpoint_path(root / "anyres", step(k)) if k else start) for k in lengths],
    }


def eval_seeds(cfg: ExperimentSettings, set_seed: int = 999) -> list[int]:
    """Per-image seeds of held-out ground-truth landscapes (demo sets no training set uses: 999; 998 for the floor)."""
    demo = DemoSettings(count=cfg.eval_count, seed=set_seed, min_side=P, max_side=P)
    return [int(c.extra["demo_seed"]) for c in iter_demo(demo)]


def eval_specs(cfg: ExperimentSettings, scale: int) -> torch.Tensor:
    """One p×p window per held-out image of the (scale·p)² rendering, at integer offsets: (n, 4)."""
    rng = np.random.default_rng([7, scale])
    s = scale * P
    offsets = rng.integers(0, s - P + 1, size=(cfg.eval_count, 2))
    return specs_to_tensor([PatchSpec(float(s), float(x), float(y), P) for x, y in offsets])


def real_images(cfg: ExperimentSettings, scale: int, specs: torch.Tensor | None, seeds: list[int]) -> torch.Tensor:
    """Ground truth: each held-out landscape rendered at (scale·p)², cut to its window; uint8 (n, 3, p, p)."""
    s = scale * P
    out = []
    for i, image_seed in enumerate(seeds):
        pixels = render_demo(image_seed, s, s)
        if specs is not None:
            x0, y0 = int(specs[i, 1]), int(specs[i, 2])
            pixels = pixels[y0 : y0 + P, x0 : x0 + P]
        out.append(torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1))
    return torch.stack(out)


def descriptors(images: torch.Tensor, seed: int) -> DescriptorSet:
    d = DescriptorSet(seed=seed)
    for part in images.split(256):
        d.add(part)
    return d


@torch.no_grad()
def fake_images(G, cfg: ExperimentSettings, specs: torch.Tensor | None, *, mode: str, seed: int) -> torch.Tensor:
    """uint8 (n, 3, p, p): G's global images (specs None), G rendering the specs, or Lanczos upsampling of G(z)."""
    out = []
    for start in range(0, cfg.eval_count, 100):
        index = np.arange(start, min(start + 100, cfg.eval_count))
        z = latents(seed, index, G.cfg.z_dim)
        if specs is None:
            out.append(global_images(G, z))
        elif mode == "model":
            out.append(patches(G, z, specs[index]))
        else:
            out.append(lanczos_windows(global_images(G, z), specs[index]))
    return torch.cat(out)


def fake_swd(
    G, cfg: ExperimentSettings, specs: torch.Tensor | None, reals: torch.Tensor, *, mode: str, seed: int
) -> float:
    """(p)SWD ×1e3 between `reals` and G's images for the same specs (see fake_images for `mode`)."""
    fakes = fake_images(G, cfg, specs, mode=mode, seed=seed)
    return swd(descriptors(reals, 2), descriptors(fakes, 2), seed=2).mean


def reduction_gap(big: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Per image, mean |Lanczos reduction of `big` to the size of `base` − base|, in [-1, 1] units.

    big: uint8 (B, 3, S, S); base: uint8 (B, 3, p, p). Returns (B,) float.
    """
    size = base.shape[-1]
    pixels = big.permute(0, 2, 3, 1).numpy()
    small = np.stack([np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.LANCZOS)) for a in pixels])
    reduced = torch.from_numpy(small).permute(0, 3, 1, 2).to(torch.float32)
    return (reduced - base.to(torch.float32)).abs().flatten(1).mean(1) / 127.5


@torch.no_grad()
def consistency(G, *, seed: int, count: int = CONSISTENCY_COUNT) -> dict[str, float]:
    """How far G's image rendered at s×s, reduced to p×p, lies from its own p×p image (mean over `count` latents).

    The teacher loss asks for exactly this (window by window); 0 is a model that zooms in without
    changing its picture, and two different latents of a phase-1 model differ by about 0.4.
    """
    z = latents(seed, np.arange(count), G.cfg.z_dim)
    base = global_images(G, z)
    return {str(scale): float(reduction_gap(whole_images(G, z, scale * P), base).mean()) for scale in SCALES}


def cached(path: Path, key: dict, compute) -> dict:
    """`compute()`'s result, stored at `path` with `key`; reused while the key (checkpoint, settings) is the same."""
    if path.exists():
        stored = json.loads(path.read_text())
        if stored["key"] == key:
            return stored["values"]
    values = compute()
    path.write_text(json.dumps({"key": key, "values": values}, indent=2))
    return values


def evaluate_all(cfg: ExperimentSettings, runs: dict[int, dict[str, Path]]) -> dict:
    """SWD at p and pSWD at 2p, 4p, 8p for every seed, arm and mode, plus the real-vs-real noise floor.

    Each result is stored beside its run and reused when the experiment is run again.
    """
    scales = (1, *SCALES)
    ground_truth: dict[int, tuple[torch.Tensor | None, torch.Tensor]] = {}

    def reals(scale: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        if scale not in ground_truth:
            specs = None if scale == 1 else eval_specs(cfg, scale)
            ground_truth[scale] = (specs, real_images(cfg, scale, specs, eval_seeds(cfg)))
        return ground_truth[scale]

    def floor() -> dict[str, float]:
        out = {}
        for scale in scales:
            specs, images = reals(scale)
            others = real_images(cfg, scale, specs, eval_seeds(cfg, set_seed=998))  # as many other landscapes
            out[str(scale)] = swd(descriptors(images, 2), descriptors(others, 2), seed=2).mean
        return out

    def scores(checkpoint: Path, mode: str, seed: int) -> dict[str, float]:
        G = load_generator(checkpoint)
        out = {}
        for scale in scales:
            specs, images = reals(scale)
            out[str(scale)] = fake_swd(G, cfg, specs, images, mode=mode, seed=10_000 + seed)
        return out

    consistency_count = min(CONSISTENCY_COUNT, cfg.eval_count)

    def truth_consistency() -> dict[str, float]:
        seeds = eval_seeds(cfg)[:consistency_count]
        base = real_images(cfg, 1, None, seeds)
        return {str(k): float(reduction_gap(real_images(cfg, k, None, seeds), base).mean()) for k in SCALES}

    key = {"eval_count": cfg.eval_count, "p": P, "version": 2}
    results: dict = {"settings": to_dict(cfg), "runs": {}, "consistency": {}}
    results["floor"] = cached(cfg.out / "eval-floor.json", key, floor)
    results["consistency"]["ground truth"] = cached(cfg.out / "eval-consistency-floor.json", key, truth_consistency)
    for seed, arms in runs.items():
        for arm, checkpoint in arms.items():
            run_key = {**key, "checkpoint": checkpoint.name, "seed": seed}
            for mode in ("model", "upsample"):
                path = checkpoint.parent.parent / f"eval-{mode}.json"
                results["runs"][f"{arm}/{mode}/seed{seed}"] = cached(
                    path, run_key, lambda c=checkpoint, m=mode, s=seed: scores(c, m, s)
                )
            path = checkpoint.parent.parent / "eval-consistency.json"
            measure = lambda c=checkpoint, s=seed: consistency(  # noqa: E731
                load_generator(c), seed=10_000 + s, count=consistency_count
            )
            results["consistency"][f"{arm}/seed{seed}"] = cached(path, run_key, measure)

    def trend_point(checkpoint: Path, arm: str, seed: int) -> dict:
        G = load_generator(checkpoint)
        mode = "model" if arm == "anyres" else "upsample"
        n = min(TREND_COUNT, cfg.eval_count)
        small = dataclasses.replace(cfg, eval_count=n)
        out: dict = {}
        for scale in (4, 8):
            specs, images = reals(scale)
            out[str(scale)] = fake_swd(G, small, specs[:n], images[:n], mode=mode, seed=10_000 + seed)
        if arm == "anyres":
            out["consistency"] = consistency(G, seed=10_000 + seed, count=min(TREND_COUNT // 3, consistency_count))
        return out

    results["trend"] = {}
    for seed in runs:
        for arm, points in trend_checkpoints(cfg, seed).items():
            rows = []
            for kimg, checkpoint in points:
                run = checkpoint.parent.parent.name  # (b)'s first point is phase 1's checkpoint: same file name
                path = cfg.out / f"seed{seed}" / "trend" / f"{arm}-{run}-{checkpoint.stem}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                run_key = {**key, "checkpoint": f"{run}/{checkpoint.name}", "seed": seed, "trend_count": TREND_COUNT}
                values = cached(path, run_key, lambda c=checkpoint, a=arm, s=seed: trend_point(c, a, s))
                rows.append({"kimg": kimg, **values})
            results["trend"][f"{arm}/seed{seed}"] = rows
    return results


def summarise(results: dict) -> list[dict]:
    """Rows of the table: mean ± spread (half the range) over seeds, per arm and evaluation mode."""
    rows = []
    labels = {
        "lr_only/upsample": "(a) LR only, Lanczos-upsampled",
        "lr_only/model": "(a) LR only, rendered at s (never trained there)",
        "anyres/model": "(b) any-res, rendered at s",
        "anyres/upsample": "(b) any-res, its p×p output Lanczos-upsampled",
    }
    for key, label in labels.items():
        runs = [v for k, v in results["runs"].items() if k.startswith(key + "/")]
        if not runs:
            continue
        row = {"arm": label, "seeds": len(runs)}
        for scale in ("1", "2", "4", "8"):
            values = np.array([r[scale] for r in runs])
            row[f"s={scale}p" if scale != "1" else "SWD @ p"] = (float(values.mean()), float(np.ptp(values) / 2))
        rows.append(row)
    floor = {"arm": "noise floor (real vs real)", "seeds": "–"}
    for scale in ("1", "2", "4", "8"):
        floor[f"s={scale}p" if scale != "1" else "SWD @ p"] = (results["floor"][scale], 0.0)
    rows.append(floor)
    return rows


def summarise_consistency(results: dict) -> list[dict]:
    """Rows of the consistency table: mean ± spread over seeds of the gap at 2p, 4p, 8p, per arm."""
    rows = []
    labels = {"lr_only": "(a) LR only, rendered at s", "anyres": "(b) any-res, rendered at s"}
    for key, label in labels.items():
        runs = [v for k, v in results["consistency"].items() if k.startswith(key + "/")]
        if runs:
            row = {"arm": label, "seeds": len(runs)}
            for scale in SCALES:
                values = np.array([r[str(scale)] for r in runs])
                row[f"s={scale}p"] = (float(values.mean()), float(np.ptp(values) / 2))
            rows.append(row)
    truth = results["consistency"]["ground truth"]
    rows.append({"arm": "ground truth", "seeds": "–", **{f"s={k}p": (truth[str(k)], 0.0) for k in SCALES}})
    return rows


def markdown(rows: list[dict], *, digits: int = 1) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}" if isinstance(v, tuple) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarise_trend(results: dict) -> list[dict]:
    """Rows of the trend table (mean over seeds): pSWD at 4p and 8p, and (b)'s consistency, by kimg after phase 1."""
    by_arm = {arm: [v for k, v in results["trend"].items() if k.startswith(arm + "/")] for arm in ARMS}
    rows = []
    for i, point in enumerate(by_arm["anyres"][0]):

        def mean(arm: str, field: str, scale: str | None = None, i=i) -> float:
            values = [run[i][field] if scale is None else run[i][field][scale] for run in by_arm[arm]]
            return float(np.mean(values))

        rows.append(
            {
                "kimg after phase 1": f"{point['kimg']:g}",
                "(a) upsampled, 4p": f"{mean('lr_only', '4'):.1f}",
                "(a) upsampled, 8p": f"{mean('lr_only', '8'):.1f}",
                "(b) rendered, 4p": f"{mean('anyres', '4'):.1f}",
                "(b) rendered, 8p": f"{mean('anyres', '8'):.1f}",
                **{f"(b) consistency, {k}p": f"{mean('anyres', 'consistency', str(k)):.3f}" for k in SCALES},
            }
        )
    return rows


def report(results: dict) -> str:
    """The markdown of results.md: the SWD table, the consistency table, and the trend over phase 2."""
    seeds = len(results["trend"]) // len(ARMS)
    return (
        markdown(summarise(results))
        + "\n\nConsistency: mean |render at s, Lanczos-reduced to p×p − the p×p image| in [-1, 1] "
        + "(the teacher loss's measure; two different latents ≈ 0.4):\n\n"
        + markdown(summarise_consistency(results), digits=3)
        + f"\n\nAlong phase 2 (mean of {seeds} seed(s); pSWD on {TREND_COUNT} patches per scale, "
        + f"consistency on {TREND_COUNT // 3} latents; 0 kimg is the shared phase-1 model):\n\n"
        + markdown(summarise_trend(results))
        + "\n"
    )


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    xs = [1, 2, 4, 8]
    for row in rows:
        values = list(row.values())[2:]
        ax.errorbar(xs, [v[0] for v in values], yerr=[v[1] for v in values], marker="o", capsize=3, label=row["arm"])
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, ["p (SWD)", "2p", "4p", "8p"])
    ax.set_xlabel("scale s of the evaluated patches")
    ax.set_ylabel("SWD ×1e3 (lower is better)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_trend(results: dict, path: Path) -> None:
    """pSWD at 4p and 8p and (b)'s consistency along phase 2 (every seed drawn)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    styles = {"4": ("o", "-"), "8": ("s", "--")}  # marker, line
    for name, rows in sorted(results["trend"].items()):
        arm, seed = name.split("/")
        xs = [r["kimg"] for r in rows]
        label = "(b) rendered" if arm == "anyres" else "(a) upsampled"
        for scale, (marker, line) in styles.items():
            left.plot(
                xs,
                [r[scale] for r in rows],
                marker=marker,
                alpha=0.8,
                label=f"{label}, {scale}p, {seed}",
                color="C1" if arm == "anyres" else "C0",
                markersize=4,
                linestyle=line,
            )
        if arm == "anyres":
            for j, k in enumerate(SCALES):
                right.plot(xs, [r["consistency"][str(k)] for r in rows], "o-", color=f"C{j + 2}", label=f"{k}p, {seed}")
    truth = results["consistency"]["ground truth"]
    right.axhline(float(np.mean(list(truth.values()))), color="k", linestyle=":", label="ground truth")
    left.set_xlabel("kimg after phase 1 ((a): phase 1 continued; (b): phase 2)")
    left.set_ylabel("pSWD ×1e3 (lower is better)")
    left.legend(fontsize=6)
    right.set_xlabel("kimg of phase 2")
    right.set_ylabel("consistency (lower is better; other latents ≈ 0.4)")
    right.set_ylim(bottom=0)
    right.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


@torch.no_grad()
def renders(runs: dict[int, dict[str, Path]], path: Path, *, latent_seed: int = 0) -> None:
    """One latent at p, 4p, 8p: (a) upsampled with Lanczos, (b) rendered; both shown at 8p pixels."""
    seed = min(runs)
    rows = []
    for arm in ARMS:
        G = load_generator(runs[seed][arm])
        z = latents(latent_seed, [0], G.cfg.z_dim)
        panels = []
        for scale in (1, 4, 8):
            if arm == "lr_only" or scale == 1:
                base = Image.fromarray(to_uint8(G(z))[0].permute(1, 2, 0).numpy())
                image = base.resize((scale * P, scale * P), Image.Resampling.LANCZOS)
            else:
                image = Image.fromarray(to_uint8(render(G, z, scale * P))[0].permute(1, 2, 0).numpy())
            panels.append(np.asarray(image.resize((8 * P, 8 * P), Image.Resampling.NEAREST)))
        rows.append(np.concatenate(panels, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def run(cfg: ExperimentSettings) -> Path:
    """Build the data, train every arm for every seed, evaluate, write the report. Resumable."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    lr, hr = build_sets(cfg)
    runs = {seed: train_arms(cfg, lr, hr, seed) for seed in cfg.seeds}
    results = evaluate_all(cfg, runs)
    (cfg.out / "results.json").write_text(json.dumps(results, indent=2))
    (cfg.out / "results.md").write_text(report(results))
    plot(summarise(results), cfg.out / "pswd.png")
    plot_trend(results, cfg.out / "trend.png")
    renders(runs, cfg.out / "renders.png")
    typer.echo(report(results))
    return cfg.out


@torch.no_grad()
def zoom_probe(*, conv_kernel: int, seed: int, count: int = 32) -> dict[str, float]:
    """A freshly initialised tiny G: its consistency at 2p, 4p, 8p relative to the gap between two of its latents.

    1 means the zoomed render is as different from the base image as another latent's image is.
    The magnitude averages are warmed up first, as training would, so every layer sees normalised input.
    """
    g_cfg = dataclasses.replace(preset("tiny")[0], conv_kernel=conv_kernel)
    torch.manual_seed(seed)
    G = Generator(g_cfg).eval()
    for _ in range(30):
        G(torch.randn(16, g_cfg.z_dim), update_emas=True)
    base = global_images(G, latents(seed, np.arange(count), g_cfg.z_dim)).to(torch.float32)
    other = float((base - base.roll(1, 0)).abs().mean() / 127.5)
    return {str(k): v / other for k, v in consistency(G, seed=seed, count=count).items()}


@torch.no_grad()
def scale_branch_ablation(checkpoint: Path, *, count: int = 300) -> dict[str, dict[str, float]]:
    """A phase-2 G as trained and with its scale branch zeroed: is the scale conditioning what breaks the zoom?

    Zeroing the branch gives the unconditioned network (tested in the model's tests), so the
    difference is what the scale embedding contributes: consistency on count // 3 latents and
    pSWD at 2p, 4p, 8p on `count` held-out patches.
    """
    cfg = ExperimentSettings(eval_count=count)
    truth = {}
    for scale in SCALES:  # the same held-out patches for both generators
        specs = eval_specs(cfg, scale)
        truth[scale] = (specs, real_images(cfg, scale, specs, eval_seeds(cfg)))
    out = {}
    for name in ("as trained", "scale branch zeroed"):
        G = load_generator(checkpoint)
        if name != "as trained":
            for param in G.scale_branch_parameters():
                param.zero_()
        row = {f"consistency {k}p": v for k, v in consistency(G, seed=10_000, count=max(count // 3, 1)).items()}
        for scale, (specs, reals) in truth.items():
            row[f"pSWD {scale}p"] = fake_swd(G, cfg, specs, reals, mode="model", seed=10_000)
        out[name] = row
    return out


def distill(checkpoint: Path, *, steps: int, lr: float, batch: int = 16, seed: int = 0, count: int = 48) -> list[dict]:
    """Teacher loss only (no discriminator) from a phase-1 checkpoint: how fast can G learn to zoom consistently?

    Specs as in phase 2 (half global; else s uniform in [p, 8p], window uniform). Returns the
    consistency every `steps // 4` steps.
    """
    G = load_generator(checkpoint).train()
    teacher = copy.deepcopy(G).eval().requires_grad_(False)
    opt = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-8)
    rng = torch.Generator().manual_seed(seed)
    history = []
    for step in range(steps + 1):
        if step % max(steps // 4, 1) == 0:
            G.eval()
            history.append({"step": step, "kimg": step * batch / 1000, **consistency(G, seed=10_000, count=count)})
            G.train()
        if step == steps:
            break
        s = torch.where(torch.rand(batch, generator=rng) < 0.5, P, P + 7 * P * torch.rand(batch, generator=rng))
        s = s.to(torch.float64)
        corner = torch.rand(batch, 2, generator=rng, dtype=torch.float64) * (s - P)[:, None]
        specs = torch.cat([s[:, None], corner, torch.full_like(s[:, None], P)], dim=1)  # (B, 4)
        z = torch.randn(batch, G.cfg.z_dim, generator=rng)
        loss = teacher_loss(G(z, specs), specs, teacher(z), None).total.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return history


def _command(cfg: ExperimentSettings) -> None:
    """Run (or continue) the experiment and print its table."""
    out = run(cfg)
    typer.echo(f"results in {out}")


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])
app.command("run")(typer_options(ExperimentSettings, _command))
app.command("settings")(lambda: typer.echo(json.dumps(to_dict(ExperimentSettings()), indent=2)))


@app.command("probe")
def _probe(seeds: int = typer.Option(2, help="Fresh generators per kernel size.")) -> None:
    """Zoom consistency of freshly initialised generators, 3×3 against 1×1 convolutions (relative to other latents)."""
    for kernel in (3, 1):
        for seed in range(seeds):
            values = {k: round(v, 2) for k, v in zoom_probe(conv_kernel=kernel, seed=seed).items()}
            typer.echo(f"conv_kernel {kernel}, seed {seed}: {values}")


@app.command("distill")
def _distill(
    checkpoint: Path = typer.Argument(..., help="A phase-1 checkpoint (the teacher and the start)."),
    steps: int = typer.Option(600, help="Optimiser steps of batch 16."),
    lr: float = typer.Option(0.0025, help="Adam learning rate."),
) -> None:
    """Train G on the teacher loss alone and print its consistency along the way."""
    for row in distill(checkpoint, steps=steps, lr=lr):
        typer.echo(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))


@app.command("scale-branch")
def _scale_branch(
    checkpoint: Path = typer.Argument(..., help="A phase-2 checkpoint."),
    count: int = typer.Option(300, help="Held-out patches per scale."),
) -> None:
    """Consistency and pSWD of a phase-2 G as trained and with its scale branch zeroed."""
    for name, row in scale_branch_ablation(checkpoint, count=count).items():
        typer.echo(f"{name}: " + json.dumps({k: round(v, 3) for k, v in row.items()}))


if __name__ == "__main__":
    app()
