"""Real images for the metrics, streamed from a dataset's shards (docs/design.md, "Dataset on disk").

Shards are read one tar member at a time (webdataset's tar iterators over fsspec streams), so a
dataset is never held in memory; members of samples the metric does not need are skipped
without being kept. Pixels come from `anyres_data.sampling.patches`, the training sampler's cutter:

- whole images at R (FID@R, SWD@R): the centred square of side min(w, h), resized to R×R with
  libvips `reduce` lanczos3 (antialiased: the kernel is stretched by the reduction factor),
  after JPEG shrink-on-load that leaves at least 2× for the Lanczos step (`cut_global`);
- patches (pFID, pSWD): `cut_patch` at the spec list's entries.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import fsspec
import numpy as np
import pandas as pd
import torch
from webdataset.tariterators import group_by_keys, tar_file_expander

from anyres_data.dataset.shards import IMAGE_EXTENSIONS, resolve_shards
from anyres_data.sampling.patches import cut_global, cut_patch
from anyres_data.spec import PatchSpec
from anyres_model.metrics.patch_specs import SpecList

MANIFEST = "manifest.parquet"


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def read_manifest(data: str) -> pd.DataFrame:
    """The dataset's manifest (one row per image; key, width, height as displayed). Raises FileNotFoundError."""
    path = _join(data, MANIFEST)
    fs, local = fsspec.core.url_to_fs(path)
    if not fs.exists(local):
        raise FileNotFoundError(f"{path} not found: is {data} a dataset built by `anyres-data build`?")
    with fsspec.open(path, "rb") as f:
        manifest = pd.read_parquet(f)
    missing = {"key", "width", "height"} - set(manifest.columns)
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(sorted(missing))}")
    return manifest


def dataset_fingerprint(data: str) -> str:
    """sha256 of the manifest file: changes whenever the dataset's set of images does."""
    with fsspec.open(_join(data, MANIFEST), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def shard_urls(data: str) -> list[str]:
    """The dataset's shards/*.tar, sorted, as the training loader lists them. Raises ValueError when there are none."""
    return resolve_shards(data)


@dataclass(frozen=True)
class Sample:
    key: str
    data: bytes  # the original encoded image


def iter_samples(data: str, *, keys: set[str] | None = None) -> Iterator[Sample]:
    """Stream (key, encoded bytes) of the dataset's images in shard order; only `keys` when given."""

    def wanted(fname: str) -> bool:
        return keys is None or fname.split(".", 1)[0] in keys

    for url in shard_urls(data):
        with fsspec.open(url, "rb") as stream:
            files = tar_file_expander([{"url": url, "stream": stream}], select_files=wanted)
            for sample in group_by_keys(files):
                images = [ext for ext in IMAGE_EXTENSIONS if ext in sample]
                if len(images) != 1:
                    members = sorted(k for k in sample if not k.startswith("__"))
                    raise ValueError(f"{url}: sample {sample['__key__']} has members {members}, expected one image")
                yield Sample(sample["__key__"], sample[images[0]])


def to_tensor(pixels: Iterable[np.ndarray]) -> torch.Tensor:
    """Stack HWC uint8 arrays into a (B, 3, H, W) uint8 tensor."""
    return torch.from_numpy(np.stack(list(pixels))).permute(0, 3, 1, 2).contiguous()


def whole_images(data: str, *, size: int, keys: set[str], batch: int) -> Iterator[tuple[list[str], torch.Tensor]]:
    """Batches (keys, uint8 (B, 3, size, size)): the centred squares of `keys`' images resized to size×size."""
    pending: list[Sample] = []
    for sample in iter_samples(data, keys=keys):
        pending.append(sample)
        if len(pending) == batch:
            yield _whole_batch(pending, size)
            pending = []
    if pending:
        yield _whole_batch(pending, size)


def _whole_batch(samples: list[Sample], size: int) -> tuple[list[str], torch.Tensor]:
    pixels = []
    for sample in samples:
        with _naming(sample.key):
            pixels.append(cut_global(sample.data, p=size, crop="centre").pixels)
    return [s.key for s in samples], to_tensor(pixels)


@contextlib.contextmanager
def _naming(key: str) -> Iterator[None]:
    """Re-raise a failure to decode or cut an image as ValueError naming the sample."""
    try:
        yield
    except Exception as err:  # pyvips.Error and friends: the manifest promised a readable image
        raise ValueError(f"cannot read sample {key}: {err}") from err


@dataclass(frozen=True)
class PatchBatch:
    index: np.ndarray  # (B,) positions in the spec list
    pixels: torch.Tensor  # (B, 3, p, p) uint8
    specs: list[PatchSpec]  # where each patch really lies


def patches(data: str, specs: SpecList, *, batch: int) -> Iterator[PatchBatch]:
    """Cut every entry of the spec list from the streamed images, in shard order (several per image when listed)."""
    entries: dict[str, list[int]] = {}
    for i, key in enumerate(specs.keys.tolist()):
        entries.setdefault(key, []).append(i)
    pending: list[tuple[int, np.ndarray, PatchSpec]] = []
    seen = set()
    for sample in iter_samples(data, keys=set(entries)):
        seen.add(sample.key)
        for i in entries[sample.key]:
            with _naming(sample.key):
                patch = cut_patch(sample.data, specs.drawn(i))
            pending.append((i, patch.pixels, patch.spec))
            if len(pending) == batch:
                yield _patch_batch(pending)
                pending = []
    if pending:
        yield _patch_batch(pending)
    missing = set(entries) - seen
    if missing:
        raise ValueError(f"{len(missing)} image(s) of the manifest are not in the shards, e.g. {sorted(missing)[:3]}")


def _patch_batch(items: list[tuple[int, np.ndarray, PatchSpec]]) -> PatchBatch:
    return PatchBatch(
        index=np.array([i for i, _, _ in items], dtype=np.int64),
        pixels=to_tensor(p for _, p, _ in items),
        specs=[s for _, _, s in items],
    )
