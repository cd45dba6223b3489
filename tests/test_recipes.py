"""The dataset recipes in pipelines/: FFHQ6k on a procedural stand-in, the Flickr churches YAMLs, the demo YAML."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import pytest
import pyvips
from rich.console import Console
from typer.testing import CliRunner

from anyres_data.build import BuildSettings
from anyres_data.cli.app import app
from anyres_data.dataset import extra_fields, load_info, read_manifest, read_rejects
from anyres_data.dataset.verify import verify
from anyres_data.sampling import SamplerSettings
from anyres_data.settings import resolve
from anyres_data.sources.demo import render_demo
from anyres_data.stats.compute import load_all, table1
from tests.support.flickr_server import TEST_KEY, FlickrServer
from tests.support.photos import encode, structured_image

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"
QUIET = Console(file=io.StringIO())


def load_ffhq6k():
    """pipelines/ffhq6k.py as a module (it is a script, not part of the installed package)."""
    if "ffhq6k" not in sys.modules:
        spec = importlib.util.spec_from_file_location("ffhq6k", PIPELINES / "ffhq6k.py")
        sys.modules["ffhq6k"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
        spec.loader.exec_module(sys.modules["ffhq6k"])
    return sys.modules["ffhq6k"]


# ---------------------------------------------------------------------------------------------- FFHQ6k


N_FACES, SIDE = 70, 256  # FFHQ in miniature: 70 (not 70,000) images at 256 (not 1024); every size / 4


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """A folder laid out like FFHQ's images1024x1024/: PNGs named by number, all SIDE x SIDE."""
    folder = tmp_path_factory.mktemp("ffhq") / "images1024x1024"
    for i in range(N_FACES):
        sub = folder / f"{i // 10 * 10:05d}"
        sub.mkdir(parents=True, exist_ok=True)
        pixels = render_demo(1000 + i, SIDE, SIDE)
        pyvips.Image.new_from_memory(pixels.data, SIDE, SIDE, 3, "uchar").write_to_file(str(sub / f"{i:05d}.png"))
    return folder


def test_ffhq6k_builds_the_lr_set_and_two_disjoint_hr_subsets(faces, tmp_path):
    ffhq6k = load_ffhq6k()
    out = tmp_path / "ffhq6k"
    options = ["--lr-side", "64", "--hr-min-side", "128", "--hr-max-side", "256", "--hr-count", "5"]
    options += ["--full-count", "1", "--shard-size", "20", "--workers", "0", "--no-progress"]
    result = CliRunner().invoke(ffhq6k.app, ["--folder", str(faces), "--out", str(out), *options])
    assert result.exit_code == 0, result.output

    lr, uniform, full = (read_manifest(str(out / name)) for name in ("lr", "hr-uniform", "hr-full"))
    assert len(lr) == N_FACES and (lr["width"] == 64).all() and (lr["height"] == 64).all()
    assert (lr["original_width"] == SIDE).all() and (lr["format"] == "png").all()
    assert all(extra_fields(row)["resized"] for _, row in lr.iterrows())

    assert len(uniform) == 5 and len(full) == 1
    assert not set(uniform["source_id"]) & set(full["source_id"])  # disjoint subsets of the same folder
    assert set(uniform["source_id"]) | set(full["source_id"]) <= set(lr["source_id"])
    assert ((uniform["width"] >= 128) & (uniform["width"] <= 256) & (uniform["width"] == uniform["height"])).all()
    assert uniform["width"].nunique() > 1  # sizes drawn per image
    row = full.iloc[0]
    assert (row["width"], row["height"]) == (SIDE, SIDE)
    assert (faces / row["source_id"]).read_bytes() == _member(out / "hr-full", row)  # full size: original bytes
    for name in ("lr", "hr-uniform", "hr-full"):
        assert verify(str(out / name)).ok, name
        assert load_info(str(out / name)).data["settings"]["filters"]["near_duplicate_distance"] == -1

    datasets = load_all([str(out / "hr-uniform"), str(out / "hr-full")], lr=[str(out / "lr")])
    paper = table1(datasets, SamplerSettings(p=64)).iloc[0]
    assert (paper["lr_images"], paper["hr_images"], paper["lr_side"], paper["hr_max"]) == (70, 6, 64, 256)


def _member(out: Path, row) -> bytes:
    import webdataset as wds

    for sample in wds.WebDataset(str(out / "shards" / row["shard"]), shardshuffle=False):
        if sample["__key__"] == row["key"]:
            return sample[row["format"]]
    raise AssertionError(f"{row['key']} not in its shard")


