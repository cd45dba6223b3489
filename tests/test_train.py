"""Training: a tiny two-phase run end to end, exact resume, mirrored specs, and 2 CPU ranks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from anyres_data.settings import from_dict, to_dict
from anyres_data.spec import PatchSpec, spec_axes, specs_to_tensor
from anyres_model.checkpoint import load_checkpoint, load_generator
from anyres_model.checkpoint import run_checkpoints as checkpoints
from anyres_model.render import render
from anyres_model.training.config import TrainConfig
from anyres_model.training.run_log import SpecCoverage
from anyres_model.training.train import build_networks, mirror, train
from tests.support.tiny_data import build_demo


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return build_demo(tmp_path_factory.mktemp("data") / "demo")


def config(run_dir: Path, hr: Path, **overrides) -> TrainConfig:
    base = {
        "run_dir": str(run_dir),
        "total_kimg": 0.012,
        "snapshot_kimg": 0.004,
        "image_kimg": 0.012,
        "log_every": 1,
        "threads": 1,
        "device": "cpu",
        "data": {"hr": str(hr), "batch_size": 4, "workers": 0, "seed": 3, "shuffle_buffer": 8},
        "r1_interval": 2,
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return from_dict(TrainConfig, base)


@pytest.fixture(scope="module")
def phase1(tmp_path_factory, dataset) -> Path:
    evaluation = {"metrics": ["swd", "pswd"], "swd_n": 8, "n": 8, "cache_dir": str(tmp_path_factory.mktemp("cache"))}
    return train(config(tmp_path_factory.mktemp("runs") / "phase1", dataset, eval_kimg=0.008, eval=evaluation))


def test_phase1_then_phase2_train_and_the_checkpoint_renders(tmp_path, dataset, phase1):
    run1 = phase1.parent.parent
    log1 = pd.read_csv(run1 / "log.csv")
    steps = log1[log1["loss/G"].notna()]  # evaluations add rows of their own
    assert len(steps) == 3 and steps["kimg"].iloc[-1] == pytest.approx(0.012)
    for column in ("loss/G", "loss/D", "loss/r1", "time/data", "time/G", "time/D"):
        assert log1[column].notna().any(), column
        assert torch.isfinite(torch.tensor(log1[column].dropna().to_numpy())).all(), column
    assert len(checkpoints(run1)) == 3
    assert (run1 / "images" / "grid-000000kimg.png").exists() or list((run1 / "images").glob("*.png"))
    evals = [json.loads(line) for line in (run1 / "eval.jsonl").read_text().splitlines()]
    assert [e["kimg"] for e in evals] == [0.008] and set(evals[0]["metrics"]) == {"swd", "pswd"}
    assert log1["eval/swd"].notna().sum() == 1 and log1["eval/swd"].dropna().iloc[0] == evals[0]["metrics"]["swd"]
    saved = json.loads((run1 / "config.json").read_text())
    assert saved["phase"] == "global" and saved["data"]["hr"] == str(dataset)
    # phase 1 sees only s = P: its scale projections must stay zero so other scales are not offset
    phase1_ckpt = load_checkpoint(phase1)
    for net in ("G", "G_ema"):
        projections = {k: v for k, v in phase1_ckpt.tensors[net].items() if ".scale_proj." in k}
        assert projections and all(not v.any() for v in projections.values()), net

    coverage1 = json.loads((run1 / "coverage.json").read_text())["rank0"]
    assert coverage1["samples"] == 12 and coverage1["mean_s_over_p"] == 1 and coverage1["share_s_ge_2p"] == 0

    cfg2 = config(tmp_path / "phase2", dataset, phase="patch", init=str(phase1), lpips="random")
    cfg2 = from_dict(TrainConfig, {**to_dict(cfg2), "teacher_structure": "laplacian"})
    last = train(cfg2)
    log2 = pd.read_csv(tmp_path / "phase2" / "log.csv")
    coverage2 = json.loads((tmp_path / "phase2" / "coverage.json").read_text())["rank0"]
    counts = json.loads((tmp_path / "phase2" / "coverage.json").read_text())["histogram"]["counts"]
    assert coverage2["samples"] == sum(counts) == 12 and coverage2["mean_s_over_p"] > 1
    for column in ("loss/teacher_l1", "loss/teacher_lpips", "loss/teacher_structure", "time/teacher", "time/lpips"):
        assert torch.isfinite(torch.tensor(log2[column].to_numpy())).all(), column
    # at the start of phase 2, G is its teacher: the teacher's L1 starts small
    assert log2["loss/teacher_l1"].iloc[0] < 0.5
    ckpt = load_checkpoint(last)
    assert {"G", "D", "G_ema", "teacher", "opt_G", "opt_D", "rng_cpu"} <= set(ckpt.tensors)
    assert any(v.any() for k, v in ckpt.tensors["G"].items() if ".scale_proj." in k and k.endswith("weight"))
    G = load_generator(last)
    image = render(G, torch.randn(1, G.cfg.z_dim), 48)
    assert image.shape == (1, 3, 48, 48) and torch.isfinite(image).all()


def test_phase2_starts_g_from_the_teacher(tmp_path, dataset, phase1):
    """The paper initialises G with G_fixed: phase 1's G_ema, not its (noisier) raw G."""
    saved = load_checkpoint(phase1).tensors
    assert any(not torch.equal(v, saved["G_ema"][k]) for k, v in saved["G"].items())  # the test can fail
    nets = build_networks(config(tmp_path / "p2", dataset, phase="patch", init=str(phase1)), torch.device("cpu"))
    teacher = nets.teacher.state_dict()
    for key, value in nets.G.state_dict().items():
        assert torch.equal(value, teacher[key]), key
        assert torch.equal(value, saved["G_ema"][key]), key
    assert all(torch.equal(v, saved["D"][k]) for k, v in nets.D.state_dict().items())
    assert not any(p.requires_grad for p in nets.teacher.parameters())


