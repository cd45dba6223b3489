"""The layers: the import contracts in pyproject.toml hold (`lint-imports`), and the networks load without
the CLI stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_networks_import_neither_the_cli_nor_fsspec():
    """Every module of networks and ops, with the settings and patch specs they build on."""
    code = """
import importlib, json, pkgutil, sys
import anyres_model.networks, anyres_model.ops
for package in (anyres_model.networks, anyres_model.ops):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
import anyres_data.settings, anyres_data.spec
print(json.dumps(sorted(m for m in ("typer", "rich", "click", "fsspec") if m in sys.modules)))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def test_the_import_contracts_hold():
    """`lint-imports` (import-linter) on the contracts in pyproject.toml; `make test` runs it too."""
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
