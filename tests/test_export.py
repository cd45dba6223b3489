"""Reading a build with the field's tools: Hugging Face `datasets` (through the Parquet export) and wids."""

from __future__ import annotations

import hashlib

import pytest
import wids
from datasets import Image, load_dataset
from typer.testing import CliRunner

from anyres_data.build import BuildSettings, build
from anyres_data.cli.app import app
from anyres_data.dataset import Layout, read_manifest
from anyres_data.sources import SourceSettings
from anyres_data.sources.demo import DemoSettings
from anyres_data.storage import read_json


@pytest.fixture(scope="module")
def mixed_build(tmp_path_factory):
    """A demo build whose shards mix JPEG, WebP and PNG members, with a caption column."""
    out = tmp_path_factory.mktemp("export") / "mixed"
    demo = DemoSettings(count=9, min_side=64, max_side=160, formats=("jpeg", "webp", "png"))
    settings = BuildSettings(
        source="demo", out=str(out), sources=SourceSettings(demo=demo), shard_size=4, workers=0, progress=False
    )
    build(settings)
    manifest = read_manifest(str(out))
    assert set(manifest["format"]) == {"jpg", "webp", "png"}
    return out, manifest


def test_hugging_face_datasets_loads_the_parquet_export_with_metadata_columns(mixed_build, tmp_path, monkeypatch):
    out, manifest = mixed_build
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    dest = tmp_path / "hf"
    result = CliRunner().invoke(app, ["export", str(out), str(dest), "--to", "parquet"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (dest / "data").iterdir()) == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    ds = load_dataset("parquet", data_dir=str(dest), split="train", cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds.features["image"], Image)
    assert len(ds) == len(manifest) and ds["key"] == manifest["key"].tolist()
    for name in ("url", "width", "height", "original_width", "format", "sha256", "license", "extra"):
        assert ds[name] == [None if v is None or v != v else v for v in manifest[name].tolist()], name
    first = ds[0]["image"]  # decoded by HF's Image feature, whatever the format
    assert first.size == (manifest["width"][0], manifest["height"][0])
    raw = ds.cast_column("image", Image(decode=False))
    for row, sha in zip(raw, manifest["sha256"], strict=True):
        assert hashlib.sha256(row["image"]["bytes"]).hexdigest() == sha  # the original bytes, not re-encoded
    again = load_dataset(str(dest), split="train", cache_dir=str(tmp_path / "cache2"))  # the data/ layout alone
    assert len(again) == len(manifest)


def test_export_of_a_folder_that_is_no_dataset_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["export", str(tmp_path), str(tmp_path / "hf")])
    assert result.exit_code == 2 and "no dataset.json" in " ".join(result.output.split())
    assert not (tmp_path / "hf").exists()


def test_wids_reads_every_sample_from_the_shard_list_the_build_writes(mixed_build):
    out, manifest = mixed_build
    index = read_json(Layout.at(str(out)).wids_json)
    assert index["wids_version"] == 1 and index["name"] == "mixed"
    assert [(e["url"], e["nsamples"]) for e in index["shardlist"]] == [
        (f"shards/{shard}", n) for shard, n in manifest["shard"].value_counts().sort_index().items()
    ]
    dataset = wids.ShardListDataset(str(out / "wids.json"), transformations=[], cache_dir=str(out / "unused"))
    assert len(dataset) == len(manifest)
    seen = []
    for i in range(len(dataset)):
        sample = dataset[i]
        row = manifest.iloc[i]
        data = sample[f".{row['format']}"]
        data = data.getvalue() if hasattr(data, "getvalue") else data
        assert sample["__key__"] == row["key"] and hashlib.sha256(data).hexdigest() == row["sha256"]
        seen.append(sample["__key__"])
    assert seen == manifest["key"].tolist()