@pytest.mark.parametrize("rampup", [False, True])
def test_phase2_ema_has_no_rampup_unless_asked(tmp_path, dataset, phase1, rampup):
    """Without ramp-up, one step of phase 2 moves G_ema by ~0.3% of the way to G; with it, nearly all the way."""
    cfg = config(tmp_path / "p2", dataset, phase="patch", init=str(phase1), lpips="none", total_kimg=0.004)
    last = train(from_dict(TrainConfig, {**to_dict(cfg), "patch_ema_rampup": rampup}))
    G, G_ema, teacher = (
        {k: v.detach() for k, v in load_generator(last, which).named_parameters()}
        for which in ("G", "G_ema", "teacher")
    )
    moved = sum(float((G[k] - teacher[k]).abs().sum()) for k in G)
    assert moved > 0
    share = sum(float((G_ema[k] - teacher[k]).abs().sum()) for k in G) / moved
    assert share > 0.9 if rampup else share < 0.05


def test_phase2_needs_a_phase1_checkpoint(tmp_path, dataset):
    with pytest.raises(ValueError, match="--init"):
        train(config(tmp_path / "run", dataset, phase="patch", lpips="random"))


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, dataset, phase1):
    kw = dict(phase="patch", init=str(phase1), lpips="random", data={"seed": 11})
    full = train(config(tmp_path / "full", dataset, **kw))
    train(config(tmp_path / "split", dataset, total_kimg=0.008, **kw))  # stops after 2 of 3 steps
    with pytest.raises(ValueError, match="--resume"):
        train(config(tmp_path / "split", dataset, **kw))
    resumed = train(config(tmp_path / "split", dataset, resume=True, **kw))
    a, b = load_checkpoint(full), load_checkpoint(resumed)
    assert a.extra_json == b.extra_json
    for name in ("G", "D", "G_ema"):
        for key, tensor in a.tensors[name].items():
            assert torch.equal(tensor, b.tensors[name][key]), f"{name}.{key}"
    with pytest.raises(ValueError, match="changed settings"):
        train(config(tmp_path / "split", dataset, resume=True, total_kimg=0.02, lr_g=0.001, **kw))


