"""The loader against bad shards and bad samples: it refuses what the build refuses, and stops when nothing works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import webdataset as wds

from anyres_data.sampling import SamplerSettings
from anyres_data.sampling.loader import MAX_SHARDS_WITHOUT_SAMPLE, LoaderSettings, make_loader
from tests.support.corpus import header_bomb_jpeg, header_bomb_png
from tests.support.http_server import ImageServer
from tests.support.photos import encode, structured_image

P = 32


def write_shard(path: Path, samples: dict[str, bytes]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(path)) as sink:
        for key, data in samples.items():
            ext = "png" if data.startswith(b"\x89PNG") else "jpg"
            sink.write({"__key__": key, ext: data, "json": json.dumps({"key": key}).encode()})
    return str(path)


def zeroed_second_half(data: bytes) -> bytes:
    """A JPEG whose header is intact and whose second half is zeros (as a disk or transfer error leaves it)."""
    half = len(data) // 2
    return data[:half] + bytes(len(data) - half)


def test_samples_the_build_would_refuse_are_skipped_and_counted(tmp_path):
    good = {f"good_{i}": encode(structured_image(200, 160, seed=i), "JPEG", quality=90) for i in range(4)}
    zeroed = {
        f"zeroed_{i}": zeroed_second_half(encode(structured_image(400, 300, seed=10 + i), "JPEG")) for i in range(6)
    }
    bombs = {"jpeg_bomb": header_bomb_jpeg(65_000, 65_000)}  # too many pixels, from the header
    bombs["png_bomb"] = header_bomb_png(19_000, 19_000, bit_depth=16, colour_type=6, interlace=1)  # too large to decode
    shard = write_shard(tmp_path / "x-000000.tar", good | zeroed | bombs)
    settings = LoaderSettings(hr=shard, batch_size=2, workers=0, resampled=False, shuffle_buffer=0)
    loader = make_loader(settings, SamplerSettings(p=P, global_prob=0.0))
    seen = [key for batch in loader for key in batch.keys]
    assert sorted(seen) == sorted(good)  # never a patch of zeros, never a 65,000 x 65,000 "image"
    skipped = loader.skipped()
    assert skipped["unreadable"] == len(zeroed) and skipped["too_large"] == len(bombs)


def test_a_loader_whose_every_shard_fails_stops_with_the_first_error_and_url(tmp_path):
    with ImageServer() as server:  # no routes: every shard is a 404
        urls = server.url("/shards/demo-{000000..000005}.tar")
        one_pass = LoaderSettings(hr=urls, batch_size=2, workers=0, resampled=False)
        with pytest.raises(RuntimeError, match=r"every shard failed .*demo-00000\d\.tar"):
            list(make_loader(one_pass, SamplerSettings(p=P)))
        forever = LoaderSettings(hr=urls, batch_size=2, workers=0, resampled=True)
        with pytest.raises(RuntimeError, match=rf"{MAX_SHARDS_WITHOUT_SAMPLE} shards failed and no sample has arrived"):
            next(iter(make_loader(forever, SamplerSettings(p=P))))
        # a bad shard among good ones is skipped, as before
        good = write_shard(tmp_path / "y-000000.tar", {"a": encode(structured_image(200, 160, seed=1), "JPEG")})
        mixed = LoaderSettings(hr=f"{good}::{server.url('/shards/gone.tar')}", batch_size=1, workers=0, resampled=False)
        loader = make_loader(mixed, SamplerSettings(p=P))
        assert [key for batch in loader for key in batch.keys] == ["a"] and loader.skipped()["shard"] >= 1
