import math

import numpy as np
import pytest

from anyres_data.sampling.draw import (
    SamplerSettings,
    Square,
    draw_spec,
    expected_patch_size,
    expected_scale,
    global_spec,
    worker_rng,
)
from anyres_data.settings import from_dict, to_dict
from anyres_data.spec import PatchSpec


def draws(n, *, width, height, settings, seed=0):
    rng = np.random.default_rng(seed)
    return [draw_spec(width=width, height=height, settings=settings, rng=rng) for _ in range(n)]


def test_default_draws_follow_the_paper_recipe():
    settings = SamplerSettings(p=64)
    out = draws(4000, width=900, height=600, settings=settings)
    patches = [d for d in out if not d.is_global]
    # global samples with probability 0.5 (binomial: 4 sigma ≈ 0.03)
    assert abs(1 - len(patches) / len(out) - 0.5) < 0.035
    for d in out:
        assert d.square.m == 600 and d.square.oy == 0 and 0 <= d.square.ox <= 300
        if d.is_global:
            assert d.spec == PatchSpec.global_(64)
        else:
            assert 128 <= d.spec.s <= 600 and d.spec.p == 64  # s ≥ 2p: the published runs' scale_max 0.5
            assert 0 <= d.spec.x0 <= d.spec.s - 64 and 0 <= d.spec.y0 <= d.spec.s - 64
    sizes = np.array([d.spec.s for d in patches])
    # uniform in size on [2p, m]: mean (2p + m) / 2, sd (m - 2p) / sqrt(12)
    assert abs(sizes.mean() - 364) < 4 * (472 / math.sqrt(12)) / math.sqrt(len(sizes))
    assert len({d.square.ox for d in out}) > 100  # random square offsets


@pytest.mark.parametrize("distribution", ["uniform", "log_uniform"])
def test_mean_size_matches_expected_patch_size(distribution):
    settings = SamplerSettings(p=32, size_distribution=distribution, global_prob=0.0)
    sizes = np.array([d.spec.s for d in draws(4000, width=2000, height=1500, settings=settings, seed=3)])
    expected = expected_patch_size(1500, settings)
    assert abs(sizes.mean() - expected) < 4 * sizes.std() / math.sqrt(len(sizes))
    if distribution == "log_uniform":
        logs = np.log(sizes)  # uniform in log-size: half the draws below the geometric mean
        assert abs(np.mean(logs < (math.log(settings.lowest_s) + math.log(1500)) / 2) - 0.5) < 0.04


def test_size_bounds_scale_max_s_max_and_fixed():
    zoomed_out = SamplerSettings(p=64, scale_max=0.5, global_prob=0.0)
    assert min(d.spec.s for d in draws(500, width=800, height=800, settings=zoomed_out)) >= 128
    down_to_p = SamplerSettings(p=64, scale_max=1.0, global_prob=0.0)
    assert min(d.spec.s for d in draws(500, width=800, height=800, settings=down_to_p)) < 100
    capped = SamplerSettings(p=64, s_max=200.0, global_prob=0.0)
    assert max(d.spec.s for d in draws(500, width=800, height=800, settings=capped)) <= 200
    fixed = SamplerSettings(p=64, size_distribution="fixed", fixed_s=300.0, global_prob=0.0)
    assert {d.spec.s for d in draws(20, width=800, height=800, settings=fixed)} == {300.0}
    # a square smaller than fixed_s gives its native size (never upsampled)
    assert {d.spec.s for d in draws(20, width=250, height=900, settings=fixed)} == {250.0}


def test_centre_crop_and_small_images():
    settings = SamplerSettings(p=64, crop="centre", global_prob=0.0)
    d = draws(1, width=501, height=300, settings=settings)[0]
    assert d.square == Square(100, 0, 300)
    with pytest.raises(ValueError, match="too small"):
        draws(1, width=63, height=300, settings=settings)
    # an image too small for patches still gives global samples
    g = global_spec(width=40, height=30, settings=settings, rng=np.random.default_rng(0))
    assert g.is_global and g.square == Square(5, 0, 30) and g.spec == PatchSpec.global_(64)


def test_draws_are_reproducible_per_worker_stream():
    settings = SamplerSettings(p=32)
    a = draws(50, width=700, height=500, settings=settings, seed=11)
    b = draws(50, width=700, height=500, settings=settings, seed=11)
    assert a == b

    def stream(**kw):
        rng = worker_rng(7, **kw)
        return [draw_spec(width=700, height=500, settings=settings, rng=rng) for _ in range(20)]

    base = stream(rank=0, worker=0, epoch=0)
    assert stream(rank=0, worker=0, epoch=0) == base
    for other in (dict(rank=1, worker=0, epoch=0), dict(rank=0, worker=1, epoch=0), dict(rank=0, worker=0, epoch=1)):
        assert stream(**other) != base


def test_expected_scale_mixes_global_and_patch_sizes():
    settings = SamplerSettings(p=256, scale_max=1.0)
    # every image 1024 wide: E[s] = 0.5 · 256 + 0.5 · (256 + 1024) / 2
    assert expected_scale(widths=[1024, 1536], heights=[1024, 1024], settings=settings) == pytest.approx(448)
    # images below p give no patches and do not count in the patch average
    assert expected_scale(widths=[1024, 100], heights=[1024, 100], settings=settings) == pytest.approx(448)
    assert expected_scale(widths=[100], heights=[100], settings=SamplerSettings(p=256, global_prob=1.0)) == 256
    with pytest.raises(ValueError, match="no image"):
        expected_scale(widths=[100], heights=[100], settings=settings)
    # the paper's setting (scale_max 0.5, the default): E[s | m] = (2p + m) / 2
    assert expected_patch_size(1300, SamplerSettings(p=256)) == pytest.approx((512 + 1300) / 2)


def test_settings_validate_and_round_trip():
    with pytest.raises(ValueError, match="not both"):
        SamplerSettings(s_min=512.0, scale_max=0.25)
    with pytest.raises(ValueError, match="fixed_s"):
        SamplerSettings(size_distribution="fixed")
    with pytest.raises(ValueError, match="upsampled"):
        SamplerSettings(p=256, s_min=128.0)
    with pytest.raises(ValueError, match="global_prob"):
        SamplerSettings(global_prob=1.5)
    settings = from_dict(SamplerSettings, {"p": "128", "size_distribution": "log_uniform", "crop": "centre"})
    assert settings == from_dict(SamplerSettings, to_dict(settings))
    with pytest.raises(ValueError, match="size_distribution"):
        from_dict(SamplerSettings, {"size_distribution": "gaussian"})
