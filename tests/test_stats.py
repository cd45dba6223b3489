"""`anyres-data stats`: numbers from manifests checked against direct computations, Table 1's E[s], plots, the CLI."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from anyres_data.build import BuildSettings, build
from anyres_data.cli.app import app
from anyres_data.cli.build import size_table
from anyres_data.dataset import read_manifest
from anyres_data.filters import FilterSettings
from anyres_data.sampling import SamplerSettings, expected_scale
from anyres_data.sources import SourceSettings
from anyres_data.sources.demo import DemoSettings
from anyres_data.stats.compute import (
    breakdown,
    discard,
    load_all,
    load_stats,
    summary,
    table1,
    training_scale,
)
from anyres_data.stats.plots import plot_discard, plot_sizes
from tests.support.manifests import synthetic_manifest, write_manifest_dataset

N_HR = 200_000
REJECTED = {"below_min_size": 1234, "http_404": 56, "near_duplicate": 7}


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    """A synthetic HR set of 200k photo-sized images and an LR set of 30k at 256."""
    root = tmp_path_factory.mktemp("manifests")
    hr = synthetic_manifest(N_HR, seed=1)
    lr = synthetic_manifest(30_000, seed=2)
    lr[["width", "height", "original_width", "original_height"]] = 256
    lr.loc[:999, ["original_width", "original_height"]] = 300  # these were resized
    write_manifest_dataset(root / "birds-hr", hr, name="birds-hr", rejected=REJECTED)
    write_manifest_dataset(root / "birds-lr", lr, name="birds-lr")
    return root / "birds-hr", root / "birds-lr", hr, lr


def test_sizes_counts_and_breakdowns_match_the_manifest(two_sets):
    hr_path, lr_path, hr, lr = two_sets
    datasets = load_all(auto=[str(hr_path), str(lr_path)])
    assert [(d.name, d.role) for d in datasets] == [("birds-hr", "hr"), ("birds-lr", "lr")]  # LR: every side ≤ p
    table = summary(datasets)
    short = np.minimum(hr["width"].to_numpy(int), hr["height"].to_numpy(int))
    mp = hr["width"].to_numpy(int) * hr["height"].to_numpy(int) / 1e6
    row = table.loc["birds-hr"]
    assert row["images"] == N_HR and row["candidates"] == N_HR + sum(REJECTED.values())
    assert row["rejected"] == sum(REJECTED.values())
    assert (row["short_min"], row["short_median"], row["short_max"]) == (short.min(), np.median(short), short.max())
    assert row["mp_median"] == pytest.approx(np.median(mp)) and row["megapixels"] == pytest.approx(mp.sum())
    assert row["bytes"] == hr["bytes"].sum() and row["resized"] == 0
    assert table.loc["birds-lr", "resized"] == 1000 and table.loc["birds-lr", "short_max"] == 256

    formats = breakdown(datasets, "format")
    assert formats["birds-hr"].to_dict() == {k: v for k, v in hr["format"].value_counts().items()}
    assert formats.index[0] == "jpg"  # most frequent first
    assert breakdown(datasets, "license")["birds-lr"].sum() == len(lr)
    reasons = breakdown(datasets, "reason")
    assert reasons["birds-hr"].to_dict() == REJECTED and reasons["birds-lr"].sum() == 0


def test_the_discard_table_counts_images_and_pixels_below_each_minimum(two_sets):
    hr_path, lr_path, hr, lr = two_sets
    datasets = load_all([str(hr_path)], lr=[str(lr_path)])
    lost = discard(datasets, (256, 257, 1000, 4096)).set_index(["dataset", "min_side"])
    for name, frame in (("birds-hr", hr), ("all", pd.concat([hr, lr]))):
        w, h = frame["width"].to_numpy(int), frame["height"].to_numpy(int)
        short, pixels = np.minimum(w, h), w * h
        for side in (256, 257, 1000, 4096):
            below = short < side
            row = lost.loc[(name, side)]
            assert row["images_lost"] == below.sum()
            assert row["images_share"] == pytest.approx(below.mean())
            assert row["pixels_share"] == pytest.approx(pixels[below].sum() / pixels.sum())
    assert lost.loc[("birds-lr", 256), "images_lost"] == 0 and lost.loc[("birds-lr", 257), "images_share"] == 1


def test_expected_scale_is_the_samplers_over_the_hr_images(two_sets):
    hr_path, lr_path, hr, lr = two_sets
    datasets = load_all([str(hr_path)], lr=[str(lr_path)])
    for sampler in (SamplerSettings(), SamplerSettings(p=512, scale_max=0.5, size_distribution="log_uniform")):
        direct = expected_scale(widths=hr["width"].to_numpy(), heights=hr["height"].to_numpy(), settings=sampler)
        assert training_scale(datasets, sampler) == pytest.approx(direct)
    row = table1(datasets, SamplerSettings()).iloc[0]
    assert (row["lr_images"], row["hr_images"], row["lr_side"]) == (len(lr), N_HR, 256)
    only_lr = load_all(lr=[str(lr_path)])
    assert training_scale(only_lr, SamplerSettings()) is None  # no HR image gives a patch
    assert training_scale(only_lr, SamplerSettings(global_prob=1.0)) == 256


def test_ffhq6k_sizes_give_the_papers_table_1_row(tmp_path):
    """FFHQ6k as §4 builds it: 70k LR at 256; 5k HR uniform in 512-1024, 1k at 1024. Table 1: E[s] = 458."""
    rng = np.random.default_rng(0)
    sides = np.concatenate([rng.integers(512, 1025, 5000), np.full(1000, 1024)])
    hr = pd.DataFrame({"width": sides, "height": sides})
    lr = pd.DataFrame({"width": np.full(70_000, 256), "height": np.full(70_000, 256)})
    hr.to_parquet(tmp_path / "hr.parquet")
    lr.to_parquet(tmp_path / "lr.parquet")
    datasets = load_all([str(tmp_path / "hr.parquet")], lr=[str(tmp_path / "lr.parquet")])
    row = table1(datasets, SamplerSettings(p=256, scale_max=0.5, global_prob=0.5)).iloc[0]
    assert (row["lr_images"], row["hr_images"], row["hr_min"], row["hr_max"]) == (70_000, 6000, 512, 1024)
    assert row["expected_scale"] == pytest.approx(458, abs=3)  # the paper's Table 1 (p = 256, s ≥ 2p)
    assert row["hr_median"] == pytest.approx(819, abs=15)  # the paper's HR median


def test_plots_show_hr_sizes_on_a_log_scale_a_pie_and_discard_curves(two_sets, tmp_path):
    hr_path, lr_path, *_ = two_sets
    datasets = load_all([str(hr_path)], lr=[str(lr_path)])
    figure = plot_sizes(datasets, tmp_path / "fig4.png")
    hist, pie = figure.axes
    assert hist.get_yscale() == "log"
    assert sum(p.get_height() for p in hist.patches) == N_HR  # only the HR images are in the histogram
    wedges = list(pie.patches)
    assert len(wedges) == 2 and {t.get_text() for t in pie.texts} >= {"birds-hr (HR)", "birds-lr (LR)"}
    figure = plot_discard(datasets, tmp_path / "discard.svg")
    assert len(figure.axes[0].lines) == 3 * 2 + 4  # images + pixels for 2 sets and "all", 4 marked minimums
    with Image.open(tmp_path / "fig4.png") as image:
        assert image.width > 600 and image.height > 200
    single = plot_sizes(load_all([str(hr_path)]))
    assert len(single.axes) == 1 and not [a for a in single.axes if a.patches and a.get_title().startswith("images")]
    assert (tmp_path / "discard.svg").read_text().lstrip().startswith("<?xml")


def test_the_stats_command_on_a_built_dataset(tmp_path):
    out = tmp_path / "demo"
    settings = BuildSettings(
        source="demo",
        out=str(out),
        sources=SourceSettings(demo=DemoSettings(count=8, min_side=120, max_side=700)),
        filters=FilterSettings(min_size=200),
        workers=0,
        shard_size=4,
        progress=False,
    )
    info = build(settings)
    manifest = read_manifest(str(out))
    stats = load_stats(str(out))
    assert stats.candidates == 8 and stats.rejected == info["counts"]["rejected"] and stats.rejected
    assert len(stats.images) == len(manifest) and set(stats.images["format"]) == set(manifest["format"])
    plot = tmp_path / "stats.png"
    result = CliRunner().invoke(
        app,
        ["stats", str(out), "--plot", str(plot), "--discard-plot", str(tmp_path / "d.png"), "--p", "128"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert plot.exists() and (tmp_path / "d.png").exists()
    sampler = SamplerSettings(p=128)
    expected = expected_scale(widths=manifest["width"], heights=manifest["height"], settings=sampler)
    assert f"{expected:,.0f}" in result.output and "E[s]" in result.output and "below_min_size" in result.output
    assert "CC0-1.0 100%" in result.output


def test_stats_errors_say_what_is_wrong(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["stats", str(tmp_path / "empty")], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "no manifest.parquet" in result.output
    result = CliRunner().invoke(app, ["stats"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "at least one dataset" in result.output
    pd.DataFrame({"key": ["a"]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="no width, height column"):
        load_stats(str(tmp_path / "x.parquet"))


def test_an_empty_dataset_gives_empty_statistics(tmp_path):
    empty = synthetic_manifest(0)
    write_manifest_dataset(tmp_path / "none", empty, name="none", rejected={"http_404": 3})
    datasets = load_all(auto=[str(tmp_path / "none")])
    assert datasets[0].role == "hr" and summary(datasets).loc["none", "images"] == 0
    assert table1(datasets, SamplerSettings()).iloc[0]["expected_scale"] is None
    assert discard(datasets)["images_lost"].sum() == 0
    plot_sizes(datasets, tmp_path / "a.png")
    plot_discard(datasets, tmp_path / "b.png")
    result = CliRunner().invoke(app, ["stats", str(tmp_path / "none")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output


def test_roles_come_from_flags_or_from_the_size_threshold(two_sets):
    hr_path, lr_path, *_ = two_sets
    assert [d.role for d in load_all(auto=[str(lr_path)], lr_max_side=255)] == ["hr"]  # 256 > 255
    assert [d.role for d in load_all(hr=[str(lr_path)])] == ["hr"]  # named HR whatever its sizes
    assert [d.role for d in load_all(lr=[str(hr_path)])] == ["lr"]
    runner = CliRunner()
    result = runner.invoke(app, ["stats", str(hr_path), str(lr_path), "--p", "128"], env={"COLUMNS": "200"})
    roles = next(line for line in result.output.splitlines() if line.startswith("│ role"))
    assert result.exit_code == 0 and [c.strip() for c in roles.split("│")[2:4]] == ["HR", "HR"]  # 256 > p = 128
    result = runner.invoke(app, ["stats", str(hr_path), "--lr", str(lr_path)], env={"COLUMNS": "200"})
    roles = next(line for line in result.output.splitlines() if line.startswith("│ role"))
    assert [c.strip() for c in roles.split("│")[2:4]] == ["LR", "HR"]  # named sets first, then DATASETS
    result = runner.invoke(app, ["stats", str(hr_path), "--min-sides", "512,big"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "--min-sides" in result.output


def test_info_and_stats_report_the_same_median(tmp_path):
    manifest = synthetic_manifest(48, seed=3)  # an even count: the median lies between two images
    write_manifest_dataset(tmp_path / "even", manifest, name="even")
    short = manifest[["width", "height"]].min(axis=1)
    assert short.median() != short.quantile(0.5, interpolation="lower")  # the two ways would differ here
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(size_table(read_manifest(str(tmp_path / "even"))))  # what `info` prints
    median = f"{short.median():,.0f}"
    assert re.search(rf"50th percentile\s*│\s*{median}\s*│", console.export_text())
    stats = CliRunner().invoke(app, ["stats", str(tmp_path / "even")], env={"COLUMNS": "200"})
    assert stats.exit_code == 0 and f"/ {median} /" in stats.output
