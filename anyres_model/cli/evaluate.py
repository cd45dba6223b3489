"""`anyres-eval`: evaluate a generator checkpoint (`anyres_model.metrics.evaluate`), print a table, write JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from anyres_data.cli.errors import user_errors
from anyres_data.cli.flags import typer_options
from anyres_model.checkpoint import load_generator, resolve_checkpoint
from anyres_model.devices import resolve_device
from anyres_model.metrics.evaluate import EvalSettings, evaluate
from anyres_model.metrics.evaluate import __doc__ as EVAL_HELP
from anyres_model.metrics.report import default_json_path, write_json


def _detail(name: str, result: dict[str, Any]) -> str:
    parts = []
    if "kid" in result:
        kid = result["kid"]
        parts.append(f"KID×1e3 {kid['mean'] * 1e3:.3f} ± {kid['std'] * 1e3:.3f}")
    if "levels" in result:
        parts.append("levels " + " ".join(f"{res}:{v:.2f}" for res, v in result["levels"].items()))
    counts = [f"{k.removeprefix('n_')} {v}" for k, v in result.items() if k.startswith("n_")]
    if counts:
        parts.append("n " + ", ".join(counts))
    if result.get("excluded_small"):
        parts.append(f"{result['excluded_small']} real images < {result['size']} px excluded")
    if "real_source" in result:
        parts.append(f"reals from {result['real_source']}")
    return "; ".join(parts)


def results_table(results: dict[str, Any], *, title: str = "anyres-eval") -> Table:
    """One row per metric: name, headline value, and details (KID, SWD levels, counts, exclusions)."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("details")
    for name, result in results["metrics"].items():
        table.add_row(name, f"{result['value']:.3f}", _detail(name, result))
    if (results.get("inception") or {}).get("source") == "random":
        table.caption = "Inception with RANDOM weights: FID/KID values are for testing the plumbing only."
    return table


def eval_command(
    settings: EvalSettings,
    checkpoint: Path = typer.Argument(
        ..., help="Generator checkpoint (state_dict + JSON config), or a training run directory (its newest)."
    ),
    out: Path | None = typer.Option(None, "--out", help="JSON output path (default: CKPT.eval.json beside it)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Evaluate a generator checkpoint: prints a table and writes JSON next to the checkpoint."""
    with user_errors():
        device = resolve_device(settings.device)
        checkpoint = resolve_checkpoint(checkpoint)
        G = load_generator(checkpoint).to(device)
        results = evaluate(G, settings, progress=not quiet)
    results["checkpoint"] = str(checkpoint)
    path = write_json(results, out or default_json_path(checkpoint))
    console = Console()
    console.print(results_table(results, title=f"anyres-eval {checkpoint.name}"))
    console.print(f"wrote {path}")


app = typer.Typer(add_completion=False, help=EVAL_HELP)
app.command(name="eval")(typer_options(EvalSettings, eval_command))


def main() -> None:
    app()
