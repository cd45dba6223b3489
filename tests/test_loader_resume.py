"""A loader started at batch k continues exactly where an uninterrupted loader stood after k batches."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
import webdataset as wds

from anyres_data.sampling import SamplerSettings
from anyres_data.sampling.loader import LoaderSettings, make_loader
from tests.support.photos import encode, structured_image


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(1)
    for shard in range(3):
        with wds.TarWriter(str(out / f"r-{shard:06d}.tar")) as sink:
            for i in range(5):
                w, h = int(rng.integers(40, 120)), int(rng.integers(40, 120))
                key = f"r_{shard}_{i}"
                data = encode(structured_image(w, h, seed=shard * 7 + i), "JPEG", quality=90)
                sink.write({"__key__": key, "jpg": data, "json": json.dumps({"key": key}).encode()})
    return str(out)


@pytest.mark.parametrize(
    ("workers", "mixing", "per_decode"), [(0, "batch", 1), (0, "element", 1), (2, "batch", 1), (0, "batch", 3)]
)
def test_start_batch_resumes_the_stream_exactly(shards, workers, mixing, per_decode):
    settings = LoaderSettings(
        hr=shards, batch_size=3, workers=workers, seed=5, shuffle_buffer=6, patches_per_decode=per_decode
    )
    sampler = SamplerSettings(p=32, global_prob=0.3, global_mixing=mixing, scale_max=1.0)
    full = list(itertools.islice(make_loader(settings, sampler, rank=0, world_size=1), 7))
    resumed = list(itertools.islice(make_loader(settings, sampler, rank=0, world_size=1, start_batch=4), 3))
    for a, b in zip(full[4:], resumed, strict=True):
        assert a.keys == b.keys
        assert torch.equal(a.specs, b.specs)
        assert torch.equal(a.images, b.images)
    # and the stream really moves: the resumed batches are not the first ones again
    assert resumed[0].keys != full[0].keys or not torch.equal(resumed[0].specs, full[0].specs)
