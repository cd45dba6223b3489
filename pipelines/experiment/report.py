"""The experiment's report: results.json, results.md (setting, tables), and three pictures.

Tables give mean ± half the range over seeds. Columns follow `measure`: SWD at p and of whole
images at 2p and 4p, pSWD at the sampler's random scales and at 2p, 4p, and at 8p (extrapolation).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anyres_model.checkpoint import load_generator
from anyres_model.metrics.fakes import global_images, latents, whole_images
from pipelines.experiment.settings import ARMS_BY_NAME, ExperimentSettings

COLUMNS = {
    "swd_p": "SWD @ p",
    "whole_2": "SWD whole 2p",
    "whole_4": "SWD whole 4p",
    "random": "pSWD random s",
    "patch_2": "pSWD 2p",
    "patch_4": "pSWD 4p",
    "patch_8": "pSWD 8p (extrapolation)",
}
ABLATION_METRICS = ("random", "patch_2", "patch_4", "whole_4")
CONSISTENCY_COLUMNS = {"2": "2p", "4": "4p", "8": "8p (extrapolation)"}


def _spread(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(np.ptp(array) / 2)


def _rows(results: dict, labels: dict[str, str], table: str, columns: dict[str, str], seeds) -> list[dict]:
    rows = []
    for key, label in labels.items():
        runs = [results[table][f"{key}/seed{s}"] for s in seeds if f"{key}/seed{s}" in results[table]]
        if runs:
            rows.append(
                {"arm": label, "seeds": len(runs), **{c: _spread([r[m] for r in runs]) for m, c in columns.items()}}
            )
    return rows


def final_rows(results: dict) -> list[dict]:
    """The final table: (a) upsampled, (b) rendered, (b)'s own p×p image upsampled, and the noise floor."""
    chosen = ARMS_BY_NAME[results["selection"]["final"]].run_name
    labels = {
        "lr_only/upsample": "(a) LR only, Lanczos-upsampled",
        f"{chosen}/model": "(b) any-res, rendered at s",
        f"{chosen}/upsample": "(b) any-res, its p×p image upsampled",
    }
    rows = _rows(results, labels, "runs", COLUMNS, results["settings"]["seeds"])
    rows.append(
        {
            "arm": "noise floor (real vs real)",
            "seeds": "–",
            **{c: (results["floor"][m], 0.0) for m, c in COLUMNS.items()},
        }
    )
    return rows


def consistency_rows(results: dict) -> list[dict]:
    chosen = ARMS_BY_NAME[results["selection"]["final"]].run_name
    labels = {"lr_only": "(a) LR only, rendered at s (never trained there)", chosen: "(b) any-res, rendered at s"}
    rows = _rows(results, labels, "consistency", CONSISTENCY_COLUMNS, results["settings"]["seeds"])
    truth = results["consistency"]["ground truth"]
    rows.append({"arm": "ground truth", "seeds": "–", **{c: (truth[k], 0.0) for k, c in CONSISTENCY_COLUMNS.items()}})
    return rows


def ablation_rows(results: dict) -> list[dict]:
    """One seed, one length of phase 2: the base (b) and each arm that changes one factor, and (a) at that length."""
    rows = []
    for name in results["selection"]["values"]:
        arm = ARMS_BY_NAME[name]
        entry = results["ablation"][name]
        scores, cons, cov = entry["scores"], entry["consistency"], entry["coverage"]
        rows.append(
            {
                "arm": arm.label or arm.name,
                "teacher": results["teacher_distance"][name],
                "E[s]/p": f"{cov['mean_s_over_p']:.2f}",
                **{COLUMNS[m]: f"{scores[m]:.1f}" for m in ABLATION_METRICS},
                **{f"consistency {c}": f"{cons[k]:.3f}" for k, c in (("2", "2p"), ("4", "4p"))},
            }
        )
    a = results["ablation"].get("lr_only")
    if a:
        rows.append(
            {
                "arm": "(a) LR only, upsampled",
                "teacher": "–",
                "E[s]/p": "1.00",
                **{COLUMNS[m]: f"{a['scores'][m]:.1f}" for m in ABLATION_METRICS},
                "consistency 2p": "–",
                "consistency 4p": "–",
            }
        )
    return rows


