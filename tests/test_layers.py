"""The layers: the networks load without the CLI stack, and the import contracts in pyproject.toml hold."""

from __future__ import annotations

import json
import subprocess
import sys


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
