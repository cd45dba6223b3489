"""Training batches from WebDataset shards: HR patches at random scales mixed with LR global samples.

Per DataLoader worker, a webdataset pipeline reads shards (resampled forever for training, or one
pass split across ranks and workers), groups tar members into samples, shuffles them in a buffer
and cuts each into a patch with `anyres_data.sampling.patches`. With probability `global_prob`, a whole
batch (`global_mixing="batch"`, the reference's) or a single element ("element") is global: LR
images (or, without an LR set, HR squares) resized to p×p; otherwise HR patches. Geometry always
comes from the image header, never from the sample's JSON, so img2dataset shards (KEY.jpg +
KEY.json of other fields) load as well as ours.

Workers are spawned, never forked (libvips and fork do not mix), and run one libvips thread with
no operation cache. Corrupt samples and unreadable shards are skipped, logged and counted
(`PatchLoader.skipped()`), never fatal.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
import os
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlparse

import numpy as np
import pyvips
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_expander

from anyres_data.dataset.shards import WDS_SCHEMES, image_bytes, open_shard, resolve_shards
from anyres_data.filters import FilterSettings, check_decodable
from anyres_data.probe import ImageHeader, check_complete, read_header
from anyres_data.rejects import Rejected
from anyres_data.sampling.cache import CacheIndex, CacheMismatch, cut_cached, find_cache, open_cache
from anyres_data.sampling.draw import DrawnSpec, ImageTooSmall, SamplerSettings, draw_spec, global_spec, worker_rng
from anyres_data.sampling.patches import Patch, cut_patch, render_patch, shrink_factor
from anyres_data.settings import setting
from anyres_data.spec import PatchSpec, specs_to_tensor
from anyres_data.vips import setup_vips_worker

log = logging.getLogger(__name__)

SKIP_REASONS = ("shard", "no_image", "unreadable", "too_small", "too_large")
FALLBACK_REASONS = ("missing", "unreadable")  # why a patch was cut from the original instead of the cache
MAX_SKIPS_IN_A_ROW = 1000  # then the data, not a few samples, is broken: stop instead of spinning forever
# Shards that fail before any sample has arrived: then the URLs are wrong or the data is gone. Resampling
# draws shards at random, so with half of them bad a false alarm has odds of 2^-32.
MAX_SHARDS_WITHOUT_SAMPLE = 32
LIMITS = FilterSettings()  # the loader refuses what a default build refuses (pixels, memory to decode)


@dataclass(frozen=True)
class LoaderSettings:
    """Where training samples come from and how they are batched."""

    hr: str = setting(
        "",
        "HR shards: a dataset directory (OUT or OUT/shards), a .tar URL, a brace pattern "
        "(shards/x-{000000..000009}.tar), a glob, or several joined by '::'; any fsspec URL, pipe: or http(s).",
    )
    lr: str | None = setting(
        None, "LR shards for global samples (same forms as hr); None: global samples are HR squares resized whole."
    )
    batch_size: int = setting(32, "Samples per batch (per rank).")
    workers: int = setting(2, "Spawned DataLoader worker processes; 0 reads in the calling process.")
    seed: int = setting(0, "Base seed; each worker's stream derives from (seed, rank, worker, epoch).")
    resampled: bool = setting(
        True,
        "Draw shards with replacement, forever (training). False: one pass per epoch, shards split "
        "across ranks and workers so that every sample is seen once.",
    )
    epoch_samples: int | None = setting(
        None, "Samples per epoch over all ranks; None: infinite when resampled, one pass over the shards otherwise."
    )
    shuffle_buffer: int = setting(1000, "Samples held per worker for shuffling; 0 keeps shard order.")
    prefetch: int = setting(2, "Batches each worker prepares ahead.")
    pin_memory: bool = setting(False, "Pin batches in page-locked memory (faster copies to a GPU).")
    cache: str = setting(
        "auto",
        "Training cache (anyres-data cache): auto: the one recorded in the HR dataset's dataset.json, if any; "
        "a cache folder or fsspec URL; none: always cut from the originals.",
    )
    patches_per_decode: int = setting(
        1,
        "HR patches cut from each decode of an original (k); k > 1 passes them through a shuffle buffer of "
        "k × batch_size patches, so a batch rarely holds two of one image. Global samples are one per decode.",
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be ≥ 0, got {self.workers}")
        if self.epoch_samples is not None and self.epoch_samples < 1:
            raise ValueError(f"epoch_samples must be ≥ 1 or None, got {self.epoch_samples}")
        if self.patches_per_decode < 1:
            raise ValueError(f"patches_per_decode must be ≥ 1, got {self.patches_per_decode}")


class PatchBatch(NamedTuple):
    """A training batch: images (B, 3, p, p) uint8 RGB; specs (B, 4) float64 (s, x0, y0, p); keys."""

    images: torch.Tensor
    specs: torch.Tensor
    keys: list[str]


class PatchItem(NamedTuple):
    """One cut sample before batching: pixels (p, p, 3) uint8, the spec where it really lies, its key."""

    pixels: np.ndarray | None  # None only for items skipped by a fast-forward
    spec: PatchSpec
    key: str
    pending: Callable[[], Patch] | None = None  # for a fast-forwarded item: cuts it, should it be needed after all


def collate_patches(items: list[PatchItem]) -> PatchBatch:
    """Stack items into a PatchBatch (channels first)."""
    pixels = torch.from_numpy(np.stack([item.pixels for item in items]))  # (B, p, p, 3)
    return PatchBatch(
        pixels.permute(0, 3, 1, 2).contiguous(),  # (B, 3, p, p)
        specs_to_tensor([item.spec for item in items]),
        [item.key for item in items],
    )


class SkipCounts:
    """Skipped samples by reason, shared by all worker processes (a spawn-safe shared array)."""

    def __init__(self) -> None:
        context = torch.multiprocessing.get_context("spawn")
        self._counts = context.Array("q", len(SKIP_REASONS))
        self._first_shard = context.Array("c", 2048)  # "URL: error" of the first shard that failed

    def add(self, reason: str, what: str, error: BaseException) -> None:
        with self._counts.get_lock():
            self._counts[SKIP_REASONS.index(reason)] += 1
            if reason == "shard" and not self._first_shard.value:
                self._first_shard.value = f"{what}: {_describe(error)}".encode()[:2047]
        log.warning("skipped %s (%s): %s", what, reason, _describe(error))

    def first_shard_error(self) -> str | None:
        """The URL and error of the first shard that failed, over all workers; None if none has."""
        with self._counts.get_lock():
            return self._first_shard.value.decode(errors="replace") or None

    def as_dict(self) -> dict[str, int]:
        with self._counts.get_lock():
            return dict(zip(SKIP_REASONS, self._counts[:], strict=True))


class CacheFallbacks:
    """Patches cut from the original because the cache could not serve them, by reason; shared by all workers."""

    def __init__(self) -> None:
        self._counts = torch.multiprocessing.get_context("spawn").Array("q", len(FALLBACK_REASONS))

    def add(self, reason: str, key: str, error: BaseException) -> None:
        with self._counts.get_lock():
            self._counts[FALLBACK_REASONS.index(reason)] += 1
            total = sum(self._counts[:])
        if total <= 10 or total % 1000 == 0:  # the first ones, then a reminder: a missing cache is not an error
            log.warning("cache %s for %s, cut from the original (%d so far): %s", reason, key, total, _describe(error))

    def as_dict(self) -> dict[str, int]:
        with self._counts.get_lock():
            return dict(zip(FALLBACK_REASONS, self._counts[:], strict=True))


def cut_sample(
    data: bytes,
    drawn: DrawnSpec,
    *,
    header: ImageHeader,
    key: str,
    cache: CacheIndex | None,
    fallbacks: CacheFallbacks | None,
) -> Patch:
    """Cut `drawn` from the cache entry of `key` when there is one, else (counted in `fallbacks`) from `data`."""
    cached = _from_cache([drawn], header=header, key=key, cache=cache, fallbacks=fallbacks)
    return cached[0] if cached is not None else cut_patch(data, drawn, header=header)


def _from_cache(
    drawn: list[DrawnSpec],
    *,
    header: ImageHeader,
    key: str,
    cache: CacheIndex | None,
    fallbacks: CacheFallbacks | None,
) -> list[Patch] | None:
    """The patches from the cache entry of `key`; None (a fallback counted, unless the cache leaves this
    image out) when there is no cache, the entry is missing or it cannot be read."""
    if cache is None or not cache.format.wants(header.width, header.height):
        return None
    try:
        return [
            cut_cached(cache.entry(key), d, width=header.width, height=header.height, ycbcr=cache.ycbcr) for d in drawn
        ]
    except FileNotFoundError as error:
        fallbacks.add("missing", key, error)
    except (pyvips.Error, CacheMismatch, OSError) as error:
        fallbacks.add("unreadable", key, error)
    return None


def cut_several(
    data: bytes,
    drawn: list[DrawnSpec],
    *,
    header: ImageHeader,
    key: str,
    cache: CacheIndex | None,
    fallbacks: CacheFallbacks | None,
) -> list[Patch]:
    """Several patches (not global samples) of one image: from the cache, else from a single decode of `data`.

    The decode is shrunk on load by the smallest factor any of the patches allows, held in memory, and
    each patch is rendered from it as `cut_patch` would (at a finer shrink, so at least as exact).
    """
    cached = _from_cache(drawn, header=header, key=key, cache=cache, fallbacks=fallbacks)
    if cached is not None:
        return cached
    k = min(shrink_factor(d.square.m / d.spec.s) for d in drawn) if header.format == "jpg" else 1
    image = pyvips.Image.new_from_buffer(data, "", fail_on="error", **({"shrink": k} if k > 1 else {}))
    image = image.copy_memory()
    full = (header.stored_width, header.stored_height)
    return [render_patch(image, d, k=k, orientation=header.orientation, full_size=full) for d in drawn]


def _one_of(data: bytes, group: list[DrawnSpec], i: int, where: dict[str, Any]) -> Patch:
    return cut_several(data, group, **where)[i]


def _materialise(items: Iterator[PatchItem], skips: SkipCounts) -> Iterator[PatchItem]:
    """Cut the fast-forwarded items that a shuffle buffer held past the fast-forward (see `make_loader`)."""
    for item in items:
        if item.pixels is None and item.pending is not None:
            try:
                patch = item.pending()
            except (pyvips.Error, ValueError) as error:
                skips.add("unreadable", item.key, error)
                continue
            item = PatchItem(patch.pixels, patch.spec, item.key)
        yield item


def _from_expander(error: BaseException) -> bool:
    """Whether webdataset's tar expander appended (stream, url) to the error's args."""
    args = getattr(error, "args", ())
    return len(args) >= 2 and isinstance(args[-1], str) and not isinstance(args[-2], str)


def _describe(error: BaseException) -> str:
    """'ReadError: empty file': the error without the stream and URL webdataset appends to its args."""
    args = error.args[:-2] if _from_expander(error) else error.args
    return f"{type(error).__name__}: {', '.join(map(str, args)) if args else error}"


class _ShardHealth:
    """Shard failures of one stream (one worker's shards) before its first sample.

    A bad shard among good ones is skipped and counted; MAX_SHARDS_WITHOUT_SAMPLE failures with no
    sample yet mean the URLs are wrong (every shard a 404) or the data is gone: stop, saying so.
    """

    def __init__(self, skips: SkipCounts) -> None:
        self.skips = skips
        self.failures = 0
        self.samples = 0

    def failed(self, url: str, error: BaseException) -> None:
        self.skips.add("shard", url, error)
        self.failures += 1
        if not self.samples and self.failures >= MAX_SHARDS_WITHOUT_SAMPLE:
            raise RuntimeError(
                f"{self.failures} shards failed and no sample has arrived: check the shard URLs. "
                f"The first failure: {self.skips.first_shard_error()}"
            ) from error

    def handler(self, error: BaseException) -> bool:
        """A webdataset `handler=`: count the failure (webdataset appends the stream and the URL), go on."""
        self.failed(error.args[-1] if _from_expander(error) else "shard data", error)
        return True

    def count(self, samples: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for sample in samples:
            self.samples += 1
            yield sample


def _open_shards(shards: Iterator[dict[str, Any]], health: _ShardHealth) -> Iterator[dict[str, Any]]:
    failures = 0
    for shard in shards:
        try:
            stream = open_shard(shard["url"])
        except Exception as error:  # unreachable URL, vanished file: skip the shard, keep training
            health.failed(shard["url"], error)
            failures += 1
            if failures >= MAX_SKIPS_IN_A_ROW:
                raise RuntimeError(f"{failures} shards in a row could not be opened (last: {shard['url']})") from error
            continue
        failures = 0
        yield dict(shard, stream=stream)


def read_samples(shards: Iterable[dict[str, Any]], *, skips: SkipCounts) -> Iterator[dict[str, Any]]:
    """The samples of shards given as `{"url": ...}` dicts, in order.

    A sample is a dict of member bytes by (lowercased) extension plus `__key__` and `__url__`.
    Shards that do not open or read are counted under "shard" and skipped. Raises RuntimeError, with
    the first failure's URL and error, when MAX_SHARDS_WITHOUT_SAMPLE shards fail before any sample.
    """
    health = _ShardHealth(skips)
    files = tar_file_expander(_open_shards(iter(shards), health), handler=health.handler)
    return health.count(group_by_keys(files, handler=health.handler))


class FastForward:
    """How many of the next items a worker only draws, without cutting pixels (see `make_loader`'s start_batch).

    Drawing consumes the random streams exactly as cutting would (header, square, scale, window),
    so the items after the skipped ones are the ones an uninterrupted stream would give.
    """

    def __init__(self, items: int) -> None:
        self.left = items


def _cut(
    samples: Iterator[dict[str, Any]],
    *,
    sampler: SamplerSettings,
    whole: bool | Iterator[bool],
    rng: np.random.Generator,
    skips: SkipCounts,
    fast_forward: FastForward,
    cache: CacheIndex | None = None,
    fallbacks: CacheFallbacks | None = None,
    per_decode: int = 1,
) -> Iterator[PatchItem]:
    """Samples → patches (or, with `whole`, global samples); bad samples are counted and skipped.

    `per_decode` > 1 (patches only, `whole` False) cuts that many patches from each sample, one decode.

    `whole` may be an iterator of flags, one per *yielded* item (a skipped sample does not use one),
    so that runs of flags line up with batches.
    While `fast_forward.left` > 0, items carry no pixels (None) and nothing is decoded.
    Raises RuntimeError after MAX_SKIPS_IN_A_ROW bad samples in a row (resampling would spin forever).
    """
    in_a_row = 0
    flags = whole if not isinstance(whole, bool) else None
    draw = global_spec if (next(flags) if flags is not None else whole) else draw_spec
    for sample in samples:
        key = sample.get("__key__", "?")
        data = image_bytes(sample)
        try:
            if data is None:
                members = sorted(k for k in sample if not k.startswith("__"))
                raise LookupError(f"no image member among {members}")
            header = read_header(data)
            check_decodable(header, max_pixels=LIMITS.max_pixels, max_decode_bytes=LIMITS.max_decode_bytes)
            check_complete(data, header)  # a cut reads only part of the image: a missing end is found here
            drawn = draw(width=header.width, height=header.height, settings=sampler, rng=rng)
            group = [drawn] + [
                draw(width=header.width, height=header.height, settings=sampler, rng=rng) for _ in range(per_decode - 1)
            ]
            where = dict(header=header, key=key, cache=cache, fallbacks=fallbacks)
            if fast_forward.left > 0:
                fast_forward.left = max(0, fast_forward.left - len(group))
                for i, d in enumerate(group):
                    pending = (
                        functools.partial(cut_sample, data, d, **where)
                        if per_decode == 1
                        else functools.partial(_one_of, data, group, i, where)
                    )
                    yield PatchItem(None, d.spec, key, pending)
                if flags is not None:
                    draw = global_spec if next(flags) else draw_spec
                continue
            patches = [cut_sample(data, drawn, **where)] if per_decode == 1 else cut_several(data, group, **where)
        except (LookupError, Rejected, pyvips.Error, ValueError) as error:
            reason = "no_image" if data is None else "too_small" if isinstance(error, ImageTooSmall) else "unreadable"
            if isinstance(error, Rejected) and error.reason in ("too_many_pixels", "too_large_to_decode"):
                reason = "too_large"
            skips.add(reason, key, error)
            in_a_row += 1
            if in_a_row >= MAX_SKIPS_IN_A_ROW:
                raise RuntimeError(f"{in_a_row} samples in a row were skipped (last: {key}, {reason})") from error
            continue
        in_a_row = 0
        for patch in patches:
            yield PatchItem(patch.pixels, patch.spec, key)
        if flags is not None:
            draw = global_spec if next(flags) else draw_spec


def _mix(patches: Iterator[PatchItem], globals_: Iterator[PatchItem], *, prob_global: float, rng: np.random.Generator):
    """Each element from `globals_` with probability prob_global, else from `patches`; ends when one ends."""
    while True:
        source = globals_ if rng.random() < prob_global else patches
        try:
            yield next(source)
        except StopIteration:
            return


def _batch_flags(*, prob_global: float, batch_size: int, rng: np.random.Generator) -> Iterator[bool]:
    """Whether each element is global, decided once per run of `batch_size` elements (per batch)."""
    while True:
        yield from itertools.repeat(bool(rng.random() < prob_global), batch_size)


def _mix_batches(
    patches: Iterator[PatchItem],
    globals_: Iterator[PatchItem],
    *,
    prob_global: float,
    batch_size: int,
    rng: np.random.Generator,
) -> Iterator[PatchItem]:
    """Runs of `batch_size` elements, each run all from `globals_` (probability prob_global) or all from `patches`.

    Batching the result in order gives batches that are wholly global or wholly HR patches, as the
    reference implementation draws them. Ends when the chosen source ends (a last, partial run).
    """
    for is_global in _batch_flags(prob_global=prob_global, batch_size=batch_size, rng=rng):
        try:
            yield next(globals_ if is_global else patches)
        except StopIteration:
            return


def _init_worker(worker_id: int) -> None:
    setup_vips_worker()
    torch.set_num_threads(1)


class PatchStream(IterableDataset):
    """The per-worker pipeline; only settings cross the process boundary (pickled at spawn)."""

    def __init__(
        self,
        *,
        settings: LoaderSettings,
        sampler: SamplerSettings,
        hr_urls: list[str],
        lr_urls: list[str],
        rank: int,
        world_size: int,
        epoch: int,
        skips: SkipCounts,
        start_batch: int,
        cache: CacheIndex | None = None,
        fallbacks: CacheFallbacks | None = None,
    ) -> None:
        self.cache, self.fallbacks = cache, fallbacks
        self.settings, self.sampler = settings, sampler
        self.hr_urls, self.lr_urls = hr_urls, lr_urls
        self.rank, self.world_size, self.epoch = rank, world_size, epoch
        self.skips = skips
        self.start_batch = start_batch
        self._passes = 0  # __iter__ calls in this process: persistent workers start a new epoch each time

    def _samples(self, urls: list[str], *, worker: int, epoch: int, stream: int) -> Iterator[dict[str, Any]]:
        s = self.settings
        seed = int(np.random.SeedSequence([s.seed, self.rank, worker, epoch, stream]).generate_state(1)[0])
        if s.resampled:
            shards = iter(wds.ResampledShards(urls, seed=seed, worker_seed=lambda: 0, deterministic=True))
        else:
            order = list(urls)
            random.Random(f"{s.seed}-{epoch}-{stream}").shuffle(order)  # the same order on every rank
            shards = wds.split_by_worker(dict(url=u) for u in itertools.islice(order, self.rank, None, self.world_size))
        samples = read_samples(shards, skips=self.skips)
        if s.shuffle_buffer > 0:
            samples = wds.shuffle(s.shuffle_buffer, initial=min(100, s.shuffle_buffer), seed=seed)(samples)
        return samples

    def __iter__(self) -> Iterator[PatchBatch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        epoch = self.epoch + self._passes
        self._passes += 1
        rng = worker_rng(self.settings.seed, rank=self.rank, worker=worker, epoch=epoch)
        sampler, gp = self.sampler, self.sampler.global_prob
        # the DataLoader takes batches from its workers in turn: worker w made batches w, w + W, ...
        skip = self.start_batch if self._passes == 1 else 0
        fast_forward = FastForward(max(0, -(-(skip - worker) // workers)) * self.settings.batch_size)

        def cut(
            urls: list[str], *, whole, stream: int, settings: SamplerSettings, per_decode: int = 1
        ) -> Iterator[PatchItem]:
            samples = self._samples(urls, worker=worker, epoch=epoch, stream=stream)
            return _cut(
                samples,
                sampler=settings,
                whole=whole,
                rng=rng,
                skips=self.skips,
                fast_forward=fast_forward,
                cache=self.cache if urls is self.hr_urls else None,
                fallbacks=self.fallbacks,
                per_decode=per_decode,
            )

        s = self.settings
        patch_only = dataclasses.replace(sampler, global_prob=0.0)
        k = s.patches_per_decode
        if k > 1 and gp < 1:
            # k patches per decode, mixed through a buffer of k batches' worth; global samples one per decode
            seed = int(np.random.SeedSequence([s.seed, self.rank, worker, epoch, 2]).generate_state(1)[0])
            amortised = cut(self.hr_urls, whole=False, stream=0, settings=patch_only, per_decode=k)
            patches = wds.shuffle(k * s.batch_size, initial=k * s.batch_size, seed=seed)(amortised)
            if gp == 0:
                items = patches
            else:
                globals_ = cut(self.lr_urls or self.hr_urls, whole=True, stream=1, settings=sampler)
                if sampler.global_mixing == "batch":
                    items = _mix_batches(patches, globals_, prob_global=gp, batch_size=s.batch_size, rng=rng)
                else:
                    items = _mix(patches, globals_, prob_global=gp, rng=rng)
        elif not self.lr_urls and (gp in (0, 1) or sampler.global_mixing == "element"):
            items = cut(self.hr_urls, whole=False, stream=0, settings=sampler)  # draw_spec decides per element
        elif not self.lr_urls:  # HR squares are the global samples, whole batches of them
            flags = _batch_flags(prob_global=gp, batch_size=s.batch_size, rng=rng)
            items = cut(self.hr_urls, whole=flags, stream=0, settings=patch_only)
        elif gp == 1:
            items = cut(self.lr_urls, whole=True, stream=1, settings=sampler)
        else:
            patches = cut(self.hr_urls, whole=False, stream=0, settings=patch_only)
            globals_ = cut(self.lr_urls, whole=True, stream=1, settings=sampler)
            if sampler.global_mixing == "batch":
                items = _mix_batches(patches, globals_, prob_global=gp, batch_size=s.batch_size, rng=rng)
            else:
                items = _mix(patches, globals_, prob_global=gp, rng=rng)
        skipped_batches = fast_forward.left // s.batch_size
        for _ in itertools.islice(items, fast_forward.left):
            pass
        items = _materialise(items, self.skips)
        batches = wds.batched(s.batch_size, collation_fn=collate_patches, partial=not s.resampled)(items)
        if s.epoch_samples is not None:
            per_worker = math.ceil(s.epoch_samples / (self.world_size * workers * s.batch_size))
            batches = itertools.islice(batches, max(0, per_worker - skipped_batches))
        return batches


class PatchLoader:
    """Iterable of PatchBatch over a spawned DataLoader; `skipped()` reports what was skipped so far."""

    def __init__(self, dataloader: DataLoader, skips: SkipCounts, fallbacks: CacheFallbacks | None = None) -> None:
        self.dataloader = dataloader
        self._skips = skips
        self._fallbacks = fallbacks or CacheFallbacks()

    def __iter__(self) -> Iterator[PatchBatch]:
        """The batches of one epoch. Raises RuntimeError, naming the first failure, when there are none
        because every shard failed (a wrong URL, a dataset that is gone)."""
        batches = 0
        for batch in self.dataloader:
            batches += 1
            yield batch
        if not batches and (first := self._skips.first_shard_error()):
            raise RuntimeError(
                f"no batch in this epoch: every shard failed ({self._skips.as_dict()['shard']} skipped); "
                f"check the shard URLs. The first failure: {first}"
            )

    def skipped(self) -> dict[str, int]:
        """Samples (or shards, under "shard") skipped so far by reason, over all workers."""
        return self._skips.as_dict()

    def cache_fallbacks(self) -> dict[str, int]:
        """HR patches cut from the original because the cache entry was missing or unreadable, over all workers."""
        return self._fallbacks.as_dict()


def rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """This process's (rank, world size): as given, else torch.distributed's, else RANK/WORLD_SIZE, else (0, 1).

    Raises ValueError for a rank outside 0..world_size-1.
    """
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    return rank, world_size


def make_loader(
    settings: LoaderSettings,
    sampler: SamplerSettings,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    epoch: int = 0,
    start_batch: int = 0,
) -> PatchLoader:
    """Batches of patches for one rank: an iterable of PatchBatch, infinite when `settings.resampled`.

    rank/world_size default to torch.distributed's (or RANK/WORLD_SIZE, else 0/1); ranks and
    workers read disjoint shards in one-pass mode. `epoch` offsets every random stream.
    `start_batch` resumes the stream exactly where a loader
    with the same settings stood after yielding that many batches: the skipped samples are only
    drawn (headers read, specs drawn), not decoded, so resuming is cheap. (A sample that fails
    only at decode time inside the skipped part shifts the stream by one sample.)
    Raises ValueError for missing shards, or for fewer shards than ranks × workers in one-pass
    mode (some would get no data).
    """
    rank, world_size = rank_and_world(rank, world_size)
    needs_hr = not (settings.lr and sampler.global_prob == 1)
    if needs_hr and not settings.hr:
        raise ValueError(
            "no HR shards: give them with --hr DATASET (hr= in Python, hr: in YAML), or LR shards only with "
            "--global-prob 1"
        )
    hr_urls = resolve_shards(settings.hr) if needs_hr else []
    lr_urls = resolve_shards(settings.lr) if settings.lr and sampler.global_prob > 0 else []
    readers = world_size * max(settings.workers, 1)
    if not settings.resampled:
        for name, urls in (("hr", hr_urls), ("lr", lr_urls)):
            if urls and len(urls) < readers:
                raise ValueError(
                    f"{name}: {len(urls)} shard(s) for {world_size} rank(s) × {max(settings.workers, 1)} worker(s): "
                    "some would get no data; use resampled=True, fewer workers, or more (smaller) shards"
                )
    skips, fallbacks = SkipCounts(), CacheFallbacks()
    stream = PatchStream(
        settings=settings,
        sampler=sampler,
        hr_urls=hr_urls,
        lr_urls=lr_urls,
        rank=rank,
        world_size=world_size,
        epoch=epoch,
        skips=skips,
        start_batch=start_batch,
        cache=resolve_cache(settings) if needs_hr else None,
        fallbacks=fallbacks,
    )
    return spawned_loader(stream, settings, skips, fallbacks)


def resolve_cache(settings: LoaderSettings) -> CacheIndex | None:
    """The cache the HR patches come from: `settings.cache` resolved ("auto": the HR dataset's, if it has one).

    Raises ValueError for a named cache that is not there.
    """
    if settings.cache == "none":
        return None
    if settings.cache != "auto":
        return open_cache(settings.cache)
    parts = [part.strip() for part in settings.hr.split("::") if part.strip()]
    return find_cache(parts[0]) if len(parts) == 1 and urlparse(parts[0]).scheme not in WDS_SCHEMES else None


def spawned_loader(
    stream: IterableDataset, settings: LoaderSettings, skips: SkipCounts, fallbacks: CacheFallbacks | None = None
) -> PatchLoader:
    """A DataLoader over a per-worker stream: spawned workers (never forked) with one libvips thread each."""
    workers = settings.workers
    dataloader = DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        multiprocessing_context="spawn" if workers > 0 else None,
        worker_init_fn=_init_worker if workers > 0 else None,
        persistent_workers=workers > 0,
        prefetch_factor=settings.prefetch if workers > 0 else None,
        pin_memory=settings.pin_memory,
    )
    return PatchLoader(dataloader, skips, fallbacks)