def coverage_rows(results: dict) -> list[dict]:
    """Realised coverage of every (b) run, counted from the specs its training drew."""
    rows = []
    for key, cov in sorted(results["coverage"].items()):
        rows.append(
            {
                "run": key,
                "samples": cov["samples"],
                "E[s] (px)": f"{cov['mean_s']:.1f}",
                "E[s]/p": f"{cov['mean_s_over_p']:.2f}",
                **{f"s ≥ {k}p": f"{100 * cov[f'share_s_ge_{k}p']:.1f}%" for k in (2, 3, 4)},
            }
        )
    return rows


def trend_rows(results: dict) -> list[dict]:
    """Along phase 2 (mean over seeds): pSWD at random s and at 4p, and (b)'s consistency."""
    chosen = ARMS_BY_NAME[results["selection"]["final"]].run_name
    series = {arm: [v for k, v in results["trend"].items() if k.startswith(arm + "/")] for arm in ("lr_only", chosen)}
    rows = []
    for i, point in enumerate(series[chosen][0]):

        def mean(arm: str, field: str, sub: str | None = None, i=i) -> float:
            return float(np.mean([r[i][field] if sub is None else r[i][field][sub] for r in series[arm]]))

        rows.append(
            {
                "kimg after phase 1": f"{point['kimg']:g}",
                "(a) upsampled, random s": f"{mean('lr_only', 'random'):.1f}",
                "(a) upsampled, 4p": f"{mean('lr_only', 'patch_4'):.1f}",
                "(b) rendered, random s": f"{mean(chosen, 'random'):.1f}",
                "(b) rendered, 4p": f"{mean(chosen, 'patch_4'):.1f}",
                "(b) consistency 2p": f"{mean(chosen, 'consistency', '2'):.3f}",
                "(b) consistency 4p": f"{mean(chosen, 'consistency', '4'):.3f}",
            }
        )
    return rows


def markdown(rows: list[dict], *, digits: int = 1) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}" if isinstance(v, tuple) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def text(results: dict) -> str:
    """The markdown of results.md."""
    s = results["settings"]
    chosen, final = results["selection"]["chosen"], results["selection"]["final"]
    by_rule = "" if final == chosen else f" The rule chose **{chosen}**; the final table uses {final} (`--final-arm`)."
    p = 64 if s["preset"] == "tiny64" else 32
    parts = [
        "## Setting\n",
        f"Preset {s['preset']} (p = {p}); LR set {s['lr_count']} images at p×p; HR set {s['hr_uniform_count']} "
        f"squares with sides uniform in [2p, {s['hr_max_side']:g}p] + {s['hr_full_count']} at {s['hr_max_side']:g}p. "
        f"Phase 1 {s['phase1_kimg']:g} kimg; then (a) phase 1 continued or (b) phase 2, {s['phase2_kimg']:g} kimg; "
        f"batch {s['batch']}. Metrics on {s['eval_count']} patches / {s['whole_count']} whole images per column, "
        f"×1e3, lower is better. (b) setting of the final table: **{final}** "
        f"(the rule: lowest {results['selection']['metric']}-scale pSWD on seed {results['selection']['seed']}); "
        f"its teacher distance: {results['teacher_distance'][final]}.{by_rule}\n",
        "## Final table\n",
        markdown(final_rows(results)),
        "\n\n## Consistency\n\nMean |render at s, Lanczos-reduced to p×p − the p×p image| in [-1, 1] "
        f"({s['whole_count']} latents at 2p and 4p, {s['consistency_count']} at 8p; two different latents ≈ 0.4):\n",
        markdown(consistency_rows(results), digits=3),
        f"\n\n## Ablations (seed {results['selection']['seed']}, {results['ablation'][chosen]['kimg']:g} kimg of "
        "phase 2 for each (b) and of phase 1 continued for (a); each row changes one factor of the base)\n",
        markdown(ablation_rows(results)),
        "\n\n## Realised coverage (counted from the specs training drew; globals count as s = p)\n",
        markdown(coverage_rows(results)),
        f"\n\n## Along phase 2 (mean over seeds; {s['trend_count']} patches and {s['trend_latents']} latents "
        "per point; 0 kimg is phase 1's end)\n",
        markdown(trend_rows(results)),
        "\n",
    ]
    return "\n".join(parts)


