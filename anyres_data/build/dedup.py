"""Duplicates: exact (same sha256) and near (perceptual hashes a few bits apart), keeping the larger copy.

The perceptual hash is the classic 64-bit DCT pHash (as in `imagehash.phash`): the 8 x 8 lowest
frequencies of the 32 x 32 luminance image's 2-D DCT, one bit per coefficient above their median.
Re-encoding at another quality or resizing moves it by a few bits at most; different photos land
about 32 bits apart.

`find_duplicates` ranks images (most pixels first, then most bytes, then candidate order) and keeps
greedily: an image is dropped when a better-ranked image was kept that is identical (sha256) or within
`max_distance` bits. Pairs within the distance are found by multi-index hashing: split the hash into
`max_distance + 1` bands; two hashes within the distance agree exactly on at least one band
(pigeonhole), so only hashes sharing a band value are compared. That keeps it vectorised and
near-linear in the number of images (well past a million), instead of quadratic.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import scipy.fft

HASH_BITS = 64


def phash(grey: np.ndarray) -> int:
    """64-bit perceptual hash of a (32, 32) luminance image (values in [0, 255]); the first bit is the highest."""
    assert grey.shape == (32, 32), grey.shape
    low = scipy.fft.dctn(grey.astype(np.float64), type=2, norm="ortho")[:8, :8]
    bits = (low > np.median(low)).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def phash_hex(value: int) -> str:
    return f"{value:016x}"


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def find_duplicates(images: pd.DataFrame, *, max_distance: int) -> pd.DataFrame:
    """The images to drop, each with the kept image it duplicates.

    `images` has columns key (unique), sha256, phash (16 hex digits), pixels, bytes and order (an
    integer that breaks remaining ties: candidate order). `max_distance` < 0 turns near-duplicate
    detection off. Returns columns key, reason ("duplicate" or "near_duplicate"), duplicate_of,
    distance (bits; 0 for exact duplicates), in ranking order.
    """
    ranked = images.sort_values(["pixels", "bytes", "order"], ascending=[False, False, True], kind="stable")
    ranked = ranked.reset_index(drop=True)
    keys = ranked["key"].to_numpy()
    first_of_sha = ranked.groupby("sha256", sort=False)["key"].transform("first").to_numpy()
    exact = first_of_sha != keys
    drops = [
        pd.DataFrame({"key": keys[exact], "reason": "duplicate", "duplicate_of": first_of_sha[exact], "distance": 0})
    ]

    if max_distance >= 0:
        rest = ranked[~exact].reset_index(drop=True)
        hashes = np.array([int(h, 16) for h in rest["phash"]], dtype=np.uint64)
        near, partner, distance = _greedy_near_duplicates(hashes, max_distance)
        rest_keys = rest["key"].to_numpy()
        drops.append(
            pd.DataFrame(
                {
                    "key": rest_keys[near],
                    "reason": "near_duplicate",
                    "duplicate_of": rest_keys[partner[near]],
                    "distance": distance[near],
                }
            )
        )
    out = pd.concat(drops, ignore_index=True)
    rank = pd.Series(np.arange(len(ranked)), index=keys)
    return out.iloc[np.argsort(rank[out["key"]].to_numpy(), kind="stable")].reset_index(drop=True)


def _greedy_near_duplicates(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For hashes in ranking order: (dropped mask, index of the kept partner, distance in bits)."""
    n = len(hashes)
    dropped = np.zeros(n, dtype=bool)
    partner = np.arange(n)
    distance = np.zeros(n, dtype=np.int64)
    if n == 0:
        return dropped, partner, distance
    # Identical hashes: work on distinct values, each represented by its best-ranked image.
    values, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    best = first[inverse]  # best-ranked image with the same hash, for every image
    # Distinct values in the ranking order of their best image.
    by_rank = np.argsort(first, kind="stable")
    values, first = values[by_rank], first[by_rank]
    value_of = np.empty(len(by_rank), dtype=np.int64)
    value_of[by_rank] = np.arange(len(by_rank))

    kept_value = np.ones(len(values), dtype=bool)
    value_partner = np.arange(len(values))
    value_distance = np.zeros(len(values), dtype=np.int64)
    if max_distance > 0 and len(values) > 1:
        a, b, d = near_pairs(values, max_distance)  # a < b: a ranks before b
        order = np.lexsort((a, b))  # by later value, then by its better-ranked neighbour
        a, b, d = a[order], b[order], d[order]
        starts = np.searchsorted(b, np.unique(b))
        for lo, hi in zip(starts, np.append(starts[1:], len(b)), strict=False):
            kept = kept_value[a[lo:hi]]  # neighbours ranked earlier, all decided already
            if kept.any():
                j = lo + int(np.argmax(kept))  # the best-ranked kept neighbour
                v = b[lo]
                kept_value[v], value_partner[v], value_distance[v] = False, a[j], d[j]

    # Back to images: the best image of a kept value stays, the other images of that value are exact
    # hash matches of it; every image of a dropped value goes to that value's kept partner.
    v = value_of[inverse]
    is_best = best == np.arange(n)
    dropped = ~(kept_value[v] & is_best)
    partner = np.where(kept_value[v], best, first[value_partner[v]])
    distance = np.where(kept_value[v], 0, value_distance[v])
    return dropped, partner, distance


