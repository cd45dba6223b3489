"""The shard loader: rank/worker splitting, resampling, LR/HR mixing, URLs, and skipping bad data."""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import threading
from collections import Counter
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch
import webdataset as wds

from anyres_data.dataset.shards import resolve_shards
from anyres_data.sampling import SamplerSettings
from anyres_data.sampling.loader import LoaderSettings, PatchBatch, make_loader
from anyres_data.spec import PatchSpec
from tests.support.photos import encode, structured_image

P = 32


def write_shard(path: Path, samples: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(path)) as sink:
        for sample in samples:
            sink.write(sample)


def photo_sample(key: str, *, width: int, height: int, seed: int, fmt: str = "JPEG") -> dict:
    data = encode(structured_image(width, height, seed=seed), fmt, quality=90)
    ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
    meta = {"key": key, "width": width, "height": height, "format": ext}
    return {"__key__": key, ext: data, "json": json.dumps(meta).encode()}


@pytest.fixture(scope="module")
def hr_dir(tmp_path_factory) -> tuple[Path, list[str]]:
    """8 shards × 4 good samples, mixed formats and sizes; shard 5 also holds a corrupt and an image-less sample."""
    out = tmp_path_factory.mktemp("hr")
    rng = np.random.default_rng(0)
    keys = []
    for shard in range(8):
        samples = []
        for i in range(4):
            key = f"hr_{shard}_{i}"
            fmt = ("JPEG", "JPEG", "PNG", "WEBP")[i]
            size = dict(width=int(rng.integers(160, 360)), height=int(rng.integers(160, 360)))
            samples.append(photo_sample(key, seed=shard * 10 + i, fmt=fmt, **size))
            keys.append(key)
        if shard == 5:
            samples.append({"__key__": "corrupt_1", "jpg": b"\xff\xd8\xff\xe0 not really a jpeg", "json": b"{}"})
            samples.append({"__key__": "no_image_1", "json": b"{}", "txt": b"caption only"})
        write_shard(out / "shards" / f"test-{shard:06d}.tar", samples)
    return out, keys


@pytest.fixture(scope="module")
def lr_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lr")
    for shard in range(2):
        samples = [photo_sample(f"lr_{shard}_{i}", width=64, height=64, seed=100 + i) for i in range(4)]
        write_shard(out / "shards" / f"lr-{shard:06d}.tar", samples)
    return out


def check_batch(batch: PatchBatch, *, size: int | None = None) -> None:
    assert isinstance(batch, PatchBatch)
    b = len(batch.keys)
    assert size is None or b == size
    assert batch.images.shape == (b, 3, P, P) and batch.images.dtype == torch.uint8
    assert batch.specs.shape == (b, 4) and batch.specs.dtype == torch.float64
    assert bool((batch.specs[:, 3] == P).all()) and bool((batch.specs[:, 0] >= P).all())


def test_two_ranks_two_spawn_workers_see_every_sample_once(hr_dir):
    root, keys = hr_dir
    settings = LoaderSettings(hr=str(root), batch_size=5, workers=2, resampled=False, shuffle_buffer=8)
    seen: dict[int, list[str]] = {}
    skipped = Counter()
    for rank in range(2):
        loader = make_loader(settings, SamplerSettings(p=P), rank=rank, world_size=2)
        seen[rank] = []
        for batch in loader:
            check_batch(batch)
            seen[rank] += batch.keys
            is_global = batch.specs[:, 0] == P
            # global samples are the whole square: offsets within a fraction of a pixel of 0
            assert bool((batch.specs[is_global, 1:3].abs() < 0.5).all())
        skipped.update(loader.skipped())
    assert not set(seen[0]) & set(seen[1])
    assert Counter(seen[0] + seen[1]) == Counter(keys)  # every sample exactly once
    assert skipped["unreadable"] == 1 and skipped["no_image"] == 1 and skipped["shard"] == 0


def test_resampled_mode_is_infinite_and_reproducible(hr_dir):
    root, keys = hr_dir
    hr = f"{root}/shards/test-{{000000..000001}}.tar"
    sampler = SamplerSettings(p=P)

    def take(seed: int, n: int = 12) -> list[PatchBatch]:
        loader = make_loader(LoaderSettings(hr=hr, batch_size=4, workers=0, seed=seed, shuffle_buffer=4), sampler)
        return list(itertools.islice(loader, n))

    first, again, other = take(1), take(1), take(2)
    assert len(first) == 12  # 48 samples drawn from 8: resampled, not one pass
    for batch in first:
        check_batch(batch, size=4)
    assert set(itertools.chain.from_iterable(b.keys for b in first)) <= set(keys[:8])
    assert all(a.keys == b.keys and torch.equal(a.specs, b.specs) for a, b in zip(first, again, strict=True))
    assert [b.keys for b in first] != [b.keys for b in other]
    # epoch_samples makes the resampled stream finite
    bounded = LoaderSettings(hr=hr, batch_size=4, workers=0, epoch_samples=20)
    assert len(list(make_loader(bounded, sampler))) == 5


