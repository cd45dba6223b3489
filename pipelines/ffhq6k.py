"""FFHQ6k, the paper's controlled any-resolution set (Chai et al., ECCV 2022, §4), built from FFHQ at 1024.

From a folder of the 70,000 FFHQ images at 1024×1024 (`images1024x1024/` of the FFHQ release),
three builds:

    OUT/lr          all 70,000 images at 256×256: the LR set (phase 1, and the global samples)
    OUT/hr-uniform  5,000 of them, each downsampled to a side drawn uniformly in 512..1024
    OUT/hr-full     1,000 others at their full 1024 (original bytes)

OUT/hr-uniform and OUT/hr-full together are the HR set, the "6k". The two subsets are disjoint: both
rank the images by a seeded hash of their keys and take ranks [0, 5000) and [5000, 6000). Sizes are
drawn per image from the same kind of hash, so a rerun or `--resume` builds the same dataset.
Images are kept whole (no near-duplicate removal): the paper uses all of FFHQ.

    python pipelines/ffhq6k.py --folder ~/data/ffhq/images1024x1024 --out data/ffhq6k --workers 8
    anyres-data stats data/ffhq6k/hr-uniform data/ffhq6k/hr-full --lr data/ffhq6k/lr --plot ffhq6k.png

and train with the HR set `data/ffhq6k/hr-uniform::data/ffhq6k/hr-full`, the LR set `data/ffhq6k/lr`.
Every size is a setting (`--lr-side`, `--hr-min-side`, ...), so a scaled-down stand-in folder builds
the same recipe in miniature (the tests do that).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import typer
from rich.console import Console

from anyres_data import storage
from anyres_data.build import BuildError, BuildSettings, build
from anyres_data.build.resize import ResizeSettings
from anyres_data.build.subset import SubsetSettings
from anyres_data.cli.build import run_build
from anyres_data.cli.errors import user_errors
from anyres_data.cli.flags import typer_options
from anyres_data.filters import FilterSettings
from anyres_data.settings import setting
from anyres_data.sources import FolderSettings, SourceSettings


@dataclass(frozen=True)
class FFHQ6kSettings:
    """Where FFHQ is, where FFHQ6k goes, and the recipe's sizes and counts (the paper's by default)."""

    folder: str | None = setting(None, "folder of the FFHQ images at 1024 (any fsspec URL)")
    out: str | None = setting(None, "output folder: lr/, hr-uniform/ and hr-full/ are built inside")
    lr_side: int = setting(256, "side of the LR images, px")
    hr_min_side: int = setting(512, "smallest side drawn for the resized HR images, px")
    hr_max_side: int = setting(1024, "largest side drawn for the resized HR images, px (inclusive)")
    hr_count: int = setting(5000, "HR images resized to a side uniform in [hr_min_side, hr_max_side]")
    full_count: int = setting(1000, "other HR images kept at full resolution")
    seed: int = setting(0, "seed of the subsets and of the drawn sizes")
    format: Literal["png", "jpg"] = setting("png", "encoding of resized images (FFHQ is PNG: lossless by default)")
    shard_size: int = setting(100, "images per shard")
    workers: int = setting(2, "Dask worker processes (0: build in this process)")
    threads: int = setting(8, "threads per shard task")
    resume: bool = setting(False, "continue interrupted builds in OUT")
    progress: bool = setting(True, "show progress bars")


def recipe(settings: FFHQ6kSettings) -> dict[str, BuildSettings]:
    """The three builds, by name: lr, hr-uniform, hr-full. Raises ValueError without --folder and --out."""
    if not settings.folder or not settings.out:
        raise ValueError("give the FFHQ folder with --folder and the output folder with --out")
    base = BuildSettings(
        source="folder",
        sources=SourceSettings(folder=FolderSettings(folder=settings.folder)),
        filters=FilterSettings(near_duplicate_distance=-1),
        shard_size=settings.shard_size,
        workers=settings.workers,
        threads=settings.threads,
        resume=settings.resume,
        progress=settings.progress,
    )
    out = settings.out.rstrip("/")
    lr = ResizeSettings(mode="fixed", size=settings.lr_side, format=settings.format)
    uniform = ResizeSettings(
        mode="uniform",
        min_size=settings.hr_min_side,
        max_size=settings.hr_max_side,
        seed=settings.seed,
        format=settings.format,
    )
    return {
        "lr": dataclasses.replace(base, out=storage.join(out, "lr"), resize=lr),
        "hr-uniform": dataclasses.replace(
            base,
            out=storage.join(out, "hr-uniform"),
            subset=SubsetSettings(count=settings.hr_count, seed=settings.seed),
            resize=uniform,
        ),
        "hr-full": dataclasses.replace(
            base,
            out=storage.join(out, "hr-full"),
            subset=SubsetSettings(count=settings.full_count, skip=settings.hr_count, seed=settings.seed),
        ),
    }


def run(settings: FFHQ6kSettings) -> dict[str, dict[str, Any]]:
    """Run the three builds; returns each one's dataset.json by name. Raises as `anyres_data.build.job.build`."""
    return {name: build(build_settings) for name, build_settings in recipe(settings).items()}


def _command(settings: FFHQ6kSettings) -> None:
    """Build FFHQ6k (LR set at 256, HR set of 5k images at 512-1024 plus 1k at 1024) from a folder of FFHQ."""
    console = Console(stderr=True)
    infos = {}
    with user_errors(BuildError):
        for name, build_settings in recipe(settings).items():
            console.rule(f"FFHQ6k: {name}")
            infos[name] = run_build(build_settings, console)
    kept = {name: info["counts"]["kept"] for name, info in infos.items()}
    console.print(f"FFHQ6k in {settings.out}: " + ", ".join(f"{name} {n:,} images" for name, n in kept.items()))


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])
app.command()(typer_options(FFHQ6kSettings, _command))


if __name__ == "__main__":
    app()
