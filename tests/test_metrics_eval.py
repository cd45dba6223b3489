"""`evaluate` and `anyres-eval` end to end: a tiny dataset on disk, the tiny generator, random-weights Inception."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from anyres_model.checkpoint import network_config, save_checkpoint
from anyres_model.cli.evaluate import app
from anyres_model.metrics.evaluate import EvalSettings, evaluate, plan_metrics
from anyres_model.metrics.fid import load_feature_stats
from anyres_model.networks.generator import Generator
from anyres_model.networks.presets import preset
from tests.support.metrics_dataset import write_dataset

SIZES = [(96, 80), (64, 128), (24, 30), (120, 72), (48, 48)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("eval-data"), SIZES, per_shard=2)


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return Generator(preset("tiny")[0]).eval()


def test_plan_metrics():
    plan = plan_metrics(("fid256", "fid", "swd512", "pfid", "pswd_up", "kid"), 32)
    assert plan.fid == (("fid256", 256), ("fid", 32)) and plan.swd == (("swd512", 512),)
    assert plan.patch == {"pfid", "pswd_up"} and plan.kid
    with pytest.raises(ValueError, match="unknown metric 'fjd'"):
        plan_metrics(("fjd",), 32)
    with pytest.raises(ValueError, match="kid is reported beside"):
        plan_metrics(("swd", "kid"), 32)
    with pytest.raises(ValueError, match="same size requested twice"):
        plan_metrics(("fid", "fid32"), 32)


def test_evaluate_all_metrics_then_from_the_cache(dataset, generator, tmp_path):
    settings = EvalSettings(
        data=str(dataset),
        metrics=("fid", "swd", "pfid", "pswd", "pfid_up", "pswd_up", "kid"),
        n=3,
        batch=3,
        seed=1,
        inception_weights="random",
        cache_dir=str(tmp_path / "cache"),
    )
    out = evaluate(generator, settings, progress=False)
    metrics = out["metrics"]
    assert list(metrics) == ["fid", "swd", "pfid", "pswd", "pfid_up", "pswd_up"]
    for name in ("fid", "pfid", "pfid_up"):
        assert np.isfinite(metrics[name]["value"]) and metrics[name]["value"] > 0
        assert set(metrics[name]["kid"]) == {"mean", "std", "subsets", "subset_size"}
        assert metrics[name]["kid"]["subset_size"] == 3
    for name in ("swd", "pswd", "pswd_up"):
        assert list(metrics[name]["levels"]) == ["32", "16"] and metrics[name]["value"] > 0
    # fid at 32 px: the 24×30 image is smaller than 32 and is left out, never upsampled
    assert metrics["fid"]["excluded_small"] == 1 and metrics["fid"]["n_real"] == 3 and metrics["fid"]["n_fake"] == 3
    assert metrics["fid"]["real_source"] == "hr"
    assert metrics["pfid"]["n_real"] == metrics["pfid"]["n_fake"] == 3
    assert out["inception"] == {"source": "random", "sha256": None} and out["p"] == 32
    json.dumps(out)  # JSON-ready

    # the real statistics and the realised spec list were cached; with the shards gone, FID metrics still work
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 2 and cached[0].startswith("patches-") and cached[1].startswith("whole32-")
    stats, arrays = load_feature_stats(tmp_path / "cache" / cached[0])
    assert stats.n == 3 and arrays["spec_specs"].shape == (3, 4) and arrays["spec_keys"].dtype.kind == "U"
    for shard in (dataset / "shards").iterdir():
        shard.rename(tmp_path / shard.name)
    try:
        again = evaluate(generator, dataclasses.replace(settings, metrics=("pfid",)), progress=False)
    finally:
        for shard in tmp_path.glob("*.tar"):
            shard.rename(dataset / "shards" / shard.name)
    assert again["metrics"]["pfid"]["value"] == pytest.approx(metrics["pfid"]["value"], rel=1e-9)


def test_evaluate_rejects_what_it_cannot_measure(dataset, generator, tmp_path):
    base = {"data": str(dataset), "n": 2, "cache_dir": str(tmp_path), "inception_weights": "random"}
    with pytest.raises(ValueError, match="shorter side of at least 512"):
        evaluate(generator, EvalSettings(**base, metrics=("swd512",)), progress=False)
    with pytest.raises(ValueError, match="no dataset given"):
        evaluate(generator, EvalSettings(metrics=("pswd",)), progress=False)
    with pytest.raises(FileNotFoundError, match=r"manifest\.parquet"):
        evaluate(generator, EvalSettings(**{**base, "data": str(tmp_path / "nothing")}, metrics=("pswd",)))
    with pytest.raises(ValueError, match="n must be"):
        EvalSettings(n=0)


def test_cli_writes_json_next_to_the_checkpoint(dataset, generator, tmp_path):
    g_cfg, _ = preset("tiny")
    ckpt = tmp_path / "run" / "G-000004.pt"
    save_checkpoint(ckpt, config=network_config(g_cfg), tensors={"G_ema": generator.state_dict()})
    runner = CliRunner()
    args = [str(ckpt), "--data", str(dataset), "--metrics", "pswd", "--n", "3", "--swd-n", "2", "--quiet"]
    args += ["--sampler-p", "32", "--sampler-s-min", "48"]
    result = runner.invoke(app, [*args, "--batch", "3", "--cache-dir", str(tmp_path / "c"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "pswd" in result.output
    report = json.loads((tmp_path / "run" / "G-000004.eval.json").read_text())
    assert report["checkpoint"] == str(ckpt)
    assert report["metrics"]["pswd"]["n_real"] == 2 and report["metrics"]["pswd"]["n_fake"] == 2
    assert report["settings"]["metrics"] == ["pswd"] and report["sampler"]["global_prob"] == 0.0
    assert report["sampler"]["p"] == 32 and report["sampler"]["s_min"] == 48.0
    bad = runner.invoke(app, [str(ckpt), "--data", str(dataset), "--metrics", "psnr", "--quiet"])
    assert bad.exit_code != 0 and "unknown metric 'psnr'" in bad.output
    other_p = runner.invoke(app, [*args[:-4], "--sampler-p", "64", "--sampler-s-min", "96"])
    assert other_p.exit_code != 0 and "--sampler-p 32" in other_p.output


def test_whole_image_reals_come_from_the_lr_set_when_it_is_large_enough(dataset, generator, tmp_path):
    lr = write_dataset(tmp_path / "lr", [(40, 40), (36, 50)], seed=5)
    settings = EvalSettings(data=str(dataset), lr_data=str(lr), metrics=("swd32", "swd48"), n=2, batch=2)
    metrics = evaluate(generator, settings, progress=False)["metrics"]
    assert metrics["swd32"]["real_source"] == "lr" and metrics["swd32"]["n_real"] == 2
    assert metrics["swd48"]["real_source"] == "hr" and metrics["swd48"]["excluded_small"] == 1
    assert list(metrics["swd48"]["levels"]) == ["48", "24"]
