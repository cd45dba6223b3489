"""Builds against hostile and unlucky inputs: flaky servers, dead sources, pipes, bad tars, odd names, long keys.

Everything is real: a loopback HTTP server (tests/support/http_server.py), files, named pipes and tars in
a temporary folder, a Dask LocalCluster.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import tarfile

import numpy as np
import pytest
from typer.testing import CliRunner

from anyres_data.build import BuildSettings, EmptyBuildError, build
from anyres_data.build.fetch import FetchSettings
from anyres_data.candidate import MAX_KEY_LENGTH
from anyres_data.cli.app import app
from anyres_data.dataset import read_manifest, read_rejects
from anyres_data.dataset.shards import read_shard
from anyres_data.dataset.verify import verify
from anyres_data.sampling.cache import find_cache
from anyres_data.sampling.cache_build import CacheSettings, build_cache
from anyres_data.sources import SourceSettings
from anyres_data.sources.folder import FolderSettings, iter_folder
from tests.support.builds import url_list_settings
from tests.support.guard import finishes
from tests.support.http_server import ImageServer
from tests.support.photos import encode, structured_image


def jpeg(seed: int, width: int = 240, height: int = 180) -> bytes:
    return encode(structured_image(width, height, seed=seed), "JPEG", quality=90)


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def url_settings(out, url_list, **options) -> BuildSettings:
    fetch = FetchSettings(timeout=2.0, first_byte_timeout=2.0, retries=0, backoff=0.01)
    return url_list_settings(out, url_list, **({"name": "x", "shard_size": 2, "threads": 2, "fetch": fetch} | options))


def folder_settings(folder, out, **options) -> BuildSettings:
    folder = SourceSettings(folder=FolderSettings(folder=str(folder)))
    return BuildSettings(source="folder", out=str(out), sources=folder, workers=0, progress=False, **options)


def outcomes(out) -> dict[str, str]:
    manifest, rejects = read_manifest(str(out)), read_rejects(str(out))
    return {r.url: "kept" for r in manifest.itertuples()} | {r.url: r.reason for r in rejects.itertuples()}


def shard_keys(out) -> list[str]:
    keys = []
    for shard in sorted((out / "shards").glob("*.tar")):
        keys += [sample["__key__"] for sample in read_shard(str(shard))]
    return keys


def test_transient_failures_are_retried_at_the_end_of_the_build_and_on_resume(tmp_path, cluster, caplog):
    with ImageServer() as server:
        urls = [server.add(f"/p{i}.jpg", jpeg(i)) for i in range(5)]
        once = server.add("/once.jpg", jpeg(10), fail_first=1)  # 503 once, then served
        twice = server.add("/twice.jpg", jpeg(11), fail_first=2, fail_with="reset")  # reset twice
        gone = server.add("/gone.jpg", b"no", status=404, content_type="text/html")  # not transient
        listed = [urls[0], once, urls[1], twice, gone, *urls[2:]]
        url_list = tmp_path / "urls.txt"
        url_list.write_text("\n".join(listed) + "\n")
        out = tmp_path / "out"
        build(url_settings(out, url_list, scheduler=cluster.scheduler_address))
        got = outcomes(out)
        assert got[once] == "kept" and server.hits["/once.jpg"] == 2  # failed in its shard, kept at the end
        assert got[twice] == "connection_error" and server.hits["/twice.jpg"] == 2
        assert got[gone] == "http_404" and server.hits["/gone.jpg"] == 1
        cached = build_cache(str(out), CacheSettings(workers=0, progress=False))

        with caplog.at_level(logging.WARNING, logger="anyres_data"):
            info = build(url_settings(out, url_list, workers=0, resume=True))  # a finished build
        assert outcomes(out)[twice] == "kept" and server.hits["/twice.jpg"] == 3
        assert info["counts"] == {"candidates": 8, "kept": 7, "rejected": {"http_404": 1}}
        # the cache recorded before stays recorded (the loader still finds it), and the log says to extend it
        assert info["cache"]["counts"] == cached["counts"] and find_cache(str(out)) is not None
        assert f"run `anyres-data cache {out}` again" in caplog.text
        assert verify(str(out)).ok
        manifest = read_manifest(str(out))
        assert shard_keys(out) == list(manifest["key"])  # in candidate order, shard by shard
        assert list(manifest["url"]) == [u for u in listed if u != gone]

        with caplog.at_level(logging.INFO, logger="anyres_data"):
            build(url_settings(out, url_list, workers=0, resume=True))
        assert "nothing to do" in caplog.text and server.hits["/gone.jpg"] == 1


def test_a_build_where_every_candidate_fails_the_same_way_says_so_and_exits_non_zero(tmp_path):
    url_list = tmp_path / "dead.txt"
    url_list.write_text("".join(f"http://127.0.0.1:9/{i}.jpg\n" for i in range(3)))  # nothing listens on port 9
    base = ["build", "--source", "urls", "--url-list", str(url_list), "--workers", "0", "--no-progress"]
    base += ["--fetch-retries", "0", "--retry-pause", "0"]
    result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "all 3 candidates were rejected as connection_error" in result.output
    assert "http://127.0.0.1:9/0.jpg" in result.output and "--resume" in result.output
    result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "b"), "--allow-empty"])
    assert result.exit_code == 0 and "connection_error" in result.output
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyBuildError, match="proposed no candidates"):
        build(folder_settings(tmp_path / "empty", tmp_path / "c"))


def hostile_folder(root):
    """A folder of good photos and bad neighbours; returns ({source_id: expected outcome}, {source_id: bytes})."""
    folder = root / "folder"
    folder.mkdir()
    data = {"a.jpg": jpeg(1), "a::b.jpg": jpeg(2), "z.jpg": jpeg(3)}
    for name, payload in data.items():
        (folder / name).write_bytes(payload)
    elsewhere = root / "elsewhere.jpg"
    elsewhere.write_bytes(jpeg(4))
    (root / "b.jpg").write_bytes(jpeg(5))  # what a::b.jpg must not be read as (from the working directory)
    os.mkfifo(folder / "pipe.jpg")
    secret = root / "secret.txt"
    secret.write_text("root:x:0:0:secret-token-123\n")
    (folder / "passwd.jpg").symlink_to(secret)
    (folder / "bad.tar").write_bytes(np.random.default_rng(0).bytes(3000))
    inside = {f"x::{elsewhere}": jpeg(6), "m1.jpg": jpeg(7), "m2.jpg": jpeg(8)}
    with tarfile.open(folder / "s.tar", "w") as tar:
        for name, payload in inside.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    cut = {"m1.jpg": jpeg(12), "m2.jpg": jpeg(13)}
    with tarfile.open(root / "whole.tar", "w") as tar:
        for name, payload in cut.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    with tarfile.open(root / "whole.tar") as tar:
        last = tar.getmember("m2.jpg")
    whole = (root / "whole.tar").read_bytes()
    (folder / "t-cut.tar").write_bytes(whole[: last.offset_data + last.size // 2])  # cut in m2.jpg's bytes
    data |= {f"s.tar/{name}": payload for name, payload in inside.items()} | {"t-cut.tar/m1.jpg": cut["m1.jpg"]}
    expected = {name: "kept" for name in data}
    expected |= {"pipe.jpg": "read_error", "passwd.jpg": "not_an_image", "bad.tar": "read_error"}
    expected |= {"t-cut.tar/m2.jpg": "read_error", "t-cut.tar": "read_error"}
    return folder, expected, data


def test_a_folder_with_a_pipe_bad_tars_and_double_colon_names_builds_the_rest(tmp_path, monkeypatch):
    folder, expected, data = hostile_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    settings = folder_settings(folder, tmp_path / "out", threads=2, shard_size=3)
    finishes(build, settings, within=120)  # a pipe or a bad tar used to hang or crash it
    manifest, rejects = read_manifest(settings.out), read_rejects(settings.out)
    got = {r.source_id: "kept" for r in manifest.itertuples()} | {r.source_id: r.reason for r in rejects.itertuples()}
    assert got == expected
    for row in manifest.itertuples():  # each file's own bytes: no name was read as a URL chain
        assert row.sha256 == hashlib.sha256(data[row.source_id]).hexdigest(), row.source_id
    messages = " ".join(rejects["message"])
    assert "secret-token" not in messages and "root:x" not in messages and "text" in messages
    assert "named pipe" in messages and "bad.tar" in messages
    assert verify(settings.out).ok

    # interrupted while planning (as by kill -9), then resumed: past the bad tar, to the same dataset
    out = tmp_path / "interrupted"

    def until_the_third() -> object:
        for i, candidate in enumerate(iter_folder(settings.sources.folder)):
            if i == 3:
                raise KeyboardInterrupt
            yield candidate

    interrupted = dataclasses.replace(settings, out=str(out))
    with pytest.raises(KeyboardInterrupt):
        build(interrupted, candidates=until_the_third())
    build(dataclasses.replace(interrupted, resume=True))
    assert list(read_manifest(str(out))["sha256"]) == list(manifest["sha256"])
    assert sorted(read_rejects(str(out))["reason"]) == sorted(rejects["reason"])


def test_long_ids_make_keys_every_tar_and_file_system_accept(tmp_path):
    folder = tmp_path / "folder"
    deep = folder / ("a" * 120) / ("b" * 120)
    deep.mkdir(parents=True)
    (deep / ("c" * 120 + ".jpg")).write_bytes(jpeg(1))
    (deep / ("c" * 119 + "d.jpg")).write_bytes(jpeg(2))  # same first 200 characters: the hash keeps them apart
    settings = folder_settings(folder, tmp_path / "out")
    build(settings)
    keys = list(read_manifest(settings.out)["key"])
    assert len(keys) == 2 and len(set(keys)) == 2 and all(len(k) == MAX_KEY_LENGTH for k in keys)
    (shard,) = (tmp_path / "out" / "shards").glob("*.tar")
    with tarfile.open(shard) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")  # what `tar x` does: one file per member
    assert sorted(p.name for p in (tmp_path / "extracted").iterdir()) == sorted(
        f"{k}.{ext}" for k in keys for ext in ("jpg", "json")
    )


def test_large_downloads_are_spilled_to_disk_and_stored_exactly(tmp_path, cluster):
    with ImageServer() as server:
        photos = {server.add(f"/big{i}.jpg", jpeg(20 + i, 900, 700)): jpeg(20 + i, 900, 700) for i in range(3)}
        photos[server.add("/small.jpg", jpeg(30, 64, 64))] = jpeg(30, 64, 64)
        url_list = tmp_path / "urls.txt"
        url_list.write_text("\n".join(photos) + "\n")
        fetch = FetchSettings(timeout=2.0, retries=0, spill_bytes=20_000)  # the large ones go to temporary files
        out = tmp_path / "out"
        build(url_settings(out, url_list, fetch=fetch, scheduler=cluster.scheduler_address))
    manifest = read_manifest(str(out))
    assert {r.url: r.sha256 for r in manifest.itertuples()} == {
        url: hashlib.sha256(data).hexdigest() for url, data in photos.items()
    }
    stored = {}
    for shard in (out / "shards").glob("*.tar"):
        stored |= {s["__key__"]: s["jpg"] for s in read_shard(str(shard))}
    assert sorted(stored.values()) == sorted(photos.values()) and verify(str(out)).ok
