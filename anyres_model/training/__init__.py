"""Training (docs/training.md): `train` runs the two phases of the paper from a `config.TrainConfig`; `losses`
(GAN, R1), `teacher` with `warp` and `perceptual` (LPIPS) give the phase-2 teacher loss; `ema`,
`run_log` (scalars, grids) and `distributed` (torchrun) are its parts. The networks know nothing of it."""
