"""Small any-resolution datasets built with the real build job, for training and evaluation tests."""

from __future__ import annotations

from pathlib import Path

from anyres_data.build import BuildSettings, build
from anyres_data.sources import SourceSettings
from anyres_data.sources.demo import DemoSettings


def build_demo(out: Path, *, count: int = 12, min_side: int = 40, max_side: int = 160, seed: int = 0) -> Path:
    """A demo-source dataset of `count` images with sides in [min_side, max_side], built in-process."""
    settings = BuildSettings(
        source="demo",
        out=str(out),
        sources=SourceSettings(demo=DemoSettings(count=count, seed=seed, min_side=min_side, max_side=max_side)),
        shard_size=4,
        workers=0,
        threads=2,
        progress=False,
    )
    build(settings)
    return out
