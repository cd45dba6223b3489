"""The demo source: deterministic candidates, sizes in range, one scene at every resolution, real files."""

import numpy as np
import pytest
import pyvips
from PIL import Image

from anyres_data.sources.demo import DemoSettings, demo_bytes, demo_url, iter_demo, render_demo


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def lanczos(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def test_candidates_are_deterministic_and_sized_in_range():
    settings = DemoSettings(count=300, seed=7, min_side=200, max_side=4000)
    got = list(iter_demo(settings))
    assert got == list(iter_demo(settings))
    assert len({c.source_id for c in got}) == len({c.url for c in got}) == 300
    assert got[:10] == list(iter_demo(DemoSettings(count=10, seed=7)))  # a longer set extends a shorter one
    assert [c.url for c in iter_demo(DemoSettings(count=10, seed=8))] != [c.url for c in got[:10]]
    sides = np.array([(c.width, c.height) for c in got])
    assert sides.min() >= 200 and sides.max() <= 4000
    longer = sides.max(1)
    assert (longer < 500).any() and (longer > 2500).any()  # log-uniform over the range
    portrait = (sides[:, 1] > sides[:, 0]).mean()
    assert 0.15 < portrait < 0.45
    aspect = longer / sides.min(1)
    assert (aspect > 1.8).any() and (aspect < 1.2).any()
    for c in got:
        assert c.url == demo_url(
            c.extra["demo_seed"], c.width, c.height, {"jpg": "jpeg"}.get(c.url[-3:], c.url[-4:].lstrip("."))
        )
    formats = [c.url.rsplit(".", 1)[1] for c in got]
    assert formats.count("jpg") > 200 and "png" in formats and "webp" in formats
    only_png = list(iter_demo(DemoSettings(count=20, formats=("png",))))
    assert all(c.url.endswith(".png") for c in only_png)


@pytest.mark.parametrize(("seed", "width", "height"), [(0, 192, 144), (1, 160, 240), (2, 250, 150), (3, 200, 200)])
def test_every_resolution_renders_the_same_scene(seed, width, height):
    small = render_demo(seed, width, height)
    large = render_demo(seed, 4 * width, 4 * height)
    assert small.shape == (height, width, 3) and small.dtype == np.uint8
    assert psnr(small, lanczos(large, width, height)) >= 30.0
    # not trivially: another scene is far off, and the large render has detail down to its pixels
    assert psnr(small, lanczos(render_demo(seed + 100, 4 * width, 4 * height), width, height)) < 20.0
    blurred = lanczos(lanczos(large, 2 * width, 2 * height), 4 * width, 4 * height)
    assert np.abs(large.astype(int) - blurred).mean() > 1.0


def test_render_is_deterministic():
    assert np.array_equal(render_demo(5, 301, 203), render_demo(5, 301, 203))
    assert not np.array_equal(render_demo(5, 64, 64), render_demo(6, 64, 64))
    with pytest.raises(ValueError, match="at least 8 px"):
        render_demo(0, 4, 100)


@pytest.mark.parametrize(
    ("fmt", "loader"), [("jpeg", "jpegload_buffer"), ("png", "pngload_buffer"), ("webp", "webpload_buffer")]
)
def test_encoded_files_decode_with_pyvips(fmt, loader):
    url = demo_url(12345, 320, 200, fmt)
    data = demo_bytes(url)
    assert data == demo_bytes(url)  # deterministic encoder settings
    image = pyvips.Image.new_from_buffer(data, "")
    assert (image.width, image.height, image.bands, image.get("vips-loader")) == (320, 200, 3, loader)
    pixels = np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8, shape=(200, 320, 3))
    truth = render_demo(12345, 320, 200)
    if fmt == "png":
        assert np.array_equal(pixels, truth)  # lossless
    else:
        assert psnr(pixels, truth) > {"jpeg": 35.0, "webp": 30.0}[fmt]


def test_bad_settings_and_urls_are_clear_errors():
    with pytest.raises(ValueError, match="not a demo URL"):
        demo_bytes("demo://1/10x10.gif")
    with pytest.raises(ValueError, match="--demo-min-side"):
        iter_demo(DemoSettings(min_side=500, max_side=400))
    with pytest.raises(ValueError, match="--demo-formats"):
        iter_demo(DemoSettings(formats=("gif",)))
    with pytest.raises(ValueError, match="--demo-count"):
        iter_demo(DemoSettings(count=-1))


def test_square_images_with_sides_uniform_in_a_range():
    settings = DemoSettings(count=400, seed=4, min_side=128, max_side=256, side_distribution="uniform", max_aspect=1.0)
    sides = np.array([(c.width, c.height) for c in iter_demo(settings)])
    assert (sides[:, 0] == sides[:, 1]).all() and sides.min() >= 128 and sides.max() <= 256
    # uniform in size (not in log-size): about half the sides above the midpoint 192, not above √(128·256) ≈ 181
    assert abs(np.mean(sides[:, 0] >= 181) - 0.5) > 0.05 and abs(np.mean(sides[:, 0] >= 192) - 0.5) < 0.1
    default = [(c.width, c.height) for c in iter_demo(DemoSettings(count=20, seed=4))]
    assert default == [(c.width, c.height) for c in iter_demo(DemoSettings(count=20, seed=4, max_aspect=2.5))]
    with pytest.raises(ValueError, match="max-aspect"):
        iter_demo(DemoSettings(max_aspect=0.5))
