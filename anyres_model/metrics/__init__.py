"""Evaluation metrics: FID/KID on Inception features (whole images at R, patches), SWD and the Lanczos baseline.

`swd` needs no pretrained network; `inception` loads the standard FID network offline; `fid`
turns features into FID/KID and caches real-data statistics; `patch_specs`, `real_images` and
`fakes` produce the two sides of each comparison; `anyres_model.metrics.evaluate` runs them.
"""
