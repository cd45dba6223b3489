"""Perceptual hash and duplicate finding, checked against a direct (quadratic) computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from anyres_data.build.dedup import find_duplicates, hamming, near_pairs, phash
from anyres_data.probe import decode_thumbnail, read_header
from tests.support.photos import encode, structured_image


def image_hash(data: bytes) -> int:
    return phash(decode_thumbnail(data, read_header(data)))


def test_phash_is_stable_under_reencoding_and_resizing_and_apart_for_other_photos():
    photo = structured_image(640, 480, seed=1)
    reference = image_hash(encode(photo, "JPEG", quality=95))
    smaller = np.asarray(Image.fromarray(photo).resize((480, 360), Image.Resampling.LANCZOS))
    variants = [encode(photo, "JPEG", quality=50), encode(photo, "PNG"), encode(smaller, "WEBP", quality=80)]
    assert max(hamming(reference, image_hash(v)) for v in variants) <= 4
    others = [image_hash(encode(structured_image(640, 480, seed=s), "JPEG")) for s in range(2, 8)]
    assert min(hamming(reference, h) for h in others) > 12


def brute_force(images: pd.DataFrame, max_distance: int) -> dict[str, tuple[str, str, int]]:
    """Greedy keep in ranking order, comparing each image with every kept one."""
    ranked = images.sort_values(["pixels", "bytes", "order"], ascending=[False, False, True])
    kept: list[tuple[str, int]] = []
    by_sha: dict[str, str] = {}
    out = {}
    for row in ranked.itertuples():
        if row.sha256 in by_sha:
            out[row.key] = ("duplicate", by_sha[row.sha256], 0)
            continue
        by_sha[row.sha256] = row.key
        h = int(row.phash, 16)
        close = [(key, hamming(h, other)) for key, other in kept if hamming(h, other) <= max_distance]
        if max_distance >= 0 and close:
            out[row.key] = ("near_duplicate", *close[0])
            continue
        kept.append((row.key, h))
    return out


def random_images(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """n images whose hashes cluster around n/4 centres (0-6 bits off), with ties in size and shared bytes."""
    centres = rng.integers(0, 2**63, size=max(1, n // 4), dtype=np.uint64)
    hashes = []
    for _ in range(n):
        h = int(centres[rng.integers(len(centres))]) ^ (int(rng.integers(0, 2)) << 63)
        for _ in range(int(rng.integers(0, 7))):
            h ^= 1 << int(rng.integers(64))
        hashes.append(h)
    frame = pd.DataFrame(
        {
            "key": [f"k{i}" for i in range(n)],
            "sha256": [f"s{rng.integers(2 * n)}" for _ in range(n)],
            "phash": [f"{h:016x}" for h in hashes],
            "pixels": rng.integers(1, 4, n),
            "bytes": rng.integers(1, 3, n),
            "order": rng.permutation(n),
        }
    )
    # the same bytes are the same image: same hash, size and length
    first = frame.groupby("sha256")[["phash", "pixels", "bytes"]].transform("first")
    frame[["phash", "pixels", "bytes"]] = first
    return frame


@pytest.mark.parametrize("max_distance", [-1, 0, 1, 3, 4, 6, 9])
def test_find_duplicates_matches_the_greedy_definition(max_distance):
    rng = np.random.default_rng(max_distance + 10)
    for _ in range(6):
        images = random_images(rng, int(rng.integers(1, 300)))
        got = find_duplicates(images, max_distance=max_distance)
        assert {r.key: (r.reason, r.duplicate_of, r.distance) for r in got.itertuples()} == brute_force(
            images, max_distance
        )
        shuffled = find_duplicates(images.sample(frac=1.0, random_state=1), max_distance=max_distance)
        pd.testing.assert_frame_equal(got, shuffled)  # the input's row order does not matter


def test_the_larger_copy_is_kept_then_the_longer_file_then_the_earlier_candidate():
    h = "00ff00ff00ff00ff"
    near = f"{int(h, 16) ^ 0b101:016x}"
    images = pd.DataFrame(
        {
            "key": ["small", "large", "large-short", "tie-late", "tie-early"],
            "sha256": ["a", "b", "c", "d", "e"],
            "phash": [h, near, h, "f0f0f0f0f0f0f0f0", "f0f0f0f0f0f0f0f0"],
            "pixels": [100, 400, 400, 50, 50],
            "bytes": [10, 30, 20, 5, 5],
            "order": [0, 1, 2, 4, 3],
        }
    )
    got = find_duplicates(images, max_distance=4).set_index("key")
    assert sorted(got.index) == ["large-short", "small", "tie-late"]
    assert got.loc["large-short", "duplicate_of"] == "large" and got.loc["large-short", "distance"] == 2
    assert got.loc["tie-late", "duplicate_of"] == "tie-early" and got.loc["tie-late", "distance"] == 0


def test_near_pairs_finds_exactly_the_close_pairs():
    rng = np.random.default_rng(0)
    for n, t in [(1500, 2), (1500, 4), (800, 8), (300, 13)]:
        centres = rng.integers(0, 2**63, n // 3, dtype=np.uint64)
        values = centres[rng.integers(0, len(centres), n)]
        flips = rng.integers(0, 64, (n, 8)).astype(np.uint64)
        for column in range(int(rng.integers(1, 8))):
            values = values ^ (np.uint64(1) << flips[:, column])
        values = np.unique(values)
        a, b, d = near_pairs(values, t)
        dist = np.bitwise_count(values[:, None] ^ values[None, :])
        i, j = np.triu_indices(len(values), 1)
        close = dist[i, j] <= t
        assert set(zip(a.tolist(), b.tolist(), strict=True)) == set(
            zip(i[close].tolist(), j[close].tolist(), strict=True)
        )
        assert (d == dist[a, b]).all()


def test_many_images_are_deduplicated_in_vectorised_passes():
    rng = np.random.default_rng(1)
    n = 200_000
    hashes = rng.integers(0, 2**63, n, dtype=np.uint64)
    hashes[1::1000] = hashes[::1000][: len(hashes[1::1000])] ^ np.uint64(0b11)  # 200 planted near pairs
    images = pd.DataFrame(
        {
            "key": np.arange(n).astype(str),
            "sha256": np.arange(n).astype(str),
            "phash": [f"{h:016x}" for h in hashes],
            "pixels": 1,
            "bytes": 1,
            "order": np.arange(n),
        }
    )
    got = find_duplicates(images, max_distance=4)
    assert set(got["key"]) == {str(i) for i in range(1, n, 1000)}
