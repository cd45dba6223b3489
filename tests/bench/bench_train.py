"""Training speed: seconds per kimg of phase 1 and phase 2, and where a step's time goes.

    python -m tests.bench.bench_train            # tiny and small presets, phase 1 and 2, 2 loader workers
    python -m tests.bench.bench_train --quick    # tiny only, fewer steps

Runs the real `anyres-train` loop (`anyres_model.training.train.train`) on a demo dataset of native-size
images (256–2048 px) built once into a cache folder, and reads the run's own log: samples/s and
the share of the step spent waiting for data, in G (forward + backward), D (+ R1), the teacher's
forward and the teacher loss (warp + LPIPS, random trunk: same cost as AlexNet's weights).
The first logging window (start-up, worker spawn) is left out of the averages.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from anyres_data.settings import from_dict
from anyres_model.checkpoint import run_checkpoints
from anyres_model.training.config import TrainConfig
from anyres_model.training.train import train
from tests.bench.common import markdown_table
from tests.support.tiny_data import build_demo

CACHE = Path(os.environ.get("ANYRES_BENCH_CACHE", Path.home() / ".cache" / "anyres" / "bench_train"))
PRESET_P = {"tiny": 32, "small": 64}


def dataset() -> Path:
    out = CACHE / "demo-256-2048"
    if not (out / "manifest.parquet").exists():
        shutil.rmtree(out, ignore_errors=True)
        build_demo(out, count=32, min_side=256, max_side=2048, seed=1)
    return out


def run(preset: str, phase: str, *, data: Path, init: Path | None, steps: int, batch: int, workers: int, root: Path):
    run_dir = root / f"{preset}-{phase}"
    cfg = from_dict(
        TrainConfig,
        {
            "run_dir": str(run_dir),
            "preset": preset,
            "phase": phase,
            "init": str(init) if init else None,
            "lpips": "random",
            "total_kimg": steps * batch / 1000,
            "snapshot_kimg": 1e6,
            "image_kimg": 0,
            "log_every": max(steps // 4, 1),
            "device": "cpu",
            "threads": None,
            "data": {"hr": str(data), "batch_size": batch, "workers": workers, "shuffle_buffer": 64},
            "sampler": {"p": PRESET_P[preset]},
        },
    )
    last = train(cfg)
    log = pd.read_csv(run_dir / "log.csv").iloc[1:]  # drop the start-up window
    row = {"preset": preset, "phase": phase, "batch": batch, "steps": steps}
    row["s/kimg"] = float(log["speed/s_per_kimg"].mean())
    row["samples/s"] = float(log["speed/samples_per_s"].mean())
    for part in ("data", "G", "D", "teacher", "lpips"):
        row[f"{part} %"] = float(100 * log[f"time/{part}"].mean())
    return row, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny preset only, fewer steps")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    data = dataset()
    presets = ["tiny"] if args.quick else ["tiny", "small"]
    steps = 12 if args.quick else 24
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            row, last = run(
                preset,
                "global",
                data=data,
                init=None,
                steps=steps,
                batch=args.batch,
                workers=args.workers,
                root=Path(tmp),
            )
            rows.append(row)
            phase1 = run_checkpoints(last.parent.parent)[-1]
            row, _ = run(
                preset,
                "patch",
                data=data,
                init=phase1,
                steps=steps,
                batch=args.batch,
                workers=args.workers,
                root=Path(tmp),
            )
            rows.append(row)
    print(f"\nCPU, {args.workers} loader workers (torch threads: the cores left), batch {args.batch}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
