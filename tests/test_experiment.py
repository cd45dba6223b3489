"""pipelines/experiment.py end to end at a toy size: data, both arms, evaluation, report."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from anyres_data.settings import from_dict

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"


def load_experiment():
    spec = importlib.util.spec_from_file_location("experiment", PIPELINES / "experiment.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["experiment"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_toy_experiment_runs_end_to_end_and_resumes(tmp_path):
    exp = load_experiment()
    cfg = from_dict(
        exp.ExperimentSettings,
        {
            "out": str(tmp_path / "exp"),
            "seeds": [0],
            "lr_count": 24,
            "hr_count": 4,
            "phase1_kimg": 0.016,
            "phase2_kimg": 0.016,  # phase 2 ends at phase 1's step: same checkpoint names
            "batch": 8,
            "eval_count": 6,
        },
    )
    out = exp.run(cfg)
    results = json.loads((out / "results.json").read_text())
    assert set(results["runs"]) == {f"{arm}/{mode}/seed0" for arm in exp.ARMS for mode in ("model", "upsample")}
    for row in results["runs"].values():
        assert set(row) == {"1", "2", "4", "8"} and all(v >= 0 for v in row.values())
    assert set(results["consistency"]) == {"ground truth", "lr_only/seed0", "anyres/seed0"}
    for row in results["consistency"].values():
        assert set(row) == {"2", "4", "8"} and all(0 <= v < 2 for v in row.values())
    table = (out / "results.md").read_text()
    assert "(b) any-res, rendered at s" in table and "noise floor" in table and "Consistency" in table
    assert (out / "pswd.png").stat().st_size > 0 and (out / "renders.png").stat().st_size > 0
    # the lengths are what was asked: phase 1 continued to phase1 + phase2 kimg for (a), phase 2 for (b)
    logs = {arm: (out / "seed0" / arm / "log.csv").read_text().splitlines() for arm in exp.ARMS}
    assert logs["lr_only"][-1].startswith("0.032") and logs["anyres"][-1].startswith("0.016")
    # rerunning finds everything done and gives the same numbers
    exp.run(cfg)
    assert json.loads((out / "results.json").read_text())["runs"] == results["runs"]
    trend = results["trend"]
    assert [row["kimg"] for row in trend["anyres/seed0"]] == [0, 0.004, 0.008, 0.012, 0.016]
    # the trend ends where the table is (same patches and latents at this size), not at phase 1's checkpoint
    final = {"lr_only": results["runs"]["lr_only/upsample/seed0"], "anyres": results["runs"]["anyres/model/seed0"]}
    for arm in exp.ARMS:
        assert {k: trend[f"{arm}/seed0"][-1][k] for k in ("4", "8")} == {k: final[arm][k] for k in ("4", "8")}
    assert trend["anyres/seed0"][-1]["consistency"] == results["consistency"]["anyres/seed0"]
    assert trend["anyres/seed0"][0]["consistency"] != trend["anyres/seed0"][-1]["consistency"]
    assert (out / "trend.png").stat().st_size > 0
    # the teacher-only probe trains and measures (at a toy size)
    history = exp.distill(exp.trend_checkpoints(cfg, 0)["anyres"][0][1], steps=2, lr=0.001, batch=4, count=2)
    assert [row["step"] for row in history] == [0, 1, 2] and all(0 <= row["8"] < 2 for row in history)
    # the scale-branch ablation: zeroing the branch of a phase-2 G changes its renders at s > p
    ablation = exp.scale_branch_ablation(exp.trend_checkpoints(cfg, 0)["anyres"][-1][1], count=3)
    trained, zeroed = ablation["as trained"], ablation["scale branch zeroed"]
    assert set(trained) == {f"{m} {k}p" for m in ("consistency", "pSWD") for k in exp.SCALES}
    assert trained != zeroed and all(v >= 0 for v in zeroed.values())


def test_reduction_gap_is_small_for_a_true_zoom_and_large_for_another_image():
    """The consistency column's measure: ground truth rendered at 8p and reduced is (nearly) its own p×p image."""
    import torch

    from anyres_data.sources.demo import render_demo

    exp = load_experiment()

    def image(seed: int, size: int) -> torch.Tensor:
        return torch.from_numpy(render_demo(seed, size, size).copy()).permute(2, 0, 1)[None]

    p = exp.P
    zoomed = torch.cat([image(5, 8 * p), image(6, 8 * p)])
    same = exp.reduction_gap(zoomed, torch.cat([image(5, p), image(6, p)]))
    other = exp.reduction_gap(zoomed, torch.cat([image(6, p), image(5, p)]))
    assert same.shape == (2,) and float(same.max()) < 0.06  # the demo's renders agree to ≈ 30 dB across sizes
    assert float(other.min()) > 0.1
