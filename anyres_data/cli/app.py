"""`anyres-data`: build, inspect and sample any-resolution datasets."""

from __future__ import annotations

import typer
from rich.console import Console

from anyres_data.build.job import BuildSettings
from anyres_data.cli.build import build_command, info_command
from anyres_data.cli.cache import cache_command
from anyres_data.cli.errors import user_errors
from anyres_data.cli.export import export_command
from anyres_data.cli.flags import typer_options
from anyres_data.cli.sample import sample_command
from anyres_data.cli.stats import stats_command
from anyres_data.dataset.verify import verify
from anyres_data.sampling.cache_build import CacheSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def verify_command(out: str = typer.Argument(..., help="dataset folder (any fsspec URL)")) -> None:
    """Re-read every shard and check it against the manifest; exit code 1 on any mismatch."""
    with user_errors():
        report = verify(out)
    console = Console()
    for problem in report.problems[:50]:
        console.print(f"[red]✗[/] {problem}")
    if len(report.problems) > 50:
        console.print(f"... and {len(report.problems) - 50} more")
    if report.problems:
        console.print(
            f"[bold red]{len(report.problems)} problems[/] in {report.shards} shards, {report.samples} samples"
        )
        raise typer.Exit(1)
    console.print(f"[bold green]ok[/]: {report.shards} shards, {report.samples} samples match the manifest")


app.command("build")(typer_options(BuildSettings, build_command))
app.command("info")(info_command)
app.command("verify")(verify_command)
app.command("sample")(sample_command)
app.command("stats")(stats_command)
app.command("export")(export_command)
app.command("cache")(typer_options(CacheSettings, cache_command))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