@pytest.mark.parametrize("mixing", ["batch", "element"])
def test_lr_global_samples_mixed_with_hr_patches(hr_dir, lr_dir, mixing):
    root, _ = hr_dir
    settings = LoaderSettings(hr=f"{root}/shards/test-000000.tar", lr=str(lr_dir), batch_size=4, workers=0)
    sampler = SamplerSettings(p=P, global_prob=0.5, global_mixing=mixing)
    batches = list(itertools.islice(make_loader(settings, sampler), 20))
    from_lr = hr_patches = mixed_batches = 0
    for batch in batches:
        check_batch(batch, size=4)
        lr_keys = sum(key.startswith("lr_") for key in batch.keys)
        mixed_batches += 0 < lr_keys < len(batch.keys)
        for key, spec in zip(batch.keys, batch.specs, strict=True):
            if key.startswith("lr_"):
                from_lr += 1
                assert spec.tolist() == pytest.approx(list(PatchSpec.global_(P).as_tuple()), abs=0.5)
            else:
                hr_patches += 1
                assert spec[0] >= 2 * P - 1e-9  # HR samples are patches (s ≥ 2p by default) when LR gives the globals
    assert 0.15 < from_lr / (from_lr + hr_patches) < 0.85
    if mixing == "batch":
        assert mixed_batches == 0  # a batch is wholly global or wholly HR patches, as in the reference
    else:
        assert mixed_batches > 0
    # phase 1: global samples only, from the LR set alone
    phase1 = LoaderSettings(lr=str(lr_dir), batch_size=4, workers=0)
    for batch in itertools.islice(make_loader(phase1, SamplerSettings(p=P, global_prob=1.0)), 3):
        assert all(key.startswith("lr_") for key in batch.keys)


def test_batch_mixing_without_an_lr_set_takes_global_batches_from_hr_squares(hr_dir):
    root, _ = hr_dir
    settings = LoaderSettings(hr=str(root), batch_size=4, workers=0)
    batches = list(itertools.islice(make_loader(settings, SamplerSettings(p=P, global_prob=0.5)), 16))
    kinds = [set((batch.specs[:, 0] == P).tolist()) for batch in batches]
    assert all(len(kind) == 1 for kind in kinds)  # never a mix within one batch
    assert {True} in kinds and {False} in kinds


