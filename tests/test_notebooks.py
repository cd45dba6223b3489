"""The notebooks run headless, top to bottom, on small data (nbclient); a cell that fails fails the test.

The kernel is this interpreter: a kernel spec named `python3` whose argv is `sys.executable -m
ipykernel_launcher`, put first on JUPYTER_PATH, so neither a user's own `python3` kernel nor the
PATH decides which Python (and which anyres) runs the notebooks. Data comes in through environment
variables the notebooks read: ANYRES_DATASET, ANYRES_LR_DATASET, ANYRES_OUT, ANYRES_CHECKPOINT.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from anyres_data.build import BuildSettings, build
from anyres_data.build.resize import ResizeSettings
from anyres_data.sources import DemoSettings, SourceSettings
from anyres_model.checkpoint import network_config, save_checkpoint
from anyres_model.networks.generator import Generator
from anyres_model.networks.presets import preset

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    """JUPYTER_PATH with a `python3` kernel spec that runs this interpreter."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "anyres tests", "language": "python"}))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny HR set (6 demo images, 150-600 px) and a tiny LR set (6 others at 64 px)."""
    root = tmp_path_factory.mktemp("data")
    common = {"workers": 0, "shard_size": 3, "progress": False}
    hr = SourceSettings(demo=DemoSettings(count=6, seed=1, min_side=150, max_side=600))
    build(BuildSettings(source="demo", out=str(root / "hr"), sources=hr, **common))
    lr = SourceSettings(demo=DemoSettings(count=6, seed=2, min_side=80, max_side=200))
    resize = ResizeSettings(mode="fixed", size=64)
    build(BuildSettings(source="demo", out=str(root / "lr"), sources=lr, resize=resize, **common))
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A randomly initialised tiny generator, saved as training saves one."""
    g_cfg, d_cfg = preset("tiny")
    torch.manual_seed(0)
    generator = Generator(g_cfg)
    path = tmp_path_factory.mktemp("run") / "checkpoint-00000000.pt"
    state = generator.state_dict()
    save_checkpoint(path, config=network_config(g_cfg, d_cfg), tensors={"G": state, "G_ema": state})
    return path


def run(name: str, *, jupyter: Path, env: dict[str, str], monkeypatch, cwd: Path = NOTEBOOKS) -> nbformat.NotebookNode:
    """Execute notebooks/NAME.ipynb in a fresh kernel (cwd `cwd`) with `env` set; returns it with outputs."""
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("IPYTHONDIR", str(jupyter / "ipython"))
    for variable in ("ANYRES_DATASET", "ANYRES_LR_DATASET", "ANYRES_OUT", "ANYRES_CHECKPOINT"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), f"{name}: stored with outputs"
    client = NotebookClient(notebook, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return notebook


def images(notebook: nbformat.NotebookNode) -> int:
    """How many images (PNG outputs: figures, PIL images) the notebook displayed."""
    return sum("image/png" in out.get("data", {}) for cell in notebook.cells for out in cell.get("outputs", []))


def test_resolution_histograms_builds_a_demo_set_and_plots_it(jupyter, data, tmp_path, monkeypatch):
    env = {"ANYRES_OUT": str(tmp_path), "ANYRES_LR_DATASET": str(data / "lr")}
    notebook = run("resolution_histograms", jupyter=jupyter, env=env, monkeypatch=monkeypatch)
    assert (tmp_path / "notebook-demo" / "dataset.json").exists()  # no dataset given: it built one
    assert images(notebook) == 2  # Fig. 4 and the discard curves
    text = json.dumps([cell.get("outputs", []) for cell in notebook.cells])
    assert "notebook-demo" in text and "lr" in text


def test_patch_sampling_draws_and_cuts_patches_of_a_given_dataset(jupyter, data, monkeypatch):
    notebook = run("patch_sampling", jupyter=jupyter, env={"ANYRES_DATASET": str(data / "hr")}, monkeypatch=monkeypatch)
    assert images(notebook) == 4  # the contact sheet, a make_loader batch, the size histogram, the scales of one image


def test_any_resolution_rendering_renders_a_given_checkpoint(jupyter, checkpoint, monkeypatch):
    env = {"ANYRES_CHECKPOINT": str(checkpoint)}
    notebook = run("any_resolution_rendering", jupyter=jupyter, env=env, monkeypatch=monkeypatch)
    assert images(notebook) == 3  # the resolutions, the zoom strip, the deep crop


def test_a_failing_cell_fails_the_run_and_says_why(jupyter, tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()  # no ../runs/demo here, and no ANYRES_CHECKPOINT
    with pytest.raises(CellExecutionError, match="make demo"):
        run("any_resolution_rendering", jupyter=jupyter, env={}, monkeypatch=monkeypatch, cwd=tmp_path / "notebooks")
