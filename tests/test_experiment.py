"""pipelines.experiment end to end at a toy size: data, every arm, the selection, evaluation, report, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from anyres_data.settings import from_dict
from anyres_data.sources.demo import render_demo
from pipelines.experiment import data, measure
from pipelines.experiment.diagnostics import evaluation_spread, scale_branch_ablation, teacher_gap
from pipelines.experiment.run import run
from pipelines.experiment.settings import ABLATIONS, BASE, ExperimentSettings


def toy(tmp_path, **overrides) -> ExperimentSettings:
    settings = {
        "out": str(tmp_path / "exp"),
        "seeds": [0, 1],
        "preset": "tiny",
        "lr_count": 24,
        "hr_uniform_count": 4,
        "hr_full_count": 2,
        "phase1_kimg": 0.016,
        "phase2_kimg": 0.016,  # phase 2 ends at phase 1's step: same checkpoint names
        "batch": 8,
        "eval_count": 4,
        "whole_count": 2,
        "consistency_count": 1,
        "trend_count": 2,
        "trend_latents": 1,
        "threads": 1,
        "grid_kimg": 0,
        **overrides,
    }
    return from_dict(ExperimentSettings, settings)


def test_toy_experiment_runs_end_to_end_and_resumes(tmp_path):
    cfg = toy(tmp_path, ablation_kimg=0.008)  # ablations stop half-way; the base is read at that length
    out = run(cfg)
    results = json.loads((out / "results.json").read_text())
    chosen = results["selection"]["chosen"]
    assert set(results["selection"]["values"]) == {BASE.name, *(a.name for a in ABLATIONS)}
    assert results["selection"]["values"][chosen] == min(results["selection"]["values"].values())
    chosen_run = f"anyres-{chosen}"
    for seed in (0, 1):
        assert f"lr_only/upsample/seed{seed}" in results["runs"] and f"{chosen_run}/model/seed{seed}" in results["runs"]
    for ablation in ABLATIONS:  # one seed only, at ablation_kimg; the chosen one continues to phase2_kimg
        assert results["ablation"][ablation.name]["kimg"] == 0.008
        assert f"{ablation.run_name}/model/seed1" not in results["runs"] or ablation.name == chosen
        log = (out / "seed0" / ablation.run_name / "log.csv").read_text().splitlines()[-1]
        assert log.startswith("0.016" if ablation.name == chosen else "0.008")
    assert results["ablation"]["lr_only"]["scores"]["random"] >= 0  # (a) read at the same length
    for row in results["runs"].values():
        assert set(measure.WHOLE_METRICS) | set(measure.PATCH_METRICS) <= set(row) and all(v >= 0 for v in row.values())
    assert {"consistency_2", "consistency_4"} <= set(results["runs"][f"{chosen_run}/model/seed0"])
    assert set(results["consistency"]["ground truth"]) == {"2", "4", "8"}
    # realised coverage from the specs training drew: the s ≥ p ablation draws below 2p, the others never do
    assert results["coverage"][f"{chosen_run}/seed0"]["samples"] == 16
    s_from_p = results["ablation"]["s_from_p"]["coverage"]
    assert s_from_p["samples"] == 8  # counted at the ablation's length, even if it was then continued
    table = (out / "results.md").read_text()
    for heading in ("Final table", "Consistency", "Ablations", "Realised coverage", "Along phase 2", "extrapolation"):
        assert heading in table
    assert "L1 + Laplacian-pyramid L1" in table or "L1 + LPIPS" in table
    for picture in ("pswd.png", "trend.png", "renders.png"):
        assert (out / picture).stat().st_size > 0
    # phase 2 records what the arm asked for
    saved = json.loads((out / "seed0" / "anyres-element_mixing" / "config.json").read_text())
    assert saved["sampler"]["global_mixing"] == "element" and saved["sampler"]["scale_max"] == 0.5
    assert not saved["patch_ema_rampup"]
    assert json.loads((out / "seed0" / "anyres-l1_only" / "config.json").read_text())["teacher_structure"] == "none"
    # the lengths are what was asked: phase 1 continued to phase1 + phase2 kimg for (a), phase 2 for (b)
    assert (out / "seed0" / "lr_only" / "log.csv").read_text().splitlines()[-1].startswith("0.032")
    assert (out / "seed0" / "anyres-base" / "log.csv").read_text().splitlines()[-1].startswith("0.016")
    trend = results["trend"][f"{chosen_run}/seed0"]
    assert [row["kimg"] for row in trend] == [0, 0.004, 0.008, 0.012, 0.016]
    assert trend[0]["consistency"] != trend[-1]["consistency"]  # the first point is phase 1's G, the last phase 2's
    # rerunning finds everything done and gives the same numbers
    run(cfg)
    assert json.loads((out / "results.json").read_text())["runs"] == results["runs"]
    # --final-arm overrides the rule for the final table; the rule's pick is still reported
    forced = json.loads((run(toy(tmp_path, ablation_kimg=0.008, final_arm="base")) / "results.json").read_text())
    assert forced["selection"]["chosen"] == chosen and forced["selection"]["final"] == "base"
    assert "anyres-base/model/seed1" in forced["runs"]
    assert (chosen == "base") or f"The rule chose **{chosen}**" in (out / "results.md").read_text()
    # the scale-branch diagnostic: zeroing the branch of a phase-2 G changes its renders at s > p
    checkpoint = sorted((out / "seed0" / "anyres-base" / "checkpoints").glob("*.pt"))[-1]
    ablation = scale_branch_ablation(checkpoint, toy(tmp_path, eval_count=2))
    assert ablation["as trained"] != ablation["scale branch zeroed"]
    # the evaluation's spread: the table's seed gives the table's number, other seeds other numbers
    spread = evaluation_spread(checkpoint, cfg, seeds=2)
    assert spread[10_000] == pytest.approx(forced["runs"]["anyres-base/model/seed0"]["random"])
    assert spread[20_001] != spread[10_000]
    # the teacher gap: a student against itself is no gap; against phase 1's G some
    phase1 = sorted((out / "seed0" / "lr_only" / "checkpoints").glob("*.pt"))[0]
    assert teacher_gap(checkpoint, checkpoint, count=2)["own p vs teacher p"] == 0
    gap = teacher_gap(phase1, checkpoint, count=2)
    assert gap["own p vs teacher p"] > 0
    assert set(gap) == {"own p vs teacher p", *(f"{k}p vs {w} p" for k in (2, 4) for w in ("own", "teacher"))}


def test_reduction_gap_is_small_for_a_true_zoom_and_large_for_another_image():
    """The consistency measure: ground truth rendered at 8p and reduced is (nearly) its own p×p image."""

    def image(seed: int, size: int) -> torch.Tensor:
        return torch.from_numpy(render_demo(seed, size, size).copy()).permute(2, 0, 1)[None]

    p = 64
    zoomed = torch.cat([image(5, 8 * p), image(6, 8 * p)])
    same = measure.reduction_gap(zoomed, torch.cat([image(5, p), image(6, p)]))
    other = measure.reduction_gap(zoomed, torch.cat([image(6, p), image(5, p)]))
    assert same.shape == (2,) and float(same.max()) < 0.06  # the demo's renders agree to ≈ 30 dB across sizes
    assert float(other.min()) > 0.1


def test_random_specs_follow_the_hr_sets_scales_and_ground_truth_is_where_the_spec_says(tmp_path):
    cfg = toy(tmp_path, preset="tiny64", hr_uniform_count=50, hr_full_count=10)
    sides = data.hr_sides(cfg)
    assert sides.min() >= 128 and sides.max() == 256 and np.sum(sides == 256) >= 10
    specs = data.random_specs(cfg, 400)
    s = specs[:, 0].numpy()
    assert (
        s.min() >= 128 and s.max() <= 256 and (specs[:, 1:3] >= 0).all() and (specs[:, 1:3] <= specs[:, :1] - 64).all()
    )
    assert 150 < s.mean() < 200  # uniform in [2p, m] for m uniform in [2p, 4p], with a sixth at 4p: E[s] ≈ 176
    # a window of the ground truth is the crop of the whole rendering at its s
    spec = specs[:1]
    window = data.real_windows(spec, [12345])[0]
    s0, x0, y0 = (int(v) for v in spec[0, :3])
    whole = torch.from_numpy(render_demo(12345, s0, s0).copy()).permute(2, 0, 1)
    assert torch.equal(window, whole[:, y0 : y0 + 64, x0 : x0 + 64])
    with pytest.raises(ValueError, match="hr_max_side"):
        toy(tmp_path, hr_max_side=1.5)
