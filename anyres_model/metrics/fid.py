"""FID and KID from Inception features, and the on-disk cache of real-data statistics.

FID (Heusel et al. 2017): ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½), with Σ the unbiased covariance
(ddof = 1, as StyleGAN3 and pytorch-fid). Tr (Σ₁Σ₂)^½ is computed as Σᵢ √λᵢ(Σ₁^½ Σ₂ Σ₁^½), a
symmetric PSD matrix, so no complex square root and no fudge term is needed.

KID (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial kernel
k(x, y) = (x·y / d + 1)³, averaged over random subsets (default 100 of 1000), reported as
mean ± std over the subsets. Features are accumulated in a stream: running sums for μ and Σ
(float64) and a seeded reservoir sample of up to `kid_max` features for KID.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class FeatureStats:
    """Summary of a feature set: count, mean (D,), covariance (D, D) and a uniform sample (k, D) for KID."""

    n: int
    mu: np.ndarray
    sigma: np.ndarray
    sample: np.ndarray

    @functools.cached_property
    def sigma_sqrt(self) -> np.ndarray:
        """Σ^½ (symmetric PSD square root), computed once: the real side of several FIDs shares it."""
        values, vectors = np.linalg.eigh((self.sigma + self.sigma.T) / 2)
        return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


@dataclass(frozen=True)
class KIDResult:
    mean: float
    std: float
    subsets: int
    subset_size: int


class FeatureAccumulator:
    """Running mean/covariance of (B, D) feature batches, plus a reservoir sample of up to `kid_max` rows."""

    def __init__(self, dim: int, *, kid_max: int = 10_000, seed: int = 0) -> None:
        self.n = 0
        self.total = np.zeros(dim, dtype=np.float64)
        self.outer = np.zeros((dim, dim), dtype=np.float64)
        self.reservoir = np.zeros((kid_max, dim), dtype=np.float32)
        self.rng = np.random.default_rng(seed)

    def add(self, features: torch.Tensor | np.ndarray) -> None:
        x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
        x = x.astype(np.float64, copy=False)
        if x.ndim != 2 or x.shape[1] != self.total.shape[0]:
            raise ValueError(f"expected features of shape (B, {self.total.shape[0]}), got {x.shape}")
        self.total += x.sum(axis=0)
        self.outer += x.T @ x
        k = self.reservoir.shape[0]
        for row in x:  # Algorithm R: after t rows, each row is in the reservoir with probability k/t
            if self.n < k:
                self.reservoir[self.n] = row
            else:
                j = int(self.rng.integers(0, self.n + 1))
                if j < k:
                    self.reservoir[j] = row
            self.n += 1

    def stats(self) -> FeatureStats:
        """Raises ValueError with fewer than 2 features (no covariance)."""
        if self.n < 2:
            raise ValueError(f"FID needs at least 2 images, got {self.n}")
        mu = self.total / self.n
        sigma = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return FeatureStats(n=self.n, mu=mu, sigma=sigma, sample=self.reservoir[: min(self.n, len(self.reservoir))])


def stats_of(features: np.ndarray | torch.Tensor, *, kid_max: int = 10_000, seed: int = 0) -> FeatureStats:
    """FeatureStats of an in-memory (N, D) feature array."""
    acc = FeatureAccumulator(features.shape[1], kid_max=kid_max, seed=seed)
    acc.add(features)
    return acc.stats()


def fid(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (same D); put the reused set first.

    In general: one symmetric eigendecomposition of a.sigma (cached on `a`) and one eigenvalue
    solve, both D×D. When both sets have at most D features and their samples hold all of them,
    the same value comes from the n×n cross-Gram matrix instead (see `_trace_sqrt_low_rank`).
    """
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature sizes differ: {a.mu.shape} vs {b.mu.shape}")
    complete = len(a.sample) == a.n and len(b.sample) == b.n
    if complete and max(a.n, b.n) <= a.mu.shape[0]:
        trace_sqrt = _trace_sqrt_low_rank(a, b)
    else:
        root = a.sigma_sqrt
        cross = np.linalg.eigvalsh(root @ b.sigma @ root)  # eigenvalues of Σa^½ Σb Σa^½ = those of Σa Σb
        trace_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    diff = a.mu - b.mu
    return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2 * trace_sqrt)


def _trace_sqrt_low_rank(a: FeatureStats, b: FeatureStats) -> float:
    """Tr (Σa Σb)^½ from all features: with Σ = CᵀC / (n − 1) (C centred, n × D), the non-zero eigenvalues
    of Σa Σb are the squared singular values of Ca Cbᵀ over (na − 1)(nb − 1)."""
    ca = a.sample.astype(np.float64) - a.mu
    cb = b.sample.astype(np.float64) - b.mu
    singular = np.linalg.svd(ca @ cb.T, compute_uv=False)
    return float(singular.sum() / np.sqrt((a.n - 1) * (b.n - 1)))


def kid(a: np.ndarray, b: np.ndarray, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> KIDResult:
    """Unbiased MMD² (cubic polynomial kernel) over `subsets` random subsets of both (N, D) sets.

    The subset size is min(subset_size, len(a), len(b)); subsets are drawn without replacement
    within a subset. Raises ValueError with fewer than 2 features in a set.
    """
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 features per set, got {len(a)} and {len(b)}")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)].astype(np.float64)
        y = b[rng.choice(len(b), m, replace=False)].astype(np.float64)
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[i] = within - 2 * kxy.sum() / (m * m)
    return KIDResult(mean=float(values.mean()), std=float(values.std()), subsets=subsets, subset_size=m)


def cache_key(**parts: object) -> str:
    """A short stable hash of JSON-able parts (dataset fingerprint, metric settings, seeds)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_feature_stats(path: str | Path, stats: FeatureStats, **extra: np.ndarray) -> None:
    """Write stats (and any extra arrays, e.g. the spec list) to an .npz, atomically (tmp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, n=np.int64(stats.n), mu=stats.mu, sigma=stats.sigma, sample=stats.sample, **extra)
    tmp.replace(path)


def load_feature_stats(path: str | Path) -> tuple[FeatureStats, dict[str, np.ndarray]]:
    """Read stats written by `save_feature_stats` (no pickles): (stats, extra arrays)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    stats = FeatureStats(
        n=int(arrays.pop("n")), mu=arrays.pop("mu"), sigma=arrays.pop("sigma"), sample=arrays.pop("sample")
    )
    return stats, arrays
