"""`anyres-eval`: FID@R, pFID, SWD@R, pSWD, KID and the Lanczos-upsampling baseline against a dataset.

Metric names (`--metrics`, comma-separated):
- `fidR` (e.g. fid256; `fid` = the generator's patch size p): generated images rendered at R×R
  vs real images' centred squares resized to R (lanczos3); real images smaller than R are left
  out (their count is reported). With `--lr-data`, reals come from the LR set when it has
  images of at least R px.
- `swdR` / `swd`: ProGAN's SWD on the same two image sets.
- `pfid`, `pswd`: real patches drawn by the training sampler from the HR set (a replayable spec
  list, seed → specs) vs G(z_i, spec_i) at exactly those specs.
- `pfid_up`, `pswd_up`: the baseline: each spec's window Lanczos-resampled from the generator's
  own global image G(z_i) at p×p; how much detail the model adds over interpolation.
- `kid`: also report KID (mean ± std over subsets) beside every FID-type metric.

Real-data Inception statistics (and the realised spec list) are cached per dataset and
settings in `--cache-dir`; SWD descriptors are recomputed each run.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from anyres_data.sampling.draw import SamplerSettings
from anyres_data.settings import setting, to_dict
from anyres_model.metrics import fakes, real_images
from anyres_model.metrics.fid import (
    FeatureAccumulator,
    FeatureStats,
    cache_key,
    fid,
    kid,
    load_feature_stats,
    save_feature_stats,
)
from anyres_model.metrics.inception import FEATURES, Inception, load_inception
from anyres_model.metrics.patch_specs import SpecList, draw_spec_list, with_specs
from anyres_model.metrics.swd import DescriptorSet, SWDResult, swd

PATCH_METRICS = ("pfid", "pswd", "pfid_up", "pswd_up")


@dataclass(frozen=True)
class EvalSettings:
    """What to measure and against which data."""

    data: str = setting("", "HR dataset: directory or fsspec URL holding shards/*.tar and manifest.parquet.")
    lr_data: str | None = setting(
        None, "LR dataset for fidR/swdR: used for R when it has images of at least R px (else the HR set)."
    )
    metrics: tuple[str, ...] = setting(
        ("fid", "pfid", "pfid_up", "swd", "pswd", "pswd_up"),
        "Comma-separated: fidR (fid256, fid512; fid = at p), swdR, pfid, pswd, pfid_up, pswd_up, kid.",
    )
    n: int = setting(50_000, "Images/patches per set for FID-type metrics (reals: at most what the dataset has).")
    swd_n: int = setting(16_384, "Images/patches per set for SWD (ProGAN: 16384); descriptors cost n·128·levels·294 B.")
    batch: int = setting(32, "Batch size for the generator and Inception.")
    seed: int = setting(0, "Seed of the spec list, the latents (z_i from stream (seed, i)) and SWD's randomness.")
    inception_weights: str | None = setting(
        None,
        "Path to weights-inception-2015-12-05-6726825d.pth; None: $ANYRES_INCEPTION_WEIGHTS, then the torch "
        "hub cache; 'random' = random weights (tests only, values meaningless).",
    )
    kid_subsets: int = setting(100, "KID: number of random subsets.")
    kid_subset_size: int = setting(1000, "KID: subset size (capped by the number of features kept).")
    kid_max: int = setting(10_000, "KID: features kept per set (uniform reservoir sample).")
    swd_per_image: int = setting(128, "SWD: random 7×7 descriptors per image and pyramid level (ProGAN: 128).")
    cache_dir: str | None = setting(None, "Where real-data statistics are cached; None: ~/.cache/anyres/eval.")
    render_tile: int | None = setting(
        None, "fidR/swdR: render the fakes tile by tile, this many pixels across (None: one pass)."
    )
    device: str = setting("auto", "torch device for the generator and Inception; auto = cuda when available.")
    sampler: SamplerSettings = setting(
        SamplerSettings(),
        "Patch sampler for pfid/pswd: the training sampler's settings (p: the generator's patch size; left at "
        "its defaults, p follows the generator).",
    )
    patch_global: bool = setting(
        False,
        "Keep the sampler's global samples (global_prob) in pfid/pswd; by default the spec list holds HR "
        "patches only (global_prob 0), whole images being fidR's job.",
    )

    def __post_init__(self) -> None:
        for name in ("n", "swd_n", "batch", "kid_subsets", "kid_subset_size", "kid_max", "swd_per_image"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")


class MetricPlan(NamedTuple):
    """The requested metrics: (name, R) for whole-image FID and SWD, the patch metrics, and whether KID too."""

    fid: tuple[tuple[str, int], ...]
    swd: tuple[tuple[str, int], ...]
    patch: frozenset[str]
    kid: bool


def plan_metrics(names: tuple[str, ...], p: int) -> MetricPlan:
    """Parse metric names; `fid`/`swd` without a size mean R = p. Raises ValueError for unknown names."""
    fids, swds, patch, want_kid = [], [], set(), False
    for name in names:
        match = re.fullmatch(r"(fid|swd)(\d*)", name)
        if match:
            size = int(match.group(2)) if match.group(2) else p
            if size < 16:
                raise ValueError(f"{name}: R must be at least 16 px")
            (fids if match.group(1) == "fid" else swds).append((name, size))
        elif name in PATCH_METRICS:
            patch.add(name)
        elif name == "kid":
            want_kid = True
        else:
            raise ValueError(
                f"unknown metric {name!r}; known: fidR (e.g. fid256; fid = at the generator's size), swdR, "
                f"{', '.join(PATCH_METRICS)}, kid"
            )
    for kind, entries in (("fid", fids), ("swd", swds)):
        sizes = [size for _, size in entries]
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"{kind} at the same size requested twice: {', '.join(n for n, _ in entries)}")
    if want_kid and not (fids or {"pfid", "pfid_up"} & patch):
        raise ValueError("kid is reported beside FID-type metrics (fidR, pfid, pfid_up): request one of them too")
    return MetricPlan(tuple(fids), tuple(swds), frozenset(patch), want_kid)


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "anyres" / "eval"


def _generator_sizes(G: torch.nn.Module) -> tuple[int, int]:
    """(patch size p, latent size) of a generator."""
    return int(G.patch_size), int(G.cfg.z_dim)


class _Run:
    """What every metric of one evaluation shares: generator, settings, device, Inception, caches, progress."""

    def __init__(
        self,
        G: torch.nn.Module,
        settings: EvalSettings,
        *,
        progress: bool,
        inception: Inception | None,
        want_kid: bool,
    ) -> None:
        self.G = G
        self.want_kid = want_kid
        self.settings = settings
        self.progress = progress
        self.inception = inception
        self.device = next(G.parameters()).device
        self.p, self.z_dim = _generator_sizes(G)
        self.cache_dir = Path(settings.cache_dir).expanduser() if settings.cache_dir else default_cache_dir()
        self.manifests: dict[str, pd.DataFrame] = {}
        self.fingerprints: dict[str, str] = {}

    def manifest(self, data: str) -> pd.DataFrame:
        if data not in self.manifests:
            self.manifests[data] = real_images.read_manifest(data)
            self.fingerprints[data] = real_images.dataset_fingerprint(data)
        return self.manifests[data]

    def bar(self, total: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, unit="img", disable=not self.progress, leave=False)

    def index_batches(self, n: int) -> Iterator[np.ndarray]:
        for start in range(0, n, self.settings.batch):
            yield np.arange(start, min(start + self.settings.batch, n))

    def z(self, index: np.ndarray) -> torch.Tensor:
        return fakes.latents(self.settings.seed, index, self.z_dim).to(self.device)

    def accumulator(self) -> FeatureAccumulator:
        return FeatureAccumulator(FEATURES, kid_max=self.settings.kid_max, seed=self.settings.seed)

    def descriptors(self) -> DescriptorSet:
        # One seed for every set: real and fake descriptors sit at the same random positions.
        return DescriptorSet(seed=self.settings.seed, per_image=self.settings.swd_per_image)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        assert self.inception is not None
        return self.inception.features(images)

    def stats_key(self, **parts: Any) -> Path:
        assert self.inception is not None
        key = cache_key(
            **parts,
            seed=self.settings.seed,
            kid_max=self.settings.kid_max,
            inception=self.inception.sha256 or "random",
        )
        return self.cache_dir / f"{parts['kind']}-{key}.npz"

    def fid_result(self, real: FeatureStats, fake: FeatureStats) -> dict[str, Any]:
        out: dict[str, Any] = {"value": fid(real, fake)}
        if self.want_kid:
            k = kid(
                real.sample,
                fake.sample,
                subsets=self.settings.kid_subsets,
                subset_size=self.settings.kid_subset_size,
                seed=self.settings.seed,
            )
            out["kid"] = {"mean": k.mean, "std": k.std, "subsets": k.subsets, "subset_size": k.subset_size}
        return out

    def swd_result(self, real: DescriptorSet, fake: DescriptorSet) -> dict[str, Any]:
        result: SWDResult = swd(real, fake, seed=self.settings.seed)
        return {"value": result.mean, **result.as_dict()}


def _real_source(run: _Run, size: int) -> tuple[str, str, pd.DataFrame]:
    """(label, dataset, its manifest) for whole images at `size`: the LR set when it has images ≥ size, else HR."""
    lr = run.settings.lr_data
    if lr:
        manifest = run.manifest(lr)
        if (np.minimum(manifest["width"], manifest["height"]) >= size).any():
            return "lr", lr, manifest
    return "hr", run.settings.data, run.manifest(run.settings.data)


def _whole_image_metrics(run: _Run, size: int, *, fid_name: str | None, swd_name: str | None) -> dict[str, Any]:
    settings = run.settings
    label, data, manifest = _real_source(run, size)
    rows = manifest[["key", "width", "height"]].sort_values("key", kind="stable").reset_index(drop=True)
    eligible = rows[np.minimum(rows["width"], rows["height"]) >= size]
    if eligible.empty:
        raise ValueError(f"no real image in {data} has a shorter side of at least {size} px: cannot measure at {size}")
    rng = np.random.default_rng([settings.seed, size])
    chosen = eligible["key"].to_numpy()[rng.permutation(len(eligible))[: settings.n]]
    rank = {key: r for r, key in enumerate(chosen.tolist())}
    real_stats = None
    cache_path = None
    if fid_name:
        cache_path = run.stats_key(kind=f"whole{size}", data=run.fingerprints[data], n=settings.n)
        if cache_path.exists():
            real_stats, _ = load_feature_stats(cache_path)
    real_desc = run.descriptors() if swd_name else None
    if real_stats is None or real_desc is not None:
        acc = run.accumulator() if fid_name and real_stats is None else None
        with run.bar(len(chosen), f"real images at {size}") as bar:
            for keys, images in real_images.whole_images(data, size=size, keys=set(rank), batch=settings.batch):
                if acc is not None:
                    acc.add(run.features(images))
                if real_desc is not None:
                    keep = torch.tensor([rank[k] < settings.swd_n for k in keys])
                    if keep.any():
                        real_desc.add(images[keep])
                bar.update(len(keys))
        if acc is not None:
            real_stats = acc.stats()
            save_feature_stats(cache_path, real_stats)
    n_fake = settings.n if fid_name else min(settings.n, settings.swd_n)
    fake_acc = run.accumulator() if fid_name else None
    fake_desc = run.descriptors() if swd_name else None
    with run.bar(n_fake, f"fake images at {size}") as bar:
        for index in run.index_batches(n_fake):
            images = fakes.whole_images(run.G, run.z(index), size, tile=settings.render_tile)
            if fake_acc is not None:
                fake_acc.add(run.features(images))
            if fake_desc is not None and index[0] < settings.swd_n:
                fake_desc.add(images[torch.from_numpy(index < settings.swd_n)])
            bar.update(len(index))
    common = {"size": size, "real_source": label, "excluded_small": int(len(rows) - len(eligible))}
    out = {}
    if fid_name:
        assert real_stats is not None and fake_acc is not None
        out[fid_name] = {**run.fid_result(real_stats, fake_acc.stats()), "n_real": real_stats.n, "n_fake": n_fake}
        out[fid_name].update(common)
    if swd_name:
        assert real_desc is not None and fake_desc is not None
        out[swd_name] = {**run.swd_result(real_desc, fake_desc), "n_real": real_desc.images, "n_fake": fake_desc.images}
        out[swd_name].update(common)
    return out


def _patch_metrics(run: _Run, which: frozenset[str], sampler: SamplerSettings) -> dict[str, Any]:
    settings = run.settings
    data = settings.data
    manifest = run.manifest(data)
    want_fid = bool({"pfid", "pfid_up"} & which)
    want_swd = bool({"pswd", "pswd_up"} & which)
    n = settings.n if want_fid else min(settings.n, settings.swd_n)
    real_stats = None
    specs: SpecList | None = None
    cache_path = None
    if want_fid:
        cache_path = run.stats_key(kind="patches", data=run.fingerprints[data], n=n, sampler=to_dict(sampler))
        if cache_path.exists():
            real_stats, arrays = load_feature_stats(cache_path)
            specs = SpecList.from_arrays(arrays)
    real_desc = run.descriptors() if want_swd else None
    if specs is None or real_desc is not None:
        drawn = draw_spec_list(manifest, n=n, settings=sampler, seed=settings.seed)
        realised = np.zeros_like(drawn.specs)
        acc = run.accumulator() if want_fid and real_stats is None else None
        with run.bar(n, "real patches") as bar:
            for batch in real_images.patches(data, drawn, batch=settings.batch):
                realised[batch.index] = [s.as_tuple() for s in batch.specs]
                if acc is not None:
                    acc.add(run.features(batch.pixels))
                if real_desc is not None:
                    keep = torch.from_numpy(batch.index < settings.swd_n)
                    if keep.any():
                        real_desc.add(batch.pixels[keep])
                bar.update(len(batch.index))
        fresh = with_specs(drawn, realised)
        if specs is not None:
            assert np.array_equal(specs.specs, fresh.specs), "cached spec list differs from a fresh cut"
        specs = fresh
        if acc is not None:
            real_stats = acc.stats()
            save_feature_stats(cache_path, real_stats, **specs.arrays())
    assert specs is not None
    accs = {name: run.accumulator() for name in ("pfid", "pfid_up") if name in which}
    descs = {name: run.descriptors() for name in ("pswd", "pswd_up") if name in which}
    with run.bar(n, "fake patches") as bar:
        stream = fakes.patch_stream(
            run.G,
            specs.specs,
            seed=settings.seed,
            batch=settings.batch,
            model=bool({"pfid", "pswd"} & which),
            baseline=bool({"pfid_up", "pswd_up"} & which),
        )
        for fake in stream:
            keep = torch.from_numpy(fake.index < settings.swd_n)
            for suffix, images in (("", fake.model), ("_up", fake.baseline)):
                if images is None:
                    continue
                if f"pfid{suffix}" in accs:
                    accs[f"pfid{suffix}"].add(run.features(images))
                if f"pswd{suffix}" in descs and keep.any():
                    descs[f"pswd{suffix}"].add(images[keep])
            bar.update(len(fake.index))
    out: dict[str, Any] = {}
    for name, acc in accs.items():
        assert real_stats is not None
        out[name] = {**run.fid_result(real_stats, acc.stats()), "n_real": real_stats.n, "n_fake": acc.n}
    for name, desc in descs.items():
        assert real_desc is not None
        out[name] = {**run.swd_result(real_desc, desc), "n_real": real_desc.images, "n_fake": desc.images}
    if cache_path is not None:
        for name in accs:
            out[name]["specs"] = str(cache_path)
    return out


def evaluate(G: torch.nn.Module, settings: EvalSettings, *, progress: bool = True) -> dict[str, Any]:
    """Measure a generator in memory against `settings.data`; returns a JSON-ready dict.

    {"metrics": {name: {"value": ..., details}}, "settings": ..., "p": ..., "sampler": ...,
    "inception": ..., "data": ..., "seconds": ...}. G is an `anyres_model.networks.generator.Generator`
    (anything with `patch_size`, `cfg.z_dim`, G(z) for the global image and G(z, specs (B, 4))).
    Raises ValueError for bad settings or a dataset that cannot give the requested metrics, and
    FileNotFoundError when the dataset or the Inception weights (for FID-type metrics) are missing.
    """
    start = time.time()
    if not settings.data:
        raise ValueError("no dataset given: set data (--data OUT), the directory written by `anyres-data build`")
    p, _ = _generator_sizes(G)
    plan = plan_metrics(settings.metrics, p)
    sampler = settings.sampler
    if sampler.p != p:
        if sampler != SamplerSettings():  # the user set the sampler up for another patch size
            raise ValueError(
                f"sampler p = {sampler.p} but the generator renders {p} px patches: set sampler.p (--sampler-p {p}) "
                "with the other sampler settings"
            )
        sampler = SamplerSettings(p=p)
    if not settings.patch_global:
        sampler = dataclasses.replace(sampler, global_prob=0.0)
    needs_inception = bool(plan.fid) or bool({"pfid", "pfid_up"} & plan.patch)
    inception = None
    if needs_inception:
        inception = load_inception(settings.inception_weights, device=next(G.parameters()).device)
    run = _Run(G, settings, progress=progress, inception=inception, want_kid=plan.kid)
    run.manifest(settings.data)
    was_training = G.training
    G.eval()
    results: dict[str, Any] = {}
    try:
        fid_names = {size: name for name, size in plan.fid}
        swd_names = {size: name for name, size in plan.swd}
        for size in sorted(set(fid_names) | set(swd_names)):
            results.update(_whole_image_metrics(run, size, fid_name=fid_names.get(size), swd_name=swd_names.get(size)))
        if plan.patch:
            results.update(_patch_metrics(run, plan.patch, sampler))
    finally:
        G.train(was_training)
    ordered = {name: results[name] for name in settings.metrics if name in results}
    return {
        "metrics": ordered,
        "settings": to_dict(settings),
        "p": p,
        "sampler": to_dict(sampler),
        "inception": None if inception is None else {"source": inception.source, "sha256": inception.sha256},
        "data": {
            data: {"manifest_sha256": fp, "images": len(run.manifests[data])} for data, fp in run.fingerprints.items()
        },
        "seconds": time.time() - start,
    }