def window(image, spec: PatchSpec) -> np.ndarray:
    """The spec's p×p window of a (large) PIL image of the whole unit square, Lanczos-resampled."""
    from PIL import Image

    return np.asarray(image.resize((spec.p, spec.p), Image.Resampling.LANCZOS, box=spec.box(image.width)), np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of 8-bit images, 4-pixel border excluded."""
    return float(10 * np.log10(255**2 / np.mean((a - b)[4:-4, 4:-4] ** 2)))


@pytest.mark.parametrize("per_decode", [1, 3])
def test_training_patches_show_the_ground_truth_at_their_specs(tmp_path, per_decode):
    """End to end (shards → loader → sampler → batch): each patch is the scene at its spec.

    Demo landscapes exist at every resolution, so the truth of a spec is a large render cut with
    that spec's box; a spec shifted by 1.5 output pixels must not match.
    """
    from PIL import Image

    from anyres_data.sources.demo import demo_bytes, render_demo
    from anyres_data.spec import tensor_to_specs

    sides = {3: 96, 4: 160, 5: 256}
    samples = [{"__key__": f"d{seed}", "png": demo_bytes(f"demo://{seed}/{n}x{n}.png")} for seed, n in sides.items()]
    write_shard(tmp_path / "shards" / "demo-000000.tar", samples)
    settings = LoaderSettings(
        hr=str(tmp_path), batch_size=3, workers=0, seed=1, shuffle_buffer=0, patches_per_decode=per_decode
    )
    checked = 0
    for batch in itertools.islice(make_loader(settings, SamplerSettings(p=P, global_prob=0.3)), 4):
        for image, spec, key in zip(batch.images, tensor_to_specs(batch.specs), batch.keys, strict=True):
            big = 4 * sides[int(key[1:])]
            truth = Image.fromarray(render_demo(int(key[1:]), big, big))
            got = image.permute(1, 2, 0).numpy().astype(np.float64)
            right = psnr(got, window(truth, spec))
            assert right > 30, (key, spec)
            if spec.s >= spec.p + 1.5:  # a patch (a global sample fills the image: no room to shift)
                dx = 1.5 if spec.x0 + 1.5 <= spec.s - spec.p else -1.5
                shifted = PatchSpec(spec.s, spec.x0 + dx, spec.y0, spec.p)
                assert psnr(got, window(truth, shifted)) < right - 6, (key, spec)
            checked += 1
    assert checked == 12


def test_reads_img2dataset_shards_and_ignores_their_json(tmp_path):
    samples = []
    for i in range(3):
        data = encode(structured_image(200 + 40 * i, 120, seed=i), "JPEG", quality=90)
        meta = {"url": f"http://example.com/{i}.jpg", "status": "success", "width": 9999, "height": 9999}
        samples.append({"__key__": f"{i:09d}", "jpg": data, "json": json.dumps(meta).encode(), "txt": b"a caption"})
    write_shard(tmp_path / "00000.tar", samples)
    settings = LoaderSettings(hr=str(tmp_path), batch_size=3, workers=0, resampled=False)
    (batch,) = list(make_loader(settings, SamplerSettings(p=P, global_prob=0.0)))
    check_batch(batch, size=3)
    assert sorted(batch.keys) == ["000000000", "000000001", "000000002"]
    assert bool((batch.specs[:, 0] <= 120).all())  # sizes from the header (120 high), not the JSON's 9999


def test_truncated_shard_is_counted_and_training_goes_on(tmp_path, hr_dir):
    root, keys = hr_dir
    good = (root / "shards" / "test-000000.tar").read_bytes()
    (tmp_path / "a-000000.tar").write_bytes(good)
    (tmp_path / "a-000001.tar").write_bytes(good[: len(good) // 2])
    settings = LoaderSettings(hr=str(tmp_path), batch_size=2, workers=0, resampled=False, shuffle_buffer=0)
    loader = make_loader(settings, SamplerSettings(p=P))
    seen = [key for batch in loader for key in batch.keys]
    assert set(keys[:4]) <= set(seen)
    assert loader.skipped()["shard"] >= 1


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_http_and_fsspec_urls(hr_dir):
    root, keys = hr_dir
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/shards/test-{{000000..000001}}.tar"
        settings = LoaderSettings(hr=url, batch_size=4, workers=0, resampled=False)
        seen = [key for batch in make_loader(settings, SamplerSettings(p=P)) for key in batch.keys]
        assert sorted(seen) == sorted(keys[:8])
    finally:
        server.shutdown()
        thread.join()
    memory = fsspec.filesystem("memory")
    for shard in ("test-000002.tar", "test-000003.tar"):
        memory.pipe(f"/anyres-loader-test/shards/{shard}", (root / "shards" / shard).read_bytes())
    try:
        settings = LoaderSettings(hr="memory://anyres-loader-test", batch_size=4, workers=0, resampled=False)
        seen = [key for batch in make_loader(settings, SamplerSettings(p=P)) for key in batch.keys]
        assert sorted(seen) == sorted(keys[8:16])
    finally:
        memory.rm("/anyres-loader-test", recursive=True)


def test_resolve_shards_forms(hr_dir, tmp_path):
    root, _ = hr_dir
    shards = sorted(str(p) for p in (root / "shards").glob("*.tar"))
    assert resolve_shards(str(root)) == shards
    assert resolve_shards(str(root / "shards")) == shards
    assert resolve_shards(f"{root}/shards/test-{{000001..000002}}.tar") == shards[1:3]
    assert resolve_shards(f"{root}/shards/test-00000[67].tar") == shards[6:8]
    assert resolve_shards(f"{shards[0]}::{shards[3]}") == [shards[0], shards[3]]
    assert resolve_shards("pipe:cat x.tar") == ["pipe:cat x.tar"]
    with pytest.raises(ValueError, match="no shards found"):
        resolve_shards(str(tmp_path))
    with pytest.raises(ValueError, match="not found"):
        resolve_shards(f"{root}/shards/test-{{000007..000009}}.tar")


def test_guards_and_settings_errors(hr_dir):
    root, _ = hr_dir
    two = f"{root}/shards/test-{{000000..000001}}.tar"
    with pytest.raises(ValueError, match="some would get no data"):
        make_loader(LoaderSettings(hr=two, workers=2, resampled=False), SamplerSettings(p=P), rank=0, world_size=2)
    with pytest.raises(ValueError, match="no HR shards: give them with --hr"):
        make_loader(LoaderSettings(), SamplerSettings(p=P))
    with pytest.raises(ValueError, match="rank"):
        make_loader(LoaderSettings(hr=two), SamplerSettings(p=P), rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        LoaderSettings(batch_size=0)
