"""Bucketed training batches from WebDataset shards, with SDXL's size and crop conditioning.

The same shards as the patch loader, read by the same per-worker pipeline (`loader.PatchStream`'s
shard stream: resampled forever, or one pass split across ranks and workers; shuffled in a
buffer; seeded by (seed, rank, worker, epoch)). Per sample, the image header gives the displayed
size, `anyres_data.sampling.buckets.place` the bucket and the crop (drawn from the worker's random stream);
the sample waits, still encoded, in its bucket's queue. When a queue holds a batch, its images are
cut (`cut_bucket`: libvips shrink-on-load, lanczos3, crop) and yielded together: every batch is
one bucket. In one-pass mode the queues left at the end come out as smaller batches.

Memory: at most batch_size − 1 encoded samples wait per bucket, per worker.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pyvips
import torch
from torch.utils.data import get_worker_info

from anyres_data.dataset.shards import image_bytes, resolve_shards
from anyres_data.filters import check_decodable
from anyres_data.probe import ImageHeader, check_complete, read_header
from anyres_data.rejects import Rejected
from anyres_data.sampling.buckets import BucketSettings, BucketTable, Placement, cut_bucket, place
from anyres_data.sampling.draw import ImageTooSmall, worker_rng
from anyres_data.sampling.loader import (
    LIMITS,
    MAX_SKIPS_IN_A_ROW,
    LoaderSettings,
    PatchLoader,
    PatchStream,
    SkipCounts,
    rank_and_world,
    spawned_loader,
)


class BucketBatch(NamedTuple):
    """One bucket's batch, with fields named as diffusers' SDXL training script names them.

    images (B, 3, H, W) uint8 RGB, H×W the bucket; original_sizes (B, 2) int64 (height, width) of
    the displayed original; crop_top_lefts (B, 2) int64 (top, left) of the crop in the resized
    image; target_sizes (B, 2) int64 (height, width) = (H, W); keys; captions (the `txt` member,
    None where a sample has none).
    """

    images: torch.Tensor
    original_sizes: torch.Tensor
    crop_top_lefts: torch.Tensor
    target_sizes: torch.Tensor
    keys: list[str]
    captions: list[str | None]

    @property
    def pixel_values(self) -> torch.Tensor:
        """(B, 3, H, W) float32 in [-1, 1]: diffusers' ToTensor + Normalize([0.5], [0.5])."""
        return self.images.float() / 127.5 - 1

    def add_time_ids(self) -> torch.Tensor:
        """(B, 6) float32: original_size + crops_coords_top_left + target_size, SDXL's micro-conditioning."""
        return torch.cat([self.original_sizes, self.crop_top_lefts, self.target_sizes], dim=1).float()


class _Waiting(NamedTuple):
    key: str
    data: bytes
    header: ImageHeader
    placement: Placement
    caption: str | None


def _caption(sample: dict[str, Any]) -> str | None:
    text = sample.get("txt")
    return None if text is None else text.decode("utf-8", errors="replace").strip()


class _Skips:
    """Counts skipped samples by reason; MAX_SKIPS_IN_A_ROW in a row means the data is broken: stop."""

    def __init__(self, counts: SkipCounts) -> None:
        self.counts = counts
        self.in_a_row = 0

    def skip(self, key: str, data: bytes | None, error: BaseException) -> None:
        reason = "no_image" if data is None else "too_small" if isinstance(error, ImageTooSmall) else "unreadable"
        if isinstance(error, Rejected) and error.reason in ("too_many_pixels", "too_large_to_decode"):
            reason = "too_large"
        self.counts.add(reason, key, error)
        self.in_a_row += 1
        if self.in_a_row >= MAX_SKIPS_IN_A_ROW:
            raise RuntimeError(f"{self.in_a_row} samples in a row were skipped (last: {key}, {reason})") from error


def _collate(items: list[tuple[_Waiting, np.ndarray]]) -> BucketBatch:
    pixels = torch.from_numpy(np.stack([p for _, p in items]))  # (B, H, W, 3)
    placements = [w.placement for w, _ in items]
    return BucketBatch(
        pixels.permute(0, 3, 1, 2).contiguous(),  # (B, 3, H, W)
        torch.tensor([(p.original[1], p.original[0]) for p in placements], dtype=torch.int64),
        torch.tensor([(p.crop[1], p.crop[0]) for p in placements], dtype=torch.int64),
        torch.tensor([(p.target.height, p.target.width) for p in placements], dtype=torch.int64),
        [w.key for w, _ in items],
        [w.caption for w, _ in items],
    )


