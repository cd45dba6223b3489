"""FID, KID and their stats files; the Inception network's loading (random weights and a state_dict file)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.linalg
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from anyres_model.metrics.fid import FeatureAccumulator, fid, kid, load_feature_stats, save_feature_stats, stats_of
from anyres_model.metrics.inception import (
    INCEPTION_ENV,
    INCEPTION_FILE,
    INCEPTION_URL,
    find_inception_weights,
    load_inception,
)


class NotWeights:
    """A pickled object that a weights-only load must refuse."""


def gaussian(n: int, d: int, *, seed: int, shift: float = 0.0) -> np.ndarray:
    """n samples of one correlated Gaussian (the same for every seed), shifted by `shift`."""
    mix = np.random.default_rng(1234).normal(size=(d, d)) / np.sqrt(d)
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ mix + shift


def scipy_fid(a, b):
    """The usual formula (pytorch-fid, StyleGAN3): scipy's sqrtm of the product, real part."""
    root = scipy.linalg.sqrtm(a.sigma @ b.sigma)
    return np.sum((a.mu - b.mu) ** 2) + np.trace(a.sigma + b.sigma - 2 * np.real(root))


def test_fid_matches_scipy_sqrtm_formula():
    a, b = stats_of(gaussian(400, 12, seed=0)), stats_of(gaussian(300, 12, seed=1, shift=0.3))
    assert fid(a, b) == pytest.approx(scipy_fid(a, b), rel=1e-8)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-9)
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-8)


def test_fid_with_fewer_features_than_dimensions():
    """n ≤ D with every feature kept: the cross-Gram path; with a partial sample: the eigendecomposition path."""
    a, b = stats_of(gaussian(9, 12, seed=2)), stats_of(gaussian(7, 12, seed=3, shift=0.2))
    partial = dataclasses.replace(a, sample=a.sample[:5])
    expected = scipy_fid(a, b)
    assert fid(a, b) == pytest.approx(expected, rel=1e-6)
    assert fid(partial, b) == pytest.approx(expected, rel=1e-6)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)  # the sample is float32 (Inception's own precision)


def test_accumulator_streams_like_numpy_and_samples_uniformly():
    x = gaussian(250, 6, seed=2)
    acc = FeatureAccumulator(6, kid_max=100, seed=0)
    for part in np.array_split(x, 7):
        acc.add(torch.from_numpy(part))
    stats = acc.stats()
    assert stats.n == 250
    np.testing.assert_allclose(stats.mu, x.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(x, rowvar=False), atol=1e-12)
    assert stats.sample.shape == (100, 6)
    rows = {tuple(r) for r in x.astype(np.float32)}
    assert all(tuple(r) in rows for r in stats.sample)  # real rows, no duplicates
    assert len({tuple(r) for r in stats.sample}) == 100
    small = stats_of(x[:10], kid_max=100)
    np.testing.assert_array_equal(small.sample, x[:10].astype(np.float32))
    with pytest.raises(ValueError, match="at least 2"):
        stats_of(x[:1])
    with pytest.raises(ValueError, match="shape"):
        acc.add(np.zeros((2, 5)))


def test_kid_is_unbiased_mmd_with_cubic_kernel():
    a, b = gaussian(30, 5, seed=3), gaussian(30, 5, seed=4, shift=0.5)

    def k(x, y):
        return (x @ y / 5 + 1) ** 3

    m = 30
    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / (m * m)
    # with subsets as large as the sets, every subset is a permutation of all features: same MMD² each time
    result = kid(a, b, subsets=3, subset_size=1000, seed=0)
    assert result.subset_size == 30
    assert result.mean == pytest.approx(xx + yy - 2 * xy, rel=1e-9)
    assert result.std == pytest.approx(0.0, abs=1e-9)
    same = kid(gaussian(400, 5, seed=5), gaussian(400, 5, seed=6), subsets=20, subset_size=100)
    apart = kid(gaussian(400, 5, seed=5), gaussian(400, 5, seed=6, shift=0.5), subsets=20, subset_size=100)
    assert abs(same.mean) < 3 * same.std / np.sqrt(20) + 1e-3
    assert apart.mean > 10 * abs(same.mean)


def test_stats_round_trip_without_pickle(tmp_path):
    stats = stats_of(gaussian(50, 4, seed=7), kid_max=20)
    keys = np.array(["a_1", "bb-2", "c"])
    path = tmp_path / "stats.npz"
    save_feature_stats(path, stats, spec_keys=keys, spec_specs=np.ones((3, 4)))
    loaded, extra = load_feature_stats(path)
    assert loaded.n == 50
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    np.testing.assert_array_equal(loaded.sample, stats.sample)
    assert extra["spec_keys"].tolist() == ["a_1", "bb-2", "c"]
    with np.load(path, allow_pickle=False) as data:  # nothing in it needs pickle
        assert {k: data[k].dtype.hasobject for k in data.files} == dict.fromkeys(data.files, False)


@pytest.fixture(scope="module")
def random_inception():
    return load_inception("random")


@pytest.fixture(scope="module")
def images_and_features(random_inception):
    """Two small uint8 images of different sizes' worth of content and their random-Inception features."""
    images = (torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    return images, random_inception.features(images)


def test_random_inception_features(random_inception, images_and_features):
    _, feats = images_and_features
    assert feats.shape == (2, 2048) and feats.dtype == torch.float64
    assert (feats[0] - feats[1]).abs().max() > 1e-3 * feats.abs().max()  # image-dependent, not collapsed
    with pytest.raises(ValueError, match="uint8"):
        random_inception.features(torch.zeros(1, 3, 8, 8))


def test_weights_file_loads_with_the_right_architecture(tmp_path, random_inception, images_and_features, monkeypatch):
    images, feats = images_and_features
    path = tmp_path / INCEPTION_FILE
    torch.save(random_inception.model.state_dict(), path)
    loaded = load_inception(path)
    assert loaded.source == str(path) and len(loaded.sha256) == 64
    assert torch.equal(loaded.features(images), feats)  # same weights, same features: deterministic
    # torch-fidelity's own class accepts the same file (strict load): same keys and shapes as the real one
    theirs = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    (their_feats,) = theirs(images[:1])
    torch.testing.assert_close(their_feats.double(), feats[:1])
    monkeypatch.setenv(INCEPTION_ENV, str(path))
    assert find_inception_weights(None) == path


def test_weights_file_errors(tmp_path, random_inception, monkeypatch):
    state = random_inception.model.state_dict()
    wrong = dict(state)
    wrong["fc.weight"] = torch.zeros(10, 2048)
    del wrong["Mixed_7c.branch_pool.conv.weight"]
    wrong["extra.weight"] = torch.zeros(1)
    path = tmp_path / "wrong.pth"
    torch.save(wrong, path)
    with pytest.raises(ValueError, match=r"missing: Mixed_7c\.branch_pool\.conv\.weight") as err:
        load_inception(path)
    assert "unexpected: extra.weight" in str(err.value) and "fc.weight (10, 2048) (expected (1008, 2048))" in str(
        err.value
    )
    pickled = tmp_path / "code.pth"
    torch.save({"x": NotWeights()}, pickled)
    with pytest.raises(ValueError, match="weights-only"):
        load_inception(pickled)

    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(FileNotFoundError) as missing:
        load_inception(None)
    message = str(missing.value)
    assert INCEPTION_FILE in message and INCEPTION_URL in message
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in message
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth"):
        load_inception(tmp_path / "nowhere.pth")
