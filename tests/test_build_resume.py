"""A build killed with SIGKILL mid-way resumes (--resume) to the dataset an uninterrupted build makes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd

from anyres_data.build import BuildSettings, build
from anyres_data.dataset import MANIFEST_COLUMNS, read_manifest, read_rejects
from anyres_data.dataset.verify import verify
from anyres_data.filters import FilterSettings
from anyres_data.sources import SourceSettings
from anyres_data.sources.urls import UrlListSettings
from tests.support.http_server import ImageServer
from tests.support.photos import encode, structured_image

N_IMAGES, SHARD_SIZE = 24, 3  # 8 shards
COMPARED = [name for name in MANIFEST_COLUMNS if name != "crawled_at"]


def wait_for(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_build_killed_mid_way_resumes_to_the_uninterrupted_result(tmp_path):
    photos = [encode(structured_image(160 + 8 * i, 120 + 4 * i, seed=100 + i), "JPEG") for i in range(N_IMAGES)]
    photos[7] = photos[2]  # an exact duplicate across shards, so finalize rewrites a shard
    photos[11] = b"<html>gone</html>"
    with ImageServer() as server:
        # every answer takes 0.3 s, so the 8 shards take seconds and the kill lands mid-way
        urls = [server.add(f"/p{i}.jpg", data, delay=0.3) for i, data in enumerate(photos)]
        url_list = tmp_path / "urls.txt"
        url_list.write_text("\n".join(urls) + "\n")
        out, reference = tmp_path / "killed", tmp_path / "reference"
        command = [sys.executable, "-m", "anyres_data.cli", "build", "--source", "urls", "--url-list", str(url_list)]
        command += ["--name", "resume", "--shard-size", str(SHARD_SIZE), "--threads", "2", "--min-size", "100"]
        command += ["--no-progress", "--out", str(out)]
        log = (tmp_path / "build.log").open("w")
        process = subprocess.Popen([*command, "--workers", "1"], stdout=log, stderr=log, start_new_session=True)
        records = out / "_work" / "records"
        try:
            wait_for(
                lambda: len(list(records.glob("*.parquet"))) >= 2 or process.poll() is not None,
                timeout=180,
                what="two shards",
            )
            assert process.poll() is None, (tmp_path / "build.log").read_text()
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # the build, its Dask scheduler, nanny and worker
            process.wait()
        wait_for(lambda: not group_alive(process.pid), timeout=30, what="the killed processes to go")
        done = len(list(records.glob("*.parquet")))
        assert 2 <= done < N_IMAGES // SHARD_SIZE and not (out / "dataset.json").exists()
        # with 2 tasks in flight per worker thread, planning was interrupted too: resume continues it
        assert not (out / "_work" / "plan.json").exists()

        subprocess.run([*command, "--workers", "0", "--resume"], check=True, capture_output=True)
        settings = BuildSettings(
            source="urls",
            out=str(reference),
            name="resume",
            sources=SourceSettings(urls=UrlListSettings(url_list=str(url_list))),
            filters=FilterSettings(min_size=100),
            shard_size=SHARD_SIZE,
            threads=2,
            workers=0,
            progress=False,
        )
        build(settings)

    resumed, uninterrupted = read_manifest(str(out)), read_manifest(str(reference))
    pd.testing.assert_frame_equal(resumed[COMPARED], uninterrupted[COMPARED])
    pd.testing.assert_frame_equal(read_rejects(str(out)), read_rejects(str(reference)))
    assert set(read_rejects(str(out))["reason"]) == {"duplicate", "not_an_image"}
    assert len(resumed) == N_IMAGES - 2
    assert verify(str(out)).ok
    assert sorted(p.name for p in (out / "shards").iterdir()) == sorted(resumed["shard"].unique())
    assert not (out / "_work" / "tmp").exists()
