"""The GPU check (tests/gpu/check.py) rehearsed on the CPU: same steps, processes and report, tiny sizes.

GPU time is rare; this keeps the one command that uses it working between loans.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.gpu.check import CPU_REHEARSAL, ROOT, STEPS, run_check, wheel_requirements


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> tuple[dict, Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("gpu-check")
    cmd = [sys.executable, "-m", "tests.gpu.check", str(out), "--cpu-rehearsal"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=560)
    assert (out / "report.json").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "report.json").read_text()), out, done


@pytest.mark.slow
def test_cpu_rehearsal_passes_every_step_and_reports_them(rehearsal):
    report, out, done = rehearsal
    failures = {s["name"]: s["errors"] for s in report["steps"] if s["status"] != "passed"}
    assert not failures, f"{failures}\n{done.stdout[-3000:]}"
    assert done.returncode == 0 and report["passed"] is True and report["mode"] == "cpu-rehearsal"
    assert report["settings"] == json.loads((out / "settings.json").read_text())
    assert [s["name"] for s in report["steps"]] == list(STEPS)
    for step in report["steps"]:
        assert step["errors"] == [] and step["returncode"] == 0 and step["seconds"] < step["time_box_s"]
        assert step["results"] and all(case["passed"] for case in step["results"].values()), step["name"]
        assert (out / step["log"]).exists()


@pytest.mark.slow
def test_cpu_rehearsal_measures_what_the_docs_describe(rehearsal):
    report, out, _ = rehearsal
    results = {s["name"]: s["results"] for s in report["steps"]}
    settings = CPU_REHEARSAL

    assert results["environment"]["torch"]["version"] and results["environment"]["packages"]["missing"] == []

    ops = results["ops"]
    dtypes = {name: {k for k in ops if k.endswith("/" + name)} for name, _ in settings.op_tolerances}
    assert all(dtypes.values()), dtypes  # every precision was compared
    for name, case in ops.items():
        if name.count("/") == 3:  # op/call/batch/dtype
            errors = {k: v for k, v in case.items() if k == "value" or k.startswith("grad_")}
            assert "value" in errors and len(errors) >= 2 and max(errors.values()) <= case["tolerance"], name
    assert {k.split("/")[2] for k in ops if k.startswith("modulated_conv2d/")} == {"b1", "b2"}
    assert ops["upfirdn2d/double_backward/float32"]["relative_error"] <= 1e-4

    generator = results["generator"]
    assert len(generator) == 2 * len(settings.gen_batches) * 2 * 2  # compile × batch × precision × pass
    assert all(case["ms_per_image"] > 0 for case in generator.values())
    compiled = [case for name, case in generator.items() if name.startswith("compiled/")]
    assert compiled and all("max_abs_diff_vs_eager" in c and "unique_graphs" in c["dynamo"] for c in compiled)

    phase2 = results["training"]["phase2"]
    assert phase2["measured_steps"] >= 1 and phase2["s_per_kimg"] > 0 and phase2["reference_s_per_kimg"] == 49.8
    assert 0 <= phase2["data_share"] <= 1 and phase2["batch"] == settings.train_batch
    assert phase2["memory_kind"] == "cpu_peak_rss_growth"

    tiled = results["rendering"]["tiled"]
    assert tiled["size"] == settings.render_size and tiled["tiles"] > 1
    assert results["rendering"]["tiled_vs_one_pass"]["max_abs_diff"] <= settings.agree_tolerance

    assert results["metrics"]["pswd"]["pswd"] > 0 and results["metrics"]["fid_features"]["images_per_s"] > 0

    files = [f for step in report["steps"] for f in step["files"]]
    assert set(files) == {"training-grid.png", "render-preview.png", "render-crop.png", "render-zoom.png"}
    with Image.open(out / "render-preview.png") as preview:
        assert preview.size == (settings.render_size, settings.render_size)


def test_a_step_over_its_time_box_is_stopped_and_the_next_still_runs(tmp_path):
    settings = dataclasses.replace(CPU_REHEARSAL, time_boxes=(0.5,) * len(STEPS))
    report = run_check(tmp_path, settings, mode="cpu-rehearsal", steps=("environment", "ops"))
    assert [s["name"] for s in report["steps"]] == ["environment", "ops"]
    assert [s["status"] for s in report["steps"]] == ["timed_out", "timed_out"] and not report["passed"]
    assert all("timed out" in s["errors"][-1] and s["seconds"] < 15 for s in report["steps"])
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(report))


def test_requirements_are_the_pins_without_the_cuda_builds():
    lines = wheel_requirements()
    names = {line.split("==")[0].split("[")[0] for line in lines}
    assert "torch" not in names and "torchvision" not in names
    assert {"webdataset", "pyvips", "lpips", "torch-fidelity"} <= names
    assert all("==" in line for line in lines)
