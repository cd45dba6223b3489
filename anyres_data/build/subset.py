"""Subsets of a source: a fixed number of its candidates, chosen by a seeded hash of their keys.

A recipe often needs "5,000 of these 70,000 images", and then "1,000 others": every candidate gets
a rank from a hash of (seed, key), and a subset is the candidates whose rank is in
[skip, skip + count). The choice depends only on the keys and the seed — not on the order or the
other candidates' presence — so it is the same in every run, a resumed build sees the same
candidates, and subsets with the same seed and non-overlapping [skip, skip + count) ranges are
disjoint. Candidates outside the subset are not proposed at all (as with `--max-photos`): they are
not rejections.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from anyres_data.candidate import Candidate
from anyres_data.settings import setting


@dataclass(frozen=True)
class SubsetSettings:
    """Which of the source's candidates the build proposes."""

    count: int | None = setting(None, "propose only this many candidates, chosen by a seeded hash of their keys")
    skip: int = setting(0, "leave out the first SKIP candidates of that hash order (disjoint subsets, same seed)")
    seed: int = setting(0, "seed of the hash order")


def key_uniform(key: str, *, seed: int, salt: str) -> float:
    """A number uniform in [0, 1) that depends only on (salt, seed, key): the same in every run and process."""
    digest = hashlib.blake2b(f"{salt}\0{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") * 2.0**-64


def subset_candidates(candidates: Iterable[Candidate], settings: SubsetSettings) -> Iterator[Candidate]:
    """The candidates whose hash rank is in [skip, skip + count), in the source's order.

    With `count` None every candidate passes through, streamed. Otherwise the whole source is read
    first, holding at most skip + count candidates at a time. Raises ValueError for negative
    counts (at once).
    """
    if settings.count is None:
        if settings.skip:
            raise ValueError("--subset-skip needs --subset-count")
        return iter(candidates)
    if settings.count < 0 or settings.skip < 0:
        raise ValueError(f"--subset-count and --subset-skip must be ≥ 0, got {settings.count} and {settings.skip}")
    return _subset(candidates, settings)


def _subset(candidates: Iterable[Candidate], settings: SubsetSettings) -> Iterator[Candidate]:
    keep = settings.skip + settings.count
    lowest: list[tuple[float, int, int, Candidate]] = []  # max-heap of the `keep` lowest ranks: (-rank, -index, ...)
    for index, candidate in enumerate(candidates):
        rank = key_uniform(candidate.key, seed=settings.seed, salt="subset")
        item = (-rank, -index, index, candidate)
        if len(lowest) < keep:
            heapq.heappush(lowest, item)
        elif keep and item > lowest[0]:
            heapq.heapreplace(lowest, item)
    ranked = sorted(lowest, reverse=True)  # lowest rank first
    chosen = sorted(ranked[settings.skip :], key=lambda item: item[2])
    for *_, candidate in chosen:
        yield candidate
