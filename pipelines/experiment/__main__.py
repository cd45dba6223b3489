"""`python -m pipelines.experiment run`: the experiment's command line (see the package docstring)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from anyres_data.cli.flags import typer_options
from anyres_data.settings import to_dict
from pipelines.experiment import __doc__ as overview
from pipelines.experiment.diagnostics import evaluation_spread, scale_branch_ablation, teacher_gap, zoom_probe
from pipelines.experiment.run import run
from pipelines.experiment.settings import ExperimentSettings

app = typer.Typer(add_completion=False, help=overview.split("\n\n")[0])


def _run(cfg: ExperimentSettings) -> None:
    """Run (or continue) the experiment and print its tables."""
    typer.echo(f"results in {run(cfg)}")


app.command("run")(typer_options(ExperimentSettings, _run))
app.command("settings", help="Print the default settings as JSON.")(
    lambda: typer.echo(json.dumps(to_dict(ExperimentSettings()), indent=2))
)


@app.command("probe")
def _probe(
    seeds: int = typer.Option(2, help="Fresh generators per kernel size."),
    preset: str = typer.Option("tiny64", help="Generator size (tiny or tiny64)."),
) -> None:
    """Zoom consistency of freshly initialised generators, 3×3 against 1×1 convolutions (relative to other latents)."""
    for kernel in (3, 1):
        for seed in range(seeds):
            values = {k: round(v, 2) for k, v in zoom_probe(conv_kernel=kernel, seed=seed, preset_name=preset).items()}
            typer.echo(f"conv_kernel {kernel}, seed {seed}: {values}")


@app.command("scale-branch")
def _scale_branch(
    checkpoint: Path = typer.Argument(..., help="A phase-2 checkpoint."),
    count: int = typer.Option(300, help="Held-out patches per scale."),
) -> None:
    """Consistency and pSWD of a phase-2 G as trained and with its scale branch zeroed."""
    for name, row in scale_branch_ablation(checkpoint, ExperimentSettings(eval_count=count)).items():
        typer.echo(f"{name}: " + json.dumps({k: round(v, 3) for k, v in row.items()}))


@app.command("eval-spread")
def _eval_spread(
    checkpoint: Path = typer.Argument(..., help="A phase-2 checkpoint."),
    seeds: int = typer.Option(4, help="Latent seeds: the table's and seeds − 1 others."),
    count: int = typer.Option(500, help="Held-out patches (the run's --eval-count)."),
) -> None:
    """Random-scale pSWD of one checkpoint under other latent seeds: the evaluation's own spread."""
    values = evaluation_spread(checkpoint, ExperimentSettings(eval_count=count), seeds=seeds)
    typer.echo(json.dumps(values, indent=1))
    typer.echo(f"range {max(values.values()) - min(values.values()):.1f}")


@app.command("teacher-gap")
def _teacher_gap(
    teacher: Path = typer.Argument(..., help="The teacher: phase 1's last checkpoint."),
    students: list[Path] = typer.Argument(..., help="Phase-2 checkpoints."),
    count: int = typer.Option(20, help="Latents."),
) -> None:
    """How far each student's renders and p×p image lie from its teacher's p×p image."""
    for student in students:
        row = teacher_gap(teacher, student, count=count)
        typer.echo(f"{student}: " + json.dumps({k: round(v, 3) for k, v in row.items()}))


if __name__ == "__main__":
    app()