def test_the_ffhq6k_recipe_is_the_papers_by_default(tmp_path):
    ffhq6k = load_ffhq6k()
    builds = ffhq6k.recipe(ffhq6k.FFHQ6kSettings(folder="ffhq/images1024x1024", out="data/ffhq6k"))
    assert list(builds) == ["lr", "hr-uniform", "hr-full"]
    lr, uniform, full = builds.values()
    assert (lr.resize.mode, lr.resize.size, lr.subset.count) == ("fixed", 256, None)
    assert (uniform.resize.mode, uniform.resize.min_size, uniform.resize.max_size) == ("uniform", 512, 1024)
    assert (uniform.subset.count, uniform.subset.skip, full.subset.count, full.subset.skip) == (5000, 0, 1000, 5000)
    assert full.resize.mode == "none" and full.out == "data/ffhq6k/hr-full"
    with pytest.raises(ValueError, match="--folder"):
        ffhq6k.recipe(ffhq6k.FFHQ6kSettings(out="x"))


# ---------------------------------------------------------------------------------------------- churches


def test_the_church_yamls_parse_into_build_settings():
    hr = resolve(BuildSettings, config=PIPELINES / "church-hr.yaml")
    assert (hr.source, hr.sources.flickr.query, hr.out) == ("flickr", "church", "data/church-hr")
    assert hr.filters.min_size == 1024 and hr.filters.license == ("4", "5", "9", "10")
    assert hr.resize.mode == "none"  # native resolution, original bytes
    lr = resolve(BuildSettings, config=PIPELINES / "church-lr.yaml")
    assert (lr.source, lr.sources.folder.folder) == ("folder", "data/lsun/church_outdoor_train")
    assert (lr.resize.mode, lr.resize.size, lr.filters.near_duplicate_distance) == ("fixed", 256, -1)


def test_the_church_hr_yaml_builds_against_the_flickr_stand_in(tmp_path, monkeypatch):
    monkeypatch.setenv("FLICKR_API_KEY", TEST_KEY)
    out = tmp_path / "church-hr"
    with FlickrServer(n_photos=150, seed=3, min_side=900, max_side=1800) as server:
        expected = server.matching(text="church", licenses=("4", "5", "9", "10"))
        command = ["build", "--config", str(PIPELINES / "church-hr.yaml"), "--out", str(out)]
        command += ["--api-endpoint", server.endpoint, "--api-calls-per-hour", "1000000", "--workers", "0"]
        command += ["--threads", "4", "--no-progress"]
        result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    manifest = read_manifest(str(out))
    assert len(manifest) >= 3  # of 12 church photos with a free license, 5 are large enough
    assert set(read_rejects(str(out))["reason"]) <= {"below_min_size", "extreme_aspect", "near_duplicate"}
    assert (manifest[["width", "height"]].min(axis=1) >= 1024).all()
    assert set(manifest["license"]) <= {"4", "5", "9", "10"}
    assert load_info(str(out)).counts["candidates"] == len(expected) and verify(str(out)).ok


def test_the_church_lr_yaml_builds_an_lsun_style_folder_at_256(tmp_path):
    folder = tmp_path / "church_outdoor_train"
    folder.mkdir()
    sizes = {"a": (341, 256), "b": (256, 256), "c": (400, 300), "d": (256, 384)}
    files = {}
    for name, (w, h) in sizes.items():
        files[f"{name}.webp"] = encode(structured_image(w, h, seed=ord(name)), "WEBP", quality=85)
        (folder / f"{name}.webp").write_bytes(files[f"{name}.webp"])
    out = tmp_path / "church-lr"
    command = ["build", "--config", str(PIPELINES / "church-lr.yaml"), "--folder", str(folder), "--out", str(out)]
    result = CliRunner().invoke(app, [*command, "--workers", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(str(out)).set_index("source_id")
    assert (manifest[["width", "height"]].min(axis=1) == 256).all() and len(manifest) == 4
    assert manifest.loc["c.webp", "format"] == "jpg" and manifest.loc["c.webp", "width"] == 341
    assert manifest.loc["a.webp", "format"] == "webp"  # already 256: original bytes
    assert verify(str(out)).ok


# ---------------------------------------------------------------------------------------------- demo


def test_the_demo_yaml_is_what_make_demo_builds(tmp_path):
    demo = resolve(BuildSettings, config=PIPELINES / "demo.yaml")
    assert (demo.source, demo.out, demo.sources.demo.count, demo.shard_size) == ("demo", "out/demo-hr", 48, 8)
    out = tmp_path / "demo-hr"
    command = ["build", "--config", str(PIPELINES / "demo.yaml"), "--out", str(out), "--workers", "0"]
    command += ["--demo-count", "3", "--demo-max-side", "400", "--no-progress"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert len(read_manifest(str(out))) == 3 and load_info(str(out)).data["settings"]["shard_size"] == 8


@pytest.mark.parametrize("name", ["demo-phase1.yaml", "demo-phase2.yaml"])
def test_demo_training_yamls_parse_into_train_configs(name):
    from anyres_data.settings import resolve
    from anyres_model.training.config import TrainConfig

    cfg = resolve(TrainConfig, config=PIPELINES / name)
    assert cfg.preset == "tiny" and cfg.sampler.p == 32 and cfg.data.hr == "out/demo-hr"
    assert cfg.phase == ("global" if "phase1" in name else "patch")
