"""The training cache against the recipe it replaces: Pillow's Lanczos resize of the fully decoded original.

Entries are real tiled pyramidal TIFFs written by libvips; patches read from them must pass the
sampler's exactness bar (tests/test_patches.py) at the spec they report, and a misplaced one must fail.
"""

from __future__ import annotations

import zlib

import fsspec
import numpy as np
import pytest
import pyvips

from anyres_data.probe import read_header
from anyres_data.sampling import SamplerSettings, draw_spec
from anyres_data.sampling import cache as cache_module
from anyres_data.sampling.cache import (
    CacheFormat,
    CacheMismatch,
    cut_cached,
    displayed_srgb8,
    encode_entry,
    level_for,
)
from anyres_data.spec import PatchSpec
from tests.support.photos import encode, structured_image
from tests.test_patches import BAR_DB, assert_lies_where_drawn, make_case, psnr, reference

FORMATS = {
    "jpeg93-ycbcr": CacheFormat(),  # the default
    "deflate-rgb": CacheFormat(compression="deflate", colour="rgb"),
}
LOSSY_KINDS = ["jpeg", "jpeg_progressive", "jpeg_exif_rotated", "jpeg_grey", "jpeg_cmyk", "webp"]
# Lossy tiles of lossless originals with grain (png16, png_alpha here) reach only 36-41 dB at Q 90-95: lossless tiles.
CASES = [(kind, "jpeg93-ycbcr") for kind in LOSSY_KINDS] + [
    (kind, "deflate-rgb") for kind in [*LOSSY_KINDS, "png", "png_alpha", "png16", "png_palette"]
]


def write_entry(tmp_path, data: bytes, fmt: CacheFormat, name: str = "e") -> str:
    path = tmp_path / f"{name}.tif"
    path.write_bytes(encode_entry(data, fmt))
    return str(path)


@pytest.mark.parametrize(("kind", "fmt"), CASES)
def test_cached_patches_match_pillow_lanczos_of_the_original(tmp_path, kind, fmt):
    rng = np.random.default_rng(zlib.crc32(f"{kind}-{fmt}".encode()))
    settings = SamplerSettings(p=48, size_distribution="log_uniform", global_prob=0.25)
    worst = np.inf
    for image in range(2):
        data, full = make_case(kind, rng)
        header = read_header(data)
        url = write_entry(tmp_path, data, FORMATS[fmt], name=str(image))
        for _ in range(10):
            drawn = draw_spec(width=header.width, height=header.height, settings=settings, rng=rng)
            patch = cut_cached(url, drawn, width=header.width, height=header.height, ycbcr=FORMATS[fmt].ycbcr)
            assert patch.pixels.shape == (48, 48, 3) and patch.pixels.dtype == np.uint8
            assert patch.square == drawn.square and patch.spec.s == drawn.spec.s
            f = drawn.square.m / drawn.spec.s
            if f >= 1:  # where the patch really lies, in pixels of the pyramid level read
                assert_lies_where_drawn(patch, drawn, k=2 ** level_for(f, levels=99))
            value = psnr(patch.pixels, reference(full, patch))
            assert value >= BAR_DB, f"{kind} {fmt}: {value:.1f} dB for {drawn} (real {patch.spec})"
            worst = min(worst, value)
    print(f"{kind} {fmt}: worst PSNR {worst:.1f} dB")


def test_misplaced_cached_patch_fails_the_comparison(tmp_path):
    rng = np.random.default_rng(5)
    data = encode(structured_image(900, 700, seed=5), "JPEG", quality=90)
    full = np.asarray(displayed_srgb8(data).numpy())
    url = write_entry(tmp_path, data, CacheFormat())
    settings = SamplerSettings(p=48, size_distribution="log_uniform", global_prob=0.0)
    for _ in range(8):
        drawn = draw_spec(width=900, height=700, settings=settings, rng=rng)
        patch = cut_cached(url, drawn, width=900, height=700, ycbcr=True)
        s, x0, y0, p = patch.spec.as_tuple()
        assert psnr(patch.pixels, reference(full, patch)) >= BAR_DB
        assert psnr(patch.pixels, reference(full, patch, PatchSpec(s, x0 + 1, y0, p))) < BAR_DB
        assert psnr(patch.pixels, reference(full, patch, PatchSpec(s, x0, y0 - 1, p))) < BAR_DB
        assert psnr(patch.pixels, reference(full, patch, PatchSpec(s * 1.03, x0, y0, p))) < BAR_DB


