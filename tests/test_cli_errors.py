"""A user's mistake costs one line, `error: ...`, and exit code 2, from every CLI (no traceback)."""

from __future__ import annotations

import socket

import dask
import fsspec
import pytest
from typer.testing import CliRunner

from anyres_data.cli.app import app as data_app
from anyres_model.cli.evaluate import app as eval_app
from anyres_model.cli.render import app as render_app
from anyres_model.cli.train import app as train_app


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("app", [render_app, eval_app])
def test_a_run_without_checkpoints(app, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    args = [str(run)] if app is render_app else [str(run), "--data", str(tmp_path), "--device", "cpu"]
    line = one_line_error(CliRunner().invoke(app, args))
    assert "holds no checkpoints" in line


def test_a_scheduler_that_nobody_runs(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["build", "--source", "demo", "--demo-count", "2", "--out", str(tmp_path / "out"), "--no-progress"]
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        result = CliRunner().invoke(data_app, [*args, "--scheduler", f"tcp://127.0.0.1:{port}"])
    line = one_line_error(result)
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in line


def test_an_in_memory_out_with_workers():
    out = "memory://anyres-cli-errors/demo"
    args = ["build", "--source", "demo", "--demo-count", "2", "--out", out, "--workers", "1", "--no-progress"]
    line = one_line_error(CliRunner().invoke(data_app, args))
    assert "--workers 0" in line
    assert not fsspec.filesystem("memory").exists("/anyres-cli-errors")


def test_bad_settings_go_through_the_same_helper(tmp_path):
    line = one_line_error(CliRunner().invoke(train_app, ["--phase", "sideways", "--dry-run"]))
    assert "phase" in line
