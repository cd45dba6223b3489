"""The README's Python quick start runs as printed."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start() -> str:
    section = README.read_text().split("## Python quick start", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_the_readme_python_quick_start_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(quick_start(), str(README), "exec"), {"__name__": "quick_start"})
    with Image.open(tmp_path / "out" / "quickstart" / "render.png") as image:
        assert image.size == (96, 96)
    assert (tmp_path / "out" / "quickstart" / "manifest.parquet").exists()
