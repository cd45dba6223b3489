"""`anyres-train`: the training command (`anyres_model.training.train`); `--dry-run` prints the resolved settings."""

from __future__ import annotations

import json

import typer

from anyres_data.cli.errors import user_errors
from anyres_data.cli.flags import typer_options
from anyres_data.settings import to_dict
from anyres_model.training import distributed
from anyres_model.training.config import TrainConfig
from anyres_model.training.train import __doc__ as TRAIN_HELP
from anyres_model.training.train import train


def _command(
    cfg: TrainConfig,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved settings as JSON and exit."),
) -> None:
    """Train the any-resolution generator (phase 1: --phase global; phase 2: --phase patch --init CKPT)."""
    if dry_run:
        typer.echo(json.dumps(to_dict(cfg), indent=2))
        return
    with user_errors():
        path = train(cfg)
    if distributed.rank_from_env() == 0:
        typer.echo(f"last checkpoint: {path}")


app = typer.Typer(add_completion=False, help=TRAIN_HELP.split("\n\n")[0])
app.command()(typer_options(TrainConfig, _command))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