def bucket_batches(
    samples: Iterator[dict[str, Any]],
    *,
    table: BucketTable,
    batch_size: int,
    rng: np.random.Generator,
    skips: SkipCounts,
    skip_batches: int = 0,
    partial: bool = False,
) -> Iterator[BucketBatch]:
    """WebDataset samples → batches of one bucket each; bad samples are counted and skipped.

    The first `skip_batches` batches are only formed (headers read, placements drawn), never
    decoded: the random stream advances as if they had been. With `partial`, the queues left when
    the samples end are yielded as smaller batches (by bucket index). Raises RuntimeError after
    MAX_SKIPS_IN_A_ROW bad samples in a row.
    """
    queues: dict[int, list[tuple[_Waiting, np.ndarray | None]]] = {}
    skipper = _Skips(skips)

    def cut(queue: list[tuple[_Waiting, np.ndarray | None]], *, final: bool) -> BucketBatch | None:
        """Decode the queue's waiting samples (dropping bad ones); a batch if it is still full (or final)."""
        for i, (waiting, pixels) in enumerate(queue):
            if pixels is None:
                try:
                    pixels = cut_bucket(
                        waiting.data, waiting.placement, header=waiting.header, headroom=table.settings.headroom
                    )
                    queue[i] = (waiting, pixels)
                except (Rejected, pyvips.Error, ValueError) as error:
                    skipper.skip(waiting.key, waiting.data, error)
                    queue[i] = (waiting, np.empty(0))  # marked; removed below
                    continue
                skipper.in_a_row = 0
        queue[:] = [(w, p) for w, p in queue if p.size]
        if not queue or (len(queue) < batch_size and not final):
            return None
        batch = _collate(queue)
        queue.clear()
        return batch

    for sample in samples:
        key = sample.get("__key__", "?")
        data = image_bytes(sample)
        try:
            if data is None:
                raise LookupError(f"no image member among {sorted(k for k in sample if not k.startswith('__'))}")
            header = read_header(data)
            check_decodable(header, max_pixels=LIMITS.max_pixels, max_decode_bytes=LIMITS.max_decode_bytes)
            check_complete(data, header)
            placement = place(width=header.width, height=header.height, table=table, rng=rng)
        except (LookupError, Rejected, pyvips.Error, ValueError) as error:
            skipper.skip(key, data, error)
            continue
        skipper.in_a_row = 0
        queue = queues.setdefault(placement.bucket, [])
        queue.append((_Waiting(key, data, header, placement, _caption(sample)), None))
        if len(queue) < batch_size:
            continue
        if skip_batches > 0:
            skip_batches -= 1
            queue.clear()
            continue
        if (batch := cut(queue, final=False)) is not None:
            yield batch
    if partial:
        for bucket in sorted(queues):
            if (batch := cut(queues[bucket], final=True)) is not None:
                yield batch


class BucketStream(PatchStream):
    """The per-worker pipeline: PatchStream's shard stream, bucketed instead of cut into patches."""

    def __init__(
        self,
        *,
        settings: LoaderSettings,
        buckets: BucketSettings,
        urls: list[str],
        rank: int,
        world_size: int,
        epoch: int,
        skips: SkipCounts,
        start_batch: int,
    ) -> None:
        super().__init__(
            settings=settings,
            sampler=None,  # not used: the buckets replace the patch sampler
            hr_urls=urls,
            lr_urls=[],
            rank=rank,
            world_size=world_size,
            epoch=epoch,
            skips=skips,
            start_batch=start_batch,
        )
        self.buckets = buckets

    def __iter__(self) -> Iterator[BucketBatch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        epoch = self.epoch + self._passes
        self._passes += 1
        s = self.settings
        # the DataLoader takes batches from its workers in turn: worker w made batches w, w + W, ...
        skip = self.start_batch if self._passes == 1 else 0
        skipped = max(0, -(-(skip - worker) // workers))
        batches = bucket_batches(
            self._samples(self.hr_urls, worker=worker, epoch=epoch, stream=0),
            table=BucketTable(self.buckets),
            batch_size=s.batch_size,
            rng=worker_rng(s.seed, rank=self.rank, worker=worker, epoch=epoch),
            skips=self.skips,
            skip_batches=skipped,
            partial=not s.resampled,
        )
        if s.epoch_samples is not None:
            per_worker = math.ceil(s.epoch_samples / (self.world_size * workers * s.batch_size))
            batches = itertools.islice(batches, max(0, per_worker - skipped))
        return batches


def make_bucket_loader(
    settings: LoaderSettings,
    buckets: BucketSettings,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    epoch: int = 0,
    start_batch: int = 0,
) -> PatchLoader:
    """Bucketed batches for one rank: an iterable of BucketBatch (`.skipped()` counts what was skipped).

    The shards are `settings.hr` (any form `resolve_shards` takes); `settings.lr` must be None.
    Ranks, workers, resampling, epochs and `start_batch` (resume exactly after that many batches,
    the skipped ones formed but not decoded) work as in `make_loader`. Raises ValueError for missing
    shards, an `lr` set, or fewer shards than ranks × workers in one-pass mode.
    """
    rank, world_size = rank_and_world(rank, world_size)
    if settings.lr is not None:
        raise ValueError("a bucketed loader reads one set of shards: give them as hr, and no lr")
    urls = resolve_shards(settings.hr)
    readers = world_size * max(settings.workers, 1)
    if not settings.resampled and len(urls) < readers:
        raise ValueError(
            f"{len(urls)} shard(s) for {readers} reader(s) (ranks × workers): some would get no data; "
            "use resampled=True, fewer workers, or more (smaller) shards"
        )
    skips = SkipCounts()
    stream = BucketStream(
        settings=settings,
        buckets=buckets,
        urls=urls,
        rank=rank,
        world_size=world_size,
        epoch=epoch,
        skips=skips,
        start_batch=start_batch,
    )
    return spawned_loader(stream, settings, skips)
