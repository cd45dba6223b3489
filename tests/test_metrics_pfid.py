"""pFID/pSWD inputs: the replayable spec list, real patches cut at it, fakes rendered at exactly those specs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import webdataset as wds
from PIL import Image

from anyres_data.sampling import SamplerSettings
from anyres_data.sampling.patches import cut_patch
from anyres_data.spec import PatchSpec, specs_to_tensor
from anyres_model.metrics import fakes, real_images
from anyres_model.metrics.patch_specs import SpecList, draw_spec_list, with_specs
from anyres_model.networks.generator import Generator
from anyres_model.networks.presets import preset
from tests.support.metrics_dataset import write_dataset

SIZES = [(96, 80), (64, 128), (40, 50), (200, 120), (128, 128), (150, 90)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("pfid-data"), SIZES, per_shard=2)


def test_spec_list_is_replayable_from_its_seed(dataset):
    manifest = real_images.read_manifest(str(dataset))
    settings = SamplerSettings(p=32, global_prob=0.25)
    a = draw_spec_list(manifest, n=40, settings=settings, seed=3)
    b = draw_spec_list(manifest.iloc[::-1], n=40, settings=settings, seed=3)  # row order does not matter
    for name in ("keys", "squares", "specs", "is_global"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = draw_spec_list(manifest, n=40, settings=settings, seed=4)
    assert not np.array_equal(a.specs, c.specs)
    # the training sampler's constraints: image ≥ p, p ≤ s ≤ m, window inside the s×s rendering
    sizes = manifest.set_index("key")
    for i in range(len(a)):
        drawn = a.drawn(i)
        w, h = sizes.loc[a.keys[i], ["width", "height"]]
        assert drawn.square.m == min(w, h)
        if drawn.is_global:
            assert drawn.spec == PatchSpec.global_(32)
        else:
            assert 32 <= drawn.spec.s <= drawn.square.m
            assert 0 <= drawn.spec.x0 <= drawn.spec.s - 32 and 0 <= drawn.spec.y0 <= drawn.spec.s - 32
    # every image is visited once per round of the seeded permutation
    counts = pd.Series(a.keys).value_counts()
    assert counts.max() - counts.min() <= 1 and len(counts) == len(SIZES)
    round_trip = SpecList.from_arrays({k: np.asarray(v) for k, v in a.arrays().items()})
    np.testing.assert_array_equal(round_trip.specs, a.specs)
    assert round_trip.keys.tolist() == a.keys.tolist() and round_trip.seed == 3


def test_images_smaller_than_p_are_left_out(dataset):
    manifest = real_images.read_manifest(str(dataset))
    specs = draw_spec_list(manifest, n=30, settings=SamplerSettings(p=64, global_prob=0.0), seed=0)
    assert set(specs.keys) == {"img_0000", "img_0001", "img_0003", "img_0004", "img_0005"}  # not the 40×50 one
    with pytest.raises(ValueError, match="shorter side"):
        draw_spec_list(manifest, n=3, settings=SamplerSettings(p=256, global_prob=0.0), seed=0)


def test_real_patches_are_cut_at_the_listed_specs(dataset):
    manifest = real_images.read_manifest(str(dataset))
    specs = draw_spec_list(manifest, n=9, settings=SamplerSettings(p=32, global_prob=0.0), seed=1)
    got = {}
    for batch in real_images.patches(str(dataset), specs, batch=4):
        assert batch.pixels.shape[1:] == (3, 32, 32) and batch.pixels.dtype == torch.uint8
        for i, pixels, spec in zip(batch.index, batch.pixels, batch.specs, strict=True):
            got[int(i)] = (pixels, spec)
    assert sorted(got) == list(range(9))
    data = {s.key: s.data for s in real_images.iter_samples(str(dataset))}
    for i in (0, 5, 8):
        direct = cut_patch(data[specs.keys[i]], specs.drawn(i))
        np.testing.assert_array_equal(got[i][0].permute(1, 2, 0).numpy(), direct.pixels)
        assert got[i][1] == direct.spec
        # the realised spec is the drawn one to within a fraction of a pixel
        np.testing.assert_allclose(direct.spec.as_tuple(), specs.specs[i], atol=0.5)
    realised = with_specs(specs, [got[i][1] for i in range(9)])
    assert realised.keys.tolist() == specs.keys.tolist()


def test_an_unreadable_image_is_named(tmp_path):
    data = write_dataset(tmp_path / "broken", [(64, 64), (80, 64)], per_shard=2)
    shard = next((data / "shards").iterdir())
    samples = list(real_images.iter_samples(str(data)))
    with wds.TarWriter(str(shard)) as sink:  # rewrite the shard with the second image truncated
        sink.write({"__key__": samples[0].key, "jpg": samples[0].data})
        sink.write({"__key__": samples[1].key, "jpg": samples[1].data[:200]})
    specs = draw_spec_list(real_images.read_manifest(str(data)), n=2, settings=SamplerSettings(p=32), seed=0)
    with pytest.raises(ValueError, match=f"cannot read sample {samples[1].key}"):
        list(real_images.patches(str(data), specs, batch=2))


def test_lanczos_baseline_is_the_upsampled_window():
    """Resampling the window with a box equals Lanczos-upsampling the whole image to s and cropping it."""
    base = (torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    spec = PatchSpec(128.0, 40.0, 72.0, 32)  # an integer window of the 128×128 upsampling
    window = fakes.lanczos_windows(base, specs_to_tensor([spec]))
    up = Image.fromarray(base[0].permute(1, 2, 0).numpy()).resize((128, 128), Image.Resampling.LANCZOS)
    crop = np.asarray(up)[72:104, 40:72]
    assert window.shape == (1, 3, 32, 32)
    diff = np.abs(window[0].permute(1, 2, 0).numpy().astype(int) - crop.astype(int))
    assert diff.max() <= 1  # the same kernel at the same positions; rounding aside
    glob = fakes.lanczos_windows(base, specs_to_tensor([PatchSpec.global_(32)]))
    assert torch.equal(glob, base)


def test_latents_are_per_index():
    a = fakes.latents(7, [0, 1, 2, 3], 16)
    b = fakes.latents(7, [2, 3], 16)
    assert a.shape == (4, 16) and a.dtype == torch.float32
    assert torch.equal(a[2:], b)
    assert not torch.equal(fakes.latents(8, [0], 16), a[:1])
    x = torch.tensor([[-1.0, 0.0, 1.0, 2.0]]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    assert fakes.quantize(x)[0, 0, 0].tolist() == [0, 128, 255, 255]


@pytest.fixture(scope="module")
def tiny_generator():
    torch.manual_seed(0)
    return Generator(preset("tiny")[0]).eval()


def test_fake_patches_are_rendered_at_the_listed_specs(dataset, tiny_generator):
    G = tiny_generator
    manifest = real_images.read_manifest(str(dataset))
    drawn = draw_spec_list(manifest, n=3, settings=SamplerSettings(p=32, global_prob=0.0), seed=2)
    realised = np.zeros_like(drawn.specs)
    for batch in real_images.patches(str(dataset), drawn, batch=3):
        realised[batch.index] = [s.as_tuple() for s in batch.specs]
    specs = with_specs(drawn, realised)
    stream = list(fakes.patch_stream(G, specs.specs, seed=11, batch=2, model=True, baseline=True))
    assert [f.index.tolist() for f in stream] == [[0, 1], [2]]
    i = 2
    fake = stream[1].model[0]
    z = fakes.latents(11, [i], G.cfg.z_dim)
    with torch.no_grad():
        direct = G(z, [specs.drawn(i).spec])  # entry i alone, from the list: its own z, its realised spec
        same = (fake.int() - fakes.quantize(direct)[0].int()).abs()
        moved = specs.drawn(i).spec
        shifted = G(z, [PatchSpec(moved.s, moved.x0 + 3, moved.y0, moved.p)])
    moved_diff = (fake.int() - fakes.quantize(shifted)[0].int()).abs()
    assert same.max() <= 1 and same.float().mean() < 0.01  # batched vs alone: equal up to float rounding
    assert moved_diff.float().mean() > 0.5  # while a 3-px shift changes the patch
    # the baseline is G's own global image, resampled at the same window
    with torch.no_grad():
        base = fakes.global_images(G, z)
    expected = fakes.lanczos_windows(base, torch.from_numpy(specs.specs[i : i + 1]))
    assert torch.equal(stream[1].baseline[0:1], expected)