def plot(rows: list[dict], path: Path) -> None:
    """The final table's metrics per arm, with the seed spread as error bars."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    names = list(COLUMNS.values())
    xs = np.arange(len(names))
    for j, row in enumerate(rows):
        values = [row[c] for c in names]
        ax.errorbar(
            xs + 0.08 * (j - 1.5),
            [v[0] for v in values],
            yerr=[v[1] for v in values],
            marker="o",
            capsize=3,
            linestyle="none",
            label=row["arm"],
        )
    ax.set_xticks(xs, [n.replace(" (extrapolation)", "\n(extrap.)") for n in names], fontsize=7)
    ax.set_ylabel("SWD ×1e3 (lower is better)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_trend(results: dict, path: Path) -> None:
    """pSWD (random s, 4p) and (b)'s consistency along phase 2, every seed drawn."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name, rows in sorted(results["trend"].items()):
        run, seed = name.split("/")
        xs = [r["kimg"] for r in rows]
        is_b = run != "lr_only"
        label = "(b) rendered" if is_b else "(a) upsampled"
        for metric, line in (("random", "-"), ("patch_4", "--")):
            left.plot(
                xs,
                [r[metric] for r in rows],
                marker="o",
                linestyle=line,
                color="C1" if is_b else "C0",
                markersize=4,
                label=f"{label}, {COLUMNS[metric]}, {seed}",
            )
        if is_b:
            for j, k in enumerate(("2", "4")):
                right.plot(xs, [r["consistency"][k] for r in rows], "o-", color=f"C{j + 2}", label=f"{k}p, {seed}")
    right.axhline(
        float(np.mean([results["consistency"]["ground truth"][k] for k in ("2", "4")])),
        color="k",
        linestyle=":",
        label="ground truth",
    )
    left.set_xlabel("kimg after phase 1 ((a): phase 1 continued; (b): phase 2)")
    left.set_ylabel("pSWD ×1e3 (lower is better)")
    left.legend(fontsize=6)
    right.set_xlabel("kimg of phase 2")
    right.set_ylabel("consistency (lower is better; other latents ≈ 0.4)")
    right.set_ylim(bottom=0)
    right.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


@torch.no_grad()
def renders(p: int, checkpoints: dict[str, Path], path: Path, *, latent_seed: int = 0, scales=(1, 2, 4)) -> None:
    """One latent at p, 2p, 4p per arm ((a) Lanczos-upsampled, (b) rendered), each panel shown at 4p pixels."""
    rows = []
    for arm, checkpoint in checkpoints.items():
        G = load_generator(checkpoint)
        z = latents(latent_seed, [0], G.cfg.z_dim)
        panels = []
        for k in scales:
            if arm == "lr_only" or k == 1:
                base = Image.fromarray(global_images(G, z)[0].permute(1, 2, 0).numpy())
                image = base.resize((k * p, k * p), Image.Resampling.LANCZOS)
            else:
                image = Image.fromarray(whole_images(G, z, k * p)[0].permute(1, 2, 0).numpy())
            panels.append(np.asarray(image.resize((max(scales) * p,) * 2, Image.Resampling.NEAREST)))
        rows.append(np.concatenate(panels, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def write(cfg: ExperimentSettings, results: dict, runs: dict[int, dict[str, Path]]) -> None:
    """results.json, results.md, pswd.png, trend.png and renders.png in cfg.out; prints the markdown."""
    (cfg.out / "results.json").write_text(json.dumps(results, indent=2))
    body = text(results)
    (cfg.out / "results.md").write_text(body)
    plot(final_rows(results), cfg.out / "pswd.png")
    plot_trend(results, cfg.out / "trend.png")
    seed = min(runs)
    chosen = ARMS_BY_NAME[results["selection"]["final"]].run_name
    renders(cfg.p, {"lr_only": runs[seed]["lr_only"], chosen: runs[seed][chosen]}, cfg.out / "renders.png")
    print(body)
