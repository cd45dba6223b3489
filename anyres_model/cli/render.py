"""`anyres-render`: images of any size, or zoom strips, from a generator checkpoint (`anyres_model.render`)."""

from __future__ import annotations

from pathlib import Path

import typer

from anyres_data.cli.errors import user_errors
from anyres_data.cli.flags import typer_options
from anyres_model.render import RenderSettings, run_render


def _command(
    settings: RenderSettings,
    checkpoint: Path = typer.Argument(
        ..., exists=True, help="checkpoint file, or a training run directory (its newest checkpoint)"
    ),
) -> None:
    """Render an image (or a zoom strip) of any size from a generator checkpoint."""
    with user_errors():
        written = run_render(settings, checkpoint)
    typer.echo(f"wrote {written[0]}" if len(written) == 1 else f"wrote {len(written)} images to {settings.outdir}")


app = typer.Typer(add_completion=False, help="Render images of any size, or zoom strips, from a generator checkpoint.")
app.command()(typer_options(RenderSettings, _command))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
