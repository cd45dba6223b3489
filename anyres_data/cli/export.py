"""`anyres-data export`: a built dataset as Parquet that Hugging Face `datasets` loads (anyres_data.dataset.export)."""

from __future__ import annotations

from typing import Literal

import typer
from rich.console import Console

from anyres_data.cli.errors import user_errors
from anyres_data.dataset.export import export_parquet


def export_command(
    out: str = typer.Argument(..., help="dataset folder (any fsspec URL)"),
    dest: str = typer.Argument(..., help="folder to write the export to (any fsspec URL)"),
    to: Literal["parquet"] = typer.Option(
        "parquet", help="format: parquet (Hugging Face datasets: load_dataset('parquet', data_dir=DEST))"
    ),
) -> None:
    """Export a built dataset for other tools: Parquet that Hugging Face `datasets` loads, metadata as columns."""
    with user_errors():
        files = export_parquet(out, dest)
    Console(stderr=True).print(
        f"wrote {len(files)} {to} files to {dest}/data/: load_dataset('parquet', data_dir={dest!r})", highlight=False
    )