def test_pyramid_levels_halve_and_the_coarsest_that_leaves_2x_serves_each_scale(tmp_path):
    data = encode(structured_image(1500, 1100, seed=2), "PNG", compress_level=1)
    url = write_entry(tmp_path, data, CacheFormat(tile=128))
    levels = pyvips.Image.new_from_file(url).get("n-pages")
    sizes = [
        (pyvips.Image.new_from_file(url, page=i).width, pyvips.Image.new_from_file(url, page=i).height)
        for i in range(levels)
    ]
    assert sizes == [(1500 // 2**i, 1100 // 2**i) for i in range(levels)] and levels >= 4
    assert [level_for(f, levels) for f in (1, 4.99, 5, 9.99, 10, 1000)] == [0, 0, 1, 1, 2, levels - 1]


def test_entry_is_displayed_srgb8_without_orientation_and_originals_untouched(tmp_path):
    from tests.support.photos import jpeg_with_orientation

    data = jpeg_with_orientation(structured_image(300, 200, seed=1), 6, quality=92)
    before = bytes(data)
    url = write_entry(tmp_path, data, CacheFormat(compression="deflate", colour="rgb"))
    top = pyvips.Image.new_from_file(url)
    assert (top.width, top.height, top.bands, top.format) == (200, 300, 3, "uchar")
    assert top.get_typeof("orientation") == 0 or top.get("orientation") == 1
    assert np.array_equal(top.numpy(), displayed_srgb8(data).numpy())
    assert data == before


def test_entry_of_another_size_and_missing_entry_are_errors(tmp_path):
    data = encode(structured_image(400, 300, seed=1), "PNG")
    url = write_entry(tmp_path, data, CacheFormat())
    drawn = draw_spec(width=400, height=300, settings=SamplerSettings(p=32), rng=np.random.default_rng(0))
    with pytest.raises(CacheMismatch):
        cut_cached(url, drawn, width=401, height=300, ycbcr=True)
    with pytest.raises(FileNotFoundError):
        cut_cached(str(tmp_path / "nope.tif"), drawn, width=400, height=300, ycbcr=True)


def test_ycbcr_needs_a_compression_that_keeps_the_bands():
    with pytest.raises(ValueError, match="colour=rgb"):
        CacheFormat(compression="webp", colour="ycbcr")
    assert not CacheFormat(compression="jpeg", quality=85).ycbcr and CacheFormat(compression="zstd").ycbcr


def test_remote_entry_is_read_by_range_not_whole(tmp_path, monkeypatch):
    """An fsspec memory:// entry through the custom source: a small patch reads a fraction of the file."""
    data = encode(structured_image(2400, 1800, seed=3), "PNG", compress_level=1)
    entry = encode_entry(data, CacheFormat())
    fs = fsspec.filesystem("memory")
    fs.pipe("/cachetest/a.tif", entry)
    local = write_entry(tmp_path, data, CacheFormat())
    read = []
    original = cache_module._Reader._read
    monkeypatch.setattr(cache_module._Reader, "_read", lambda self, n: read.append(b := original(self, n)) or b)
    settings = SamplerSettings(p=64, size_distribution="fixed", fixed_s=1800, global_prob=0.0)
    drawn = draw_spec(width=2400, height=1800, settings=settings, rng=np.random.default_rng(1))
    remote = cut_cached("memory://cachetest/a.tif", drawn, width=2400, height=1800, ycbcr=True)
    near = cut_cached(local, drawn, width=2400, height=1800, ycbcr=True)
    np.testing.assert_array_equal(remote.pixels, near.pixels)
    assert remote.spec == near.spec
    assert 0 < sum(map(len, read)) < len(entry) / 4, (sum(map(len, read)), len(entry))
    fs.rm("/cachetest", recursive=True)
