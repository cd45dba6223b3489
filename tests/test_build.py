"""End-to-end builds from real sources on 127.0.0.1: the bad-input corpus, Dask vs one process, read-back."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile

import pandas as pd
import pytest
import webdataset as wds
from typer.testing import CliRunner

from anyres_data.build import BuildSettings, build
from anyres_data.cli.app import app
from anyres_data.dataset import MANIFEST_COLUMNS, extra_fields, load_info, read_manifest, read_rejects
from anyres_data.dataset.verify import verify
from anyres_data.rejects import REASONS
from anyres_data.sources import SourceSettings
from anyres_data.sources.demo import DemoSettings
from anyres_data.sources.folder import FolderSettings
from tests.support.builds import url_list_settings
from tests.support.corpus import CORPUS_FETCH, CORPUS_FILTERS, file_cases, network_cases
from tests.support.http_server import ImageServer

COMPARED = [name for name in MANIFEST_COLUMNS if name != "crawled_at"]  # everything but the clock


@pytest.fixture(scope="module")
def cases():
    return file_cases() + network_cases()


@pytest.fixture(scope="module")
def corpus_site(cases, tmp_path_factory):
    """The corpus on a loopback server, and a URL list naming it (plus one URL a web list may not use)."""
    with ImageServer() as server:
        urls = {
            c.name: server.add(f"/{c.filename}", c.data, **{"content_type": c.content_type, **c.route}) for c in cases
        }
        url_list = tmp_path_factory.mktemp("lists") / "corpus.txt"
        url_list.write_text("\n".join([*urls.values(), "file:///etc/hostname"]) + "\n")
        yield urls, url_list


def corpus_settings(out, url_list, **options) -> BuildSettings:
    defaults = {"name": "corpus", "shard_size": 5, "threads": 4, "filters": CORPUS_FILTERS, "fetch": CORPUS_FETCH}
    return url_list_settings(out, url_list, **(defaults | options))


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def cluster_build(corpus_site, cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("builds") / "on-cluster"
    build(corpus_settings(out, corpus_site[1], scheduler=cluster.scheduler_address))
    return out


@pytest.fixture(scope="module")
def local_build(corpus_site, tmp_path_factory):
    out = tmp_path_factory.mktemp("builds") / "in-process"
    build(corpus_settings(out, corpus_site[1], workers=0))
    return out


def outcomes_by_url(out) -> dict[str, tuple]:
    manifest, rejects = read_manifest(str(out)), read_rejects(str(out))
    kept = {r.url: ("kept", (r.width, r.height), r.format) for r in manifest.itertuples()}
    rejected = {r.url: (r.reason,) for r in rejects.itertuples()}
    assert not set(kept) & set(rejected)
    return kept | rejected


def test_every_corpus_case_ends_in_its_outcome(cluster_build, cases, corpus_site):
    urls = corpus_site[0]
    got = outcomes_by_url(cluster_build)
    assert len(got) == len(cases) + 1
    for case in cases:
        expected = ("kept", case.size, case.fmt) if case.expect == "kept" else (case.expect,)
        assert got[urls[case.name]] == expected, case.name
    assert got["file:///etc/hostname"] == ("unsupported_scheme",)


def test_rejects_name_a_known_reason_with_a_message_and_duplicates_their_kept_twin(cluster_build, corpus_site):
    rejects = read_rejects(str(cluster_build))
    assert all(r in REASONS or r.startswith("http_") for r in rejects["reason"])
    assert rejects["message"].str.len().min() > 0
    twin = read_manifest(str(cluster_build)).set_index("url").loc[corpus_site[0]["jpeg"], "key"]
    dups = rejects[rejects["reason"].isin(["duplicate", "near_duplicate"])]
    assert len(dups) == 3 and (dups["duplicate_of"] == twin).all() and dups["shard"].notna().all()


def test_shards_hold_the_original_bytes_and_read_back_with_plain_webdataset(cluster_build, cases, corpus_site):
    manifest = {row["key"]: row for row in read_manifest(str(cluster_build)).to_dict("records")}
    original = {corpus_site[0][c.name]: c.data for c in cases}
    shards = sorted(str(p) for p in (cluster_build / "shards").glob("*.tar"))
    assert [p.rsplit("/", 1)[-1] for p in shards] == load_info(str(cluster_build)).data["shards"]
    seen = []
    for sample in wds.WebDataset(shards, shardshuffle=False):
        row = manifest[sample["__key__"]]
        metadata = json.loads(sample["json"])
        assert sample[row["format"]] == original[row["url"]]  # never re-encoded
        assert hashlib.sha256(sample[row["format"]]).hexdigest() == metadata["sha256"] == row["sha256"]
        for name in MANIFEST_COLUMNS:
            if name not in ("shard", "extra"):
                assert metadata.get(name) == (None if pd.isna(row[name]) else row[name]), name
        assert {k: v for k, v in metadata.items() if k not in MANIFEST_COLUMNS} == extra_fields(row)
        assert row["shard"] == sample["__url__"].rsplit("/", 1)[-1]
        seen.append(sample["__key__"])
    assert sorted(seen) == sorted(manifest) and len(seen) == len(set(seen))
    assert "." not in "".join(seen)


def test_one_process_and_a_dask_cluster_build_the_same_dataset(cluster_build, local_build):
    on_cluster, in_process = read_manifest(str(cluster_build)), read_manifest(str(local_build))
    pd.testing.assert_frame_equal(on_cluster[COMPARED], in_process[COMPARED])
    pd.testing.assert_frame_equal(read_rejects(str(cluster_build)), read_rejects(str(local_build)))
    assert load_info(str(cluster_build)).counts == load_info(str(local_build)).counts


def test_dataset_json_counts_settings_versions_and_verify(cluster_build, cases):
    info = load_info(str(cluster_build)).data
    counts = info["counts"]
    assert counts["candidates"] == len(cases) + 1
    assert counts["kept"] + sum(counts["rejected"].values()) == counts["candidates"]
    assert counts["kept"] == sum(c.expect == "kept" for c in cases)
    assert info["settings"]["filters"]["min_size"] == CORPUS_FILTERS.min_size
    assert {"anyres", "libvips", "pyvips", "webdataset", "dask"} <= set(info["versions"])
    assert info["timing"]["run_seconds"] > 0
    report = verify(str(cluster_build))
    assert report.ok, report.problems
    assert report.samples == counts["kept"]
    assert not (cluster_build / "_work" / "tmp").exists()


def test_verify_and_its_command_report_a_damaged_dataset(local_build, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["verify", str(local_build)])
    assert result.exit_code == 0, result.output
    damaged = tmp_path / "damaged"
    shutil.copytree(local_build, damaged)
    shard = max((damaged / "shards").glob("*.tar"), key=lambda p: p.stat().st_size)  # several samples
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    first_image = next(m.name for m, _ in members if not m.name.endswith(".json"))
    with tarfile.open(shard, "w") as tar:
        for member, data in members[:-2]:  # drop the last sample
            if member.name == first_image:
                data = data[:100] + bytes([data[100] ^ 1]) + data[101:]  # and flip a bit of the first image
            tar.addfile(member, io.BytesIO(data))
    problems = verify(str(damaged)).problems
    assert any(first_image.split(".")[0] in p and "sha256" in p for p in problems), problems
    assert any("not in the shard" in p for p in problems), problems
    result = runner.invoke(app, ["verify", str(damaged)])
    assert result.exit_code == 1


def test_an_existing_output_needs_resume_and_the_same_settings(local_build, corpus_site):
    with pytest.raises(ValueError, match="--resume"):
        build(corpus_settings(local_build, corpus_site[1], workers=0))
    changed = corpus_settings(local_build, corpus_site[1], workers=0, resume=True, shard_size=7)
    with pytest.raises(ValueError, match="shard_size: 5 -> 7"):
        build(changed)
    before = (local_build / "manifest.parquet").read_bytes()
    info = build(corpus_settings(local_build, corpus_site[1], workers=0, resume=True, threads=1))
    assert info == load_info(str(local_build)).data and (local_build / "manifest.parquet").read_bytes() == before


def test_a_folder_source_reads_files_and_tar_members(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [c for c in file_cases() if c.ext in ("jpg", "png", "webp", "tif", "gif")]
    inside_tar = {"exif-rotated", "png16", "truncated"}
    with tarfile.open(folder / "shard.tar", "w") as tar:
        for case in cases:
            if case.name in inside_tar:
                info = tarfile.TarInfo(case.filename)
                info.size = len(case.data)
                tar.addfile(info, io.BytesIO(case.data))
            else:
                (folder / case.filename).write_bytes(case.data)
    settings = BuildSettings(
        source="folder",
        out=str(tmp_path / "out"),
        sources=SourceSettings(folder=FolderSettings(folder=str(folder))),
        filters=CORPUS_FILTERS,
        workers=0,
        threads=2,
        shard_size=4,
        progress=False,
    )
    build(settings)
    manifest, rejects = read_manifest(settings.out), read_rejects(settings.out)
    got = {r.source_id: ("kept", (r.width, r.height)) for r in manifest.itertuples()}
    got |= {r.source_id: (r.reason,) for r in rejects.itertuples()}
    for case in cases:
        source_id = f"shard.tar/{case.filename}" if case.name in inside_tar else case.filename
        assert got[source_id] == (("kept", case.size) if case.expect == "kept" else (case.expect,)), case.name
    assert verify(settings.out).ok


def test_any_fsspec_url_can_be_the_output():
    out = "memory://anyres-tests/demo"
    settings = BuildSettings(
        source="demo",
        out=out,
        sources=SourceSettings(demo=DemoSettings(count=5, max_side=400)),
        workers=0,
        shard_size=2,
        progress=False,
    )
    info = build(settings)
    assert info["counts"]["kept"] == 5 and info["shards"] == ["demo-000000.tar", "demo-000001.tar", "demo-000002.tar"]
    assert verify(out).ok
    assert len(read_manifest(out)) == 5


def test_cli_build_with_a_yaml_config_then_info(tmp_path):
    config = tmp_path / "demo.yaml"
    config.write_text("source: demo\nsources:\n  demo:\n    count: 4\n    max_side: 500\nfilters:\n  min_size: 250\n")
    out = tmp_path / "demo-out"
    runner = CliRunner()
    args = ["build", "--config", str(config), "--out", str(out), "--workers", "0", "--min-size", "300", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    info = load_info(str(out)).data
    assert info["settings"]["filters"]["min_size"] == 300 and info["settings"]["sources"]["demo"]["count"] == 4
    manifest = read_manifest(str(out))
    assert (manifest[["width", "height"]].min(axis=1) >= 300).all()
    assert info["counts"]["kept"] + info["counts"]["rejected"].get("below_min_size", 0) == 4
    result = runner.invoke(app, ["info", str(out)])
    assert result.exit_code == 0 and "kept" in result.output and "shorter side" in result.output
    result = runner.invoke(app, ["build", "--source", "demo", "--out", str(out), "--workers", "0"])
    assert result.exit_code == 2 and "--resume" in result.output
