"""The experiment from start to end: data → arms → measurements → report. Every step resumes.

Protocol (fixed before any result was seen):
1. On `ablation_seed`: phase 1, (b) with the base setting, (a); then each ablation (one factor of
   the base changed) from the same phase-1 checkpoint, for `ablation_kimg` of phase 2 (all of
   phase 2 unless set shorter); they are compared with the base's checkpoint at that length.
2. The setting for the final table is the (b) arm with the lowest random-scale pSWD on the
   ablation seed (the base unless an ablation beats it; a shortened ablation that wins is then
   trained to the full length). Its seed is reused in the final table, so that seed's numbers
   took part in the choice; the other seeds did not.
3. For every seed in `seeds`: phase 1, (a) and the chosen (b); all metrics; mean ± half the range.
   `final_arm` overrides the choice (the rule's pick is still reported), e.g. when its full-length
   run cannot be afforded.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from anyres_data.settings import to_dict
from anyres_model.checkpoint import load_generator
from pipelines.experiment import arms, measure, report
from pipelines.experiment.settings import ABLATIONS, ARMS_BY_NAME, BASE, AnyresArm, ExperimentSettings

SELECTION_METRIC = "random"


def checkpoint_name(checkpoint: Path) -> str:
    """RUN/checkpoint-N.pt (phase 2's and phase 1's checkpoints share file names: the run tells them apart)."""
    return f"{checkpoint.parent.parent.name}/{checkpoint.name}"


def eval_key(cfg: ExperimentSettings, name: str, **extra) -> dict:
    return {
        "checkpoint": name,
        "eval_count": cfg.eval_count,
        "whole_count": cfg.whole_count,
        "p": cfg.p,
        "hr_max_side": cfg.hr_max_side,
        **extra,
    }


class Evaluator:
    """Scores of checkpoints, computed once and cached beside their runs."""

    def __init__(self, cfg: ExperimentSettings) -> None:
        self.cfg = cfg
        self.truth = measure.GroundTruth(cfg)
        self.trend_truth = measure.GroundTruth(dataclasses.replace(cfg, eval_count=cfg.trend_count))

    def _generator(self, checkpoint: Path):
        return load_generator(checkpoint, map_location=self.cfg.device)

    def scores(self, checkpoint: Path, *, mode: str, seed: int, metrics=None) -> dict[str, float]:
        """The metrics of `measure` (all, or those named) for one checkpoint in one mode."""
        run = checkpoint.parent.parent.name
        suffix = "" if metrics is None else "-" + "-".join(metrics)
        path = checkpoint.parent.parent / "eval" / f"{run}-{checkpoint.stem}-{mode}{suffix}.json"
        key = eval_key(self.cfg, checkpoint_name(checkpoint), mode=mode, seed=seed, metrics=metrics)
        return measure.cached(
            path,
            key,
            lambda: measure.scores(
                self._generator(checkpoint), self.truth, mode=mode, seed=10_000 + seed, metrics=metrics
            ),
        )

    def consistency(self, checkpoint: Path, *, seed: int, rendered: dict | None = None) -> dict[str, float]:
        """Consistency at 2p and 4p (from the whole renders: `rendered`, the checkpoint's model-mode scores,
        when they were computed) and at 8p (consistency_count more latents)."""
        if rendered is None:
            rendered = self.scores(checkpoint, mode="model", seed=seed, metrics=["whole_2", "whole_4"])
        path = (
            checkpoint.parent.parent / "eval" / f"{checkpoint.parent.parent.name}-{checkpoint.stem}-consistency8.json"
        )
        count = self.cfg.consistency_count
        key = eval_key(self.cfg, checkpoint_name(checkpoint), count=count, seed=seed)
        far = measure.cached(
            path,
            key,
            lambda: measure.consistency(self._generator(checkpoint), seed=10_000 + seed, count=count, scales=(8,)),
        )
        return {"2": rendered["consistency_2"], "4": rendered["consistency_4"], "8": far["8"]}

    def trend_point(self, checkpoint: Path, *, run: str, mode: str, seed: int) -> dict:
        name = checkpoint.parent.parent.name  # phase 1's last checkpoint starts (b)'s trend: key by its folder
        path = self.cfg.out / f"seed{seed}" / "trend" / f"{run}-{name}-{checkpoint.stem}.json"
        key = eval_key(
            self.cfg, checkpoint_name(checkpoint), run=run, mode=mode, seed=seed, trend_count=self.cfg.trend_count
        )

        def compute() -> dict:
            G = self._generator(checkpoint)
            values = measure.scores(G, self.trend_truth, mode=mode, seed=10_000 + seed, metrics=["random", "patch_4"])
            values["consistency"] = measure.consistency(
                G, seed=10_000 + seed, count=self.cfg.trend_latents, scales=(2, 4)
            )
            return values

        return measure.cached(path, key, compute)


def coverage(run_dir: Path) -> dict:
    """The scales training really drew (written by the trainer at every snapshot)."""
    return json.loads((run_dir / "coverage.json").read_text())["rank0"]


def train_seed(cfg: ExperimentSettings, sets, seed: int, arm: AnyresArm) -> dict[str, Path]:
    """Phase 1 → (b) `arm` → (a) for one seed; returns the final checkpoints by run name."""
    arms.train_lr_only(cfg, sets, seed, total_kimg=cfg.phase1_kimg)
    anyres = arms.train_anyres(cfg, sets, arm, seed)
    lr_only = arms.train_lr_only(cfg, sets, seed, total_kimg=cfg.phase1_kimg + cfg.phase2_kimg)
    return {"lr_only": lr_only, arm.run_name: anyres}


def choose(results: dict, candidates: list[AnyresArm], seed: int) -> AnyresArm:
    """The protocol's step 2: the lowest random-scale pSWD on the ablation seed (the base on a tie)."""
    values = {a.name: results["ablation"][a.name]["scores"][SELECTION_METRIC] for a in candidates}
    best = min(candidates, key=lambda a: (values[a.name], a is not BASE))
    results["selection"] = {"metric": SELECTION_METRIC, "seed": seed, "values": values, "chosen": best.name}
    return best