def test_spec_coverage_counts_the_scales_drawn_and_survives_a_round_trip():
    coverage = SpecCoverage()
    coverage.add(specs_to_tensor([PatchSpec.global_(32), PatchSpec(64.0, 1.0, 2.0, 32)]))
    coverage.add(specs_to_tensor([PatchSpec(96.0 - 1e-7, 0.0, 0.0, 32), PatchSpec(130.0, 5.0, 5.0, 32)]))
    summary = coverage.summary()
    assert summary["samples"] == 4 and summary["mean_s"] == pytest.approx((32 + 64 + 96 + 130) / 4, abs=1e-5)
    assert summary["share_s_ge_2p"] == 0.75 and summary["share_s_ge_3p"] == 0.5 and summary["share_s_ge_4p"] == 0.25
    assert SpecCoverage.from_dict(json.loads(json.dumps(coverage.to_dict()))) == coverage


def test_mirror_flips_pixels_and_mirrors_the_spec():
    specs = specs_to_tensor([PatchSpec(80.0, 10.5, 3.0, 8), PatchSpec.global_(8)])
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    flipped, mirrored = mirror(images, specs, torch.tensor([True, True]))
    assert torch.equal(flipped, images.flip(-1))
    xs, _ = spec_axes(specs, dtype=torch.float64)
    xm, _ = spec_axes(mirrored, dtype=torch.float64)
    # column i of the mirrored patch lies where column p-1-i of the original lies, reflected about x = 0.5
    assert torch.allclose(xm, 1 - xs.flip(-1))
    same, unchanged = mirror(images, specs, torch.tensor([False, False]))
    assert torch.equal(same, images) and torch.equal(unchanged, specs)


def test_config_checks_patch_size_and_lpips():
    with pytest.raises(ValueError, match="preset 'tiny'"):
        from_dict(TrainConfig, {"sampler": {"p": 64}})
    with pytest.raises(ValueError, match="--lpips"):
        from_dict(TrainConfig, {"lpips": "/nonexistent/alexnet.pth"})
    assert from_dict(TrainConfig, {"preset": "small", "sampler": {"p": 64}}).gamma == pytest.approx(2 * (64 / 256) ** 2)
    # the patch size follows the preset unless another is given
    assert from_dict(TrainConfig, {"preset": "small"}).sampler.p == 64
    assert from_dict(TrainConfig, {"preset": "paper", "sampler": {"scale_max": 1.0}}).sampler.p == 256
    with pytest.raises(ValueError, match="preset 'paper'"):
        from_dict(TrainConfig, {"preset": "paper", "sampler": {"p": 64}})
    with pytest.raises(ValueError, match="conv_kernel"):
        from_dict(TrainConfig, {"conv_kernel": 2})
    g_cfg, _ = from_dict(TrainConfig, {"conv_kernel": 1}).network_configs()
    assert g_cfg.conv_kernel == 1 and from_dict(TrainConfig, {}).network_configs()[0].conv_kernel == 3


def test_phase2_refuses_a_phase1_of_another_architecture(tmp_path, dataset, phase1):
    with pytest.raises(ValueError, match="conv_kernel 1"):
        build_networks(config(tmp_path / "p2", dataset, phase="patch", init=str(phase1), conv_kernel=1), "cpu")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_cpu_ranks_train_with_torchrun(tmp_path, dataset):
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
        "-m", "anyres_model.cli.train",
        "--run-dir", str(run_dir), "--hr", str(dataset), "--batch-size", "2", "--workers", "0",
        "--total-kimg", "0.008", "--snapshot-kimg", "0.008", "--image-kimg", "0", "--device", "cpu", "--threads", "1",
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ckpt = load_checkpoint(checkpoints(run_dir)[-1])
    assert ckpt.extra_json["nimg"] == 8 and ckpt.extra_json["step"] == 2  # 2 steps × 2 ranks × batch 2
    assert result.stdout.count("last checkpoint:") == 1
