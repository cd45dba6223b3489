"""A newcomer's first builds: a failed one leaves --out as it found it, a real partial one says the exact command
to go on, and one on Dask workers serves the dashboard on a free port."""

from __future__ import annotations

import itertools
import logging
import re
import socket
import warnings

import dask
import pytest
from typer.testing import CliRunner

from anyres_data.build import BuildSettings, build
from anyres_data.cli.app import app
from anyres_data.dataset import load_info
from anyres_data.sources import SourceSettings, iter_candidates
from anyres_data.sources.demo import DemoSettings

DEMO = ["--source", "demo", "--demo-count", "3", "--demo-max-side", "300", "--workers", "0", "--no-progress"]


def flat(output: str) -> str:
    return " ".join(output.split())


def test_a_missing_folder_leaves_no_output_behind_and_the_corrected_command_just_runs(tmp_path):
    out, photos = tmp_path / "out", tmp_path / "photos"
    runner = CliRunner()
    args = ["build", "--source", "folder", "--out", str(out), "--workers", "0", "--no-progress"]
    result = runner.invoke(app, [*args, "--folder", str(tmp_path / "nonexistent")])
    assert result.exit_code == 2 and "no such folder" in flat(result.output)
    assert not out.exists()
    photos.mkdir()
    result = runner.invoke(app, ["build", *DEMO, "--out", str(photos / "demo")])  # some real photos
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*args, "--folder", str(photos / "demo" / "shards")])
    assert result.exit_code == 0, result.output
    assert load_info(str(out)).counts["kept"] == 3


def test_a_missing_flickr_key_leaves_an_empty_output_folder_empty(tmp_path, monkeypatch):
    monkeypatch.delenv("FLICKR_API_KEY", raising=False)
    out = tmp_path / "out"
    out.mkdir()
    args = ["build", "--source", "flickr", "--query", "church", "--out", str(out), "--workers", "0", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "no Flickr API key" in flat(result.output)
    assert out.is_dir() and not list(out.iterdir())


def test_an_unreachable_scheduler_leaves_no_output_behind(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    settings = BuildSettings(
        source="demo",
        out=str(out),
        sources=SourceSettings(demo=DemoSettings(count=2, max_side=300)),
        scheduler=f"tcp://127.0.0.1:{port}",
        progress=False,
    )
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(ValueError, match="cannot reach the Dask scheduler"),
    ):
        build(settings)
    assert not out.exists()


def test_a_real_partial_build_says_how_to_resume_and_how_to_start_over(tmp_path):
    out = tmp_path / "out"
    demo = DemoSettings(count=3, max_side=300)
    settings = BuildSettings(
        source="demo", out=str(out), sources=SourceSettings(demo=demo), shard_size=1, workers=0, progress=False
    )

    def dies_after_two():  # the source fails while the third candidate is read: two shards are done
        yield from itertools.islice(iter_candidates("demo", settings.sources), 2)
        raise ConnectionError("the source went away")

    with pytest.raises(ConnectionError):
        build(settings, candidates=dies_after_two())
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["out-000000.tar", "out-000001.tar"]
    runner = CliRunner(env={"COLUMNS": "1000"})  # long paths on one line
    result = runner.invoke(app, ["build", *DEMO, "--out", str(out), "--shard-size", "1"])
    message = flat(result.output)
    assert result.exit_code == 2 and "an unfinished build (2 shards done)" in message, message
    assert f"rm -r {out}" in message
    found = re.search(r"`anyres-data (build --config \S+ --resume)`", message)
    assert found, message
    command = found.group(1)
    result = runner.invoke(app, ["build", *DEMO, "--out", str(out), "--shard-size", "2", "--resume"])
    message = flat(result.output)
    assert result.exit_code == 2 and "shard_size: 1 -> 2" in message and command in message, message
    result = runner.invoke(app, command.split())  # the command the message gave, as it is
    assert result.exit_code == 0, result.output
    assert load_info(str(out)).counts["kept"] == 3


def test_a_build_on_workers_serves_the_dask_dashboard_on_a_free_port_and_prints_its_link(tmp_path, caplog):
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 8787))  # what another Dask cluster on this machine would hold
        taken.listen()
    except OSError:
        pass  # already taken by something else: the same situation
    settings = BuildSettings(
        source="demo",
        out=str(tmp_path / "out"),
        sources=SourceSettings(demo=DemoSettings(count=2, max_side=300)),
        workers=1,
        progress=False,
    )
    with taken, warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, logger="anyres_data"):
        warnings.simplefilter("always")
        build(settings)
    assert not [w for w in caught if "already in use" in str(w.message)]
    link = re.search(r"Dask dashboard: (http://\S+)", caplog.text)
    assert link and ":8787/" not in link.group(1)