def run(cfg: ExperimentSettings) -> Path:
    """Build the data, train and measure every arm, write the report. Rerun to continue."""
    from pipelines.experiment.data import build_sets

    cfg.out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # the evaluation's too (training sets its own)
    sets = build_sets(cfg)
    evaluator = Evaluator(cfg)
    results: dict = {
        "settings": to_dict(cfg),
        "runs": {},
        "consistency": {},
        "coverage": {},
        "trend": {},
        "ablation": {},
    }
    results["teacher_distance"] = {a.name: arms.teacher_distance(a) for a in (BASE, *ABLATIONS)}

    def measure_run(name: str, checkpoint: Path, seed: int, *, anyres: bool) -> None:
        modes = ("model", "upsample") if anyres else ("upsample",)
        for mode in modes:
            results["runs"][f"{name}/{mode}/seed{seed}"] = evaluator.scores(checkpoint, mode=mode, seed=seed)
        rendered = results["runs"][f"{name}/model/seed{seed}"] if anyres else None
        results["consistency"][f"{name}/seed{seed}"] = evaluator.consistency(checkpoint, seed=seed, rendered=rendered)
        if anyres:
            results["coverage"][f"{name}/seed{seed}"] = coverage(checkpoint.parent.parent)

    seed0 = cfg.ablation_seed
    length = cfg.ablation_length
    runs = {seed0: train_seed(cfg, sets, seed0, BASE)}
    candidates = {BASE: arms.anyres_checkpoint(cfg, BASE, seed0, length)}
    for arm in ABLATIONS:
        if arm.name in cfg.ablations:
            candidates[arm] = arms.train_anyres(cfg, sets, arm, seed0, total_kimg=length)
    for arm, checkpoint in candidates.items():
        scores = evaluator.scores(checkpoint, mode="model", seed=seed0)
        results["ablation"][arm.name] = {
            "kimg": length,
            "scores": scores,
            "consistency": {k: scores[f"consistency_{k}"] for k in ("2", "4")},  # the table's; 8p is the final's
            "coverage": coverage(checkpoint.parent.parent),
        }
    a_checkpoint = arms.lr_only_checkpoint(cfg, seed0, cfg.phase1_kimg + length)
    results["ablation"]["lr_only"] = {
        "kimg": length,
        "scores": evaluator.scores(a_checkpoint, mode="upsample", seed=seed0),
    }
    chosen = choose(results, list(candidates), seed0)
    if cfg.final_arm is not None:
        chosen = ARMS_BY_NAME[cfg.final_arm]
    results["selection"]["final"] = chosen.name
    if chosen is not BASE:  # an ablation chosen at a shorter length continues to the full one
        runs[seed0][chosen.run_name] = arms.train_anyres(cfg, sets, chosen, seed0)
    for seed in cfg.seeds:
        if seed != seed0:
            runs[seed] = train_seed(cfg, sets, seed, chosen)
        for name in ("lr_only", chosen.run_name):
            measure_run(name, runs[seed][name], seed, anyres=name != "lr_only")

    truth = evaluator.truth
    results["floor"] = measure.cached(
        cfg.out / "eval-floor.json",
        eval_key(cfg, "ground truth"),
        lambda: measure.floor(truth, measure.GroundTruth(cfg, set_seed=measure.data.FLOOR_SEED)),
    )
    results["consistency"]["ground truth"] = measure.truth_consistency(cfg)
    for seed in cfg.seeds:
        for name, continued, mode in (("lr_only", True, "upsample"), (chosen.run_name, False, "model")):
            run_dir = cfg.out / f"seed{seed}" / name
            points = arms.trend_checkpoints(cfg, run_dir, continued=continued)
            results["trend"][f"{name}/seed{seed}"] = [
                {"kimg": k, **evaluator.trend_point(c, run=name, mode=mode, seed=seed)} for k, c in points
            ]
    report.write(cfg, results, runs)
    return cfg.out