def near_pairs(values: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs of distinct uint64 hashes within `max_distance` bits: indices (a < b) and distances.

    Multi-index hashing: with the hash cut into m bands, two hashes within t bits are within
    floor(t / m) bits on at least one band, so every hash looks up, band by band, the hashes whose
    band value lies within that radius of its own (a sorted array and searchsorted per flip pattern).
    m is chosen to make buckets small for this many hashes.
    """
    n = len(values)
    n_bands = _band_count(n, max_distance)
    radius = max_distance // n_bands
    edges = np.linspace(0, HASH_BITS, n_bands + 1).astype(int)
    index = np.arange(n)
    found = []
    for lo, hi in itertools.pairwise(edges):
        band = (values >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(band, kind="stable")
        buckets = _Buckets(band[order], hi - lo)
        for flip in _flips(hi - lo, radius):
            left, counts = buckets.find(band ^ np.uint64(flip))
            a = np.repeat(index, counts)
            within = np.arange(len(a)) - np.repeat(np.cumsum(counts) - counts, counts)
            b = order[np.repeat(left, counts) + within]
            a, b = a[a < b], b[a < b]
            d = np.bitwise_count(values[a] ^ values[b]).astype(np.int64)
            close = d <= max_distance
            found.append(np.stack([a[close], b[close], d[close]]))
    pairs = np.unique(np.concatenate(found, axis=1), axis=1) if found else np.zeros((3, 0), dtype=np.int64)
    return pairs[0], pairs[1], pairs[2]


class _Buckets:
    """Where each band value's run starts in a sorted band array, and how long it is.

    Up to 2**24 possible values a dense table answers a lookup with one gather; wider bands use
    binary search.
    """

    def __init__(self, sorted_band: np.ndarray, width: int) -> None:
        self.sorted_band = sorted_band
        self.dense = width <= 24
        if self.dense:
            self.counts = np.bincount(sorted_band.astype(np.int64), minlength=1 << width)
            self.starts = np.cumsum(self.counts) - self.counts

    def find(self, probe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.dense:
            probe = probe.astype(np.int64)
            return self.starts[probe], self.counts[probe]
        left = np.searchsorted(self.sorted_band, probe, side="left")
        return left, np.searchsorted(self.sorted_band, probe, side="right") - left


def _flips(width: int, radius: int) -> list[int]:
    """Every bit pattern of at most `radius` set bits among `width` bits."""
    return [
        sum(1 << bit for bit in bits) for r in range(radius + 1) for bits in itertools.combinations(range(width), r)
    ]


def _band_count(n: int, max_distance: int) -> int:
    """Bands that minimise probes x expected bucket size for `n` uniformly spread hashes."""

    def cost(m: int) -> float:
        width = HASH_BITS // m
        probes = sum(math.comb(width, r) for r in range(max_distance // m + 1))
        return m * probes * (1.0 + n / 2.0**width)

    return min(range(1, min(max_distance + 1, HASH_BITS) + 1), key=cost)
