"""Does any-resolution training work? A controlled experiment (the paper's Table 4, scaled down to 2 CPU cores).

    python -m pipelines.experiment run                     # everything, resumable: rerun to continue
    python -m pipelines.experiment run --seeds 0 --no-ablations --phase1-kimg 2 --phase2-kimg 2   # a quick look
    python -m pipelines.experiment run --device cuda --phase1-kimg 100 --phase2-kimg 100 --out runs/exp-gpu

One generator is trained on many LR images and a few HR ones, and compared with the same
generator trained on LR images only and upsampled. The package reads like the experiment:

- `settings`: the knobs (`ExperimentSettings`) and the (b) arms (`AnyresArm`: base + ablations);
- `data`: the LR set, an HR set shaped like FFHQ6k, held-out ground truth at any scale;
- `arms`: phase 1, (a) and the (b) variants, each the library's `train` with a `TrainConfig`;
- `measure`: SWD / pSWD / consistency, cached beside each run;
- `run`: the protocol from data to report; `report`: tables, plots and renders;
- `diagnostics`: zoom probes of fresh generators and a scale-branch ablation.

Outputs in `out`: datasets (unless `--data`), runs per seed and arm, `results.json`, `results.md`,
`pswd.png`, `trend.png` and `renders.png`.
"""
