"""`anyres-data sample`: a contact sheet of training patches (`anyres_data.sampling.contact_sheet`) written as a PNG."""

from __future__ import annotations

from pathlib import Path

import typer

from anyres_data.cli.errors import user_errors
from anyres_data.cli.flags import typer_options
from anyres_data.sampling.contact_sheet import contact_sheet
from anyres_data.sampling.draw import SamplerSettings


def _sample(
    settings: SamplerSettings,
    dataset: str = typer.Argument(..., help="Dataset directory (OUT), shard URL, brace pattern or glob."),
    n: int = typer.Option(16, "--n", help="Number of samples on the sheet."),
    out: Path = typer.Option(Path("sheet.png"), "--out", help="Where to write the sheet (PNG)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the shard order and the drawn specs."),
    columns: int = typer.Option(4, "--columns", help="Cells per row."),
    tile: int | None = typer.Option(
        None, "--tile", help="Display size of thumbnails and patches (default min(p, 320))."
    ),
) -> None:
    """Write a contact sheet: patches beside their source thumbnails, with square (yellow) and window (red) drawn."""
    with user_errors():
        sheet, skipped = contact_sheet(dataset, settings=settings, n=n, seed=seed, columns=columns, tile=tile)
    sheet.save(out)
    note = ", ".join(f"{count} {reason}" for reason, count in skipped.items() if count)
    typer.echo(f"wrote {out} ({sheet.width}×{sheet.height})" + (f"; skipped {note}" if note else ""))


sample_command = typer_options(SamplerSettings, _sample)
