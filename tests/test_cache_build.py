"""`anyres-data cache` on real built datasets, and the loader reading from what it wrote.

Real builds (the demo source), real libvips entries, a real Dask LocalCluster, a real `kill -9`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import numpy as np
import pytest

from anyres_data.dataset import load_info, read_manifest
from anyres_data.sampling import SamplerSettings
from anyres_data.sampling.cache import CacheFormat, encode_entry, open_cache
from anyres_data.sampling.cache_build import CacheSettings, build_cache
from anyres_data.sampling.loader import LoaderSettings, make_loader
from tests.support.photos import encode
from tests.support.tiny_data import build_demo

QUIET = dict(progress=False)


def shard_digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "shards").glob("*.tar"))}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return build_demo(tmp_path_factory.mktemp("cache") / "demo", count=10, min_side=60, max_side=320, seed=3)


def test_cache_beside_the_shards_records_itself_and_leaves_the_originals(dataset, tmp_path):
    out = tmp_path / "demo"
    subprocess.run(["cp", "-r", str(dataset), str(out)], check=True)
    before = shard_digests(out)
    record = build_cache(str(out), CacheSettings(workers=0, format=CacheFormat(min_side=100), **QUIET))
    manifest = read_manifest(str(out))
    wanted = manifest[manifest[["width", "height"]].min(axis=1) >= 100]
    assert 0 < len(wanted) < len(manifest)  # the demo's sizes straddle min_side
    assert sorted(p.stem for p in (out / "cache").glob("*.tif")) == sorted(wanted["key"])
    assert record["counts"] == {
        "written": len(wanted),
        "present": 0,
        "not_wanted": len(manifest) - len(wanted),
        "failed": 0,
    }
    assert record["original_bytes"] == int(wanted["bytes"].sum()) and record["entry_bytes"] > 0
    assert load_info(str(out)).data["cache"]["url"] == "cache"
    assert open_cache(str(out / "cache")).ycbcr
    assert shard_digests(out) == before
    # a second run finds every shard done and changes nothing
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "cache").glob("*.tif")}
    again = build_cache(str(out), CacheSettings(workers=0, format=CacheFormat(min_side=100), **QUIET))
    assert again["counts"] == record["counts"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cache").glob("*.tif")} == mtimes
    with pytest.raises(ValueError, match="another format"):
        build_cache(str(out), CacheSettings(workers=0, format=CacheFormat(quality=80, colour="rgb"), **QUIET))


def test_cache_on_a_local_dask_cluster_to_another_folder(dataset, tmp_path):
    out = tmp_path / "demo"
    subprocess.run(["cp", "-r", str(dataset), str(out)], check=True)
    elsewhere = tmp_path / "elsewhere"
    record = build_cache(str(out), CacheSettings(to=str(elsewhere), workers=1, **QUIET))
    assert record["counts"]["written"] == len(read_manifest(str(out)))
    assert load_info(str(out)).data["cache"]["url"] == str(elsewhere)
    assert len(list(elsewhere.glob("*.tif"))) == record["counts"]["written"]


def test_cache_to_an_fsspec_url(dataset, tmp_path):
    out = tmp_path / "demo"
    subprocess.run(["cp", "-r", str(dataset), str(out)], check=True)
    record = build_cache(str(out), CacheSettings(to="memory://cache-build-test", workers=0, **QUIET))
    fs = fsspec.filesystem("memory")
    try:
        assert len(fs.glob("/cache-build-test/*.tif")) == record["counts"]["written"] > 0
    finally:
        fs.rm("/cache-build-test", recursive=True)


def test_killed_run_resumes_to_the_same_cache(tmp_path):
    out = build_demo(tmp_path / "big", count=8, min_side=900, max_side=1400, seed=5)
    command = [sys.executable, "-m", "anyres_data.cli", "cache", str(out), "--workers", "0", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((out / "cache").glob("*.tif")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = len(list((out / "cache").glob("*.tif")))
    assert 0 < written < 8 and not (out / "cache" / "cache.json").exists(), "the run was not interrupted midway"
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = open_cache(str(out / "cache"))
    assert record.ycbcr
    entries = sorted(p.stem for p in (out / "cache").glob("*.tif"))
    assert entries == sorted(read_manifest(str(out))["key"])
    assert not list((out / "cache" / "_tmp").glob("*")) if (out / "cache" / "_tmp").exists() else True
    # every entry whole: the same bytes as an uninterrupted run's
    fresh = tmp_path / "fresh"
    subprocess.run(["cp", "-r", str(out), str(fresh)], check=True)
    subprocess.run(["rm", "-r", str(fresh / "cache")], check=True)
    build_cache(str(fresh), CacheSettings(workers=0, **QUIET))
    for key in entries:
        assert (fresh / "cache" / f"{key}.tif").read_bytes() == (out / "cache" / f"{key}.tif").read_bytes()


def loader_batches(out: Path, n: int, **options) -> tuple[list, dict]:
    settings = LoaderSettings(hr=str(out), batch_size=4, workers=0, shuffle_buffer=0, **options)
    loader = make_loader(settings, SamplerSettings(p=48, global_prob=0.0))
    batches = [batch for _, batch in zip(range(n), loader, strict=False)]
    return batches, loader.cache_fallbacks()


def test_loader_reads_the_cache_and_falls_back_image_by_image(dataset, tmp_path):
    out = tmp_path / "demo"
    subprocess.run(["cp", "-r", str(dataset), str(out)], check=True)
    build_cache(str(out), CacheSettings(workers=0, **QUIET))
    manifest = read_manifest(str(out)).set_index("key")
    keys = sorted(manifest.index)
    # Entries of a flat grey image of the same size: patches read from the cache are flat, from originals not.
    for key in keys:
        w, h = int(manifest.loc[key, "width"]), int(manifest.loc[key, "height"])
        flat = encode(np.full((h, w, 3), 77, np.uint8), "PNG")
        (out / "cache" / f"{key}.tif").write_bytes(encode_entry(flat, CacheFormat()))
    missing, broken = keys[0], keys[1]
    (out / "cache" / f"{missing}.tif").unlink()
    (out / "cache" / f"{broken}.tif").write_bytes(b"II*\x00" + b"\x00" * 60)
    batches, fallbacks = loader_batches(out, 8)
    seen = {}
    for batch in batches:
        for key, image in zip(batch.keys, batch.images, strict=True):
            seen.setdefault(key, []).append(image)
    assert {missing, broken} <= set(seen) and len(seen) >= 5
    for key, images in seen.items():
        flat = all(int(image.max()) - int(image.min()) <= 2 and abs(int(image[0, 0, 0]) - 77) <= 1 for image in images)
        assert flat == (key not in (missing, broken)), key
    # (>=: the loader may have cut a few more ahead of the batches taken)
    assert fallbacks["missing"] >= len(seen[missing]) and fallbacks["unreadable"] >= len(seen[broken])
    _, without = loader_batches(out, 2, cache="none")
    assert without == {"missing": 0, "unreadable": 0}


def test_patches_per_decode_spreads_an_images_patches_over_batches(dataset):
    batches, _ = loader_batches(dataset, 12, patches_per_decode=4, cache="none", seed=1)
    keys = [batch.keys for batch in batches]
    assert all(len(b) == 4 for b in keys)
    # k = 4 patches per image, in batches of 4: without the buffer each batch would be one image
    assert np.mean([len(set(b)) for b in keys]) >= 2.5
    counts = {}
    for b in keys:
        for key in b:
            counts[key] = counts.get(key, 0) + 1
    assert max(counts.values()) >= 4  # images do give several patches each
