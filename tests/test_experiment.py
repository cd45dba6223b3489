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
            "phase2_kimg": 0.008,
            "batch": 8,
            "eval_count": 6,
        },
    )
    out = exp.run(cfg)
    results = json.loads((out / "results.json").read_text())
    assert set(results["runs"]) == {f"{arm}/{mode}/seed0" for arm in exp.ARMS for mode in ("model", "upsample")}
    for row in results["runs"].values():
        assert set(row) == {"1", "2", "4", "8"} and all(v >= 0 for v in row.values())
    table = (out / "results.md").read_text()
    assert "(b) any-res, rendered at s" in table and "noise floor" in table
    assert (out / "pswd.png").stat().st_size > 0 and (out / "renders.png").stat().st_size > 0
    # the lengths are what was asked: phase 1 continued to phase1 + phase2 kimg for (a), phase 2 for (b)
    logs = {arm: (out / "seed0" / arm / "log.csv").read_text().splitlines() for arm in exp.ARMS}
    assert logs["lr_only"][-1].startswith("0.024") and logs["anyres"][-1].startswith("0.008")
    # rerunning finds everything done and gives the same numbers
    exp.run(cfg)
    assert json.loads((out / "results.json").read_text())["runs"] == results["runs"]
