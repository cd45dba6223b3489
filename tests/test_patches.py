"""cut_patch against the recipe it replaces: Pillow's Lanczos resize of the fully decoded image.

The reference for a patch is `img.resize((p, p), LANCZOS, box=spec.box(m) + square offset)` on the
whole decoded, EXIF-transposed image, at the spec the sampler *reports*. PSNR ≥ 40 dB away from a
4-pixel border is the bar (shrink-on-load and libvips' edge handling make it close, not exact);
a deliberately misplaced patch must fail it.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
import pyvips
from PIL import Image, ImageCms, ImageOps

from anyres_data.probe import read_header
from anyres_data.rejects import Rejected
from anyres_data.sampling.draw import DrawnSpec, SamplerSettings, Square, draw_spec
from anyres_data.sampling.patches import MARGIN_PIXELS, Patch, cut_global, cut_patch, shrink_factor
from anyres_data.spec import PatchSpec
from tests.support.photos import encode, jpeg_with_orientation, png16, structured_image

BAR_DB = 40.0


def assert_lies_where_drawn(patch: Patch, drawn: DrawnSpec, *, k: int) -> None:
    """The reported spec is where the patch really lies: within a quarter of a source pixel (of the
    image shrunk k×) when reduce has at least 2 of them per output pixel, else within a half."""
    f = drawn.square.m / drawn.spec.s
    tolerance = (0.25 if f / k >= 2 else 0.5) * k / f + 1e-9
    assert abs(patch.spec.x0 - drawn.spec.x0) <= tolerance
    assert abs(patch.spec.y0 - drawn.spec.y0) <= tolerance


BORDER = 4
PAD = 32  # reference images are edge-padded so that boxes reaching past the image read replicated pixels


def psnr(a: np.ndarray, b: np.ndarray, border: int = BORDER) -> float:
    a = a[border:-border, border:-border].astype(np.float64)
    b = b[border:-border, border:-border].astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def reference(full: np.ndarray, patch: Patch, spec: PatchSpec | None = None) -> np.ndarray:
    """Pillow Lanczos of the (H, W, 3) displayed image over the box of `spec` (default: the patch's)."""
    spec = spec or patch.spec
    padded = Image.fromarray(np.pad(full, ((PAD, PAD), (PAD, PAD), (0, 0)), mode="edge"))
    left, top, right, bottom = spec.box(patch.square.m)
    dx, dy = patch.square.ox + PAD, patch.square.oy + PAD
    box = (left + dx, top + dy, right + dx, bottom + dy)
    return np.asarray(padded.resize((spec.p, spec.p), Image.Resampling.LANCZOS, box=box))


def pillow_decode(data: bytes) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


def on_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:].astype(np.float64) / 255
    return np.round(rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)


def make_case(kind: str, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """(encoded bytes, the displayed image as the reference sees it) for one input kind."""
    w, h = int(rng.integers(260, 720)), int(rng.integers(260, 720))
    pixels = structured_image(w, h, seed=int(rng.integers(1 << 30)))
    if kind == "jpeg":
        return (data := encode(pixels, "JPEG", quality=90)), pillow_decode(data)
    if kind == "jpeg_progressive":
        return (data := encode(pixels, "JPEG", quality=90, progressive=True)), pillow_decode(data)
    if kind == "jpeg_exif_rotated":
        data = jpeg_with_orientation(pixels, int(rng.integers(2, 9)), quality=90)
        return data, pillow_decode(data)
    if kind == "jpeg_grey":
        return (data := encode(pixels[..., 1].copy(), "JPEG", quality=90)), pillow_decode(data)
    if kind == "jpeg_icc_srgb":
        profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        return (data := encode(pixels, "JPEG", quality=90, icc_profile=profile)), pillow_decode(data)
    if kind == "png":
        return encode(pixels, "PNG", compress_level=1), pixels
    if kind == "png_palette":
        data = encode(np.asarray(Image.fromarray(pixels).quantize(256)), "PNG")
        return data, pillow_decode(data)
    if kind == "png_alpha":
        alpha = np.clip(structured_image(w, h, seed=7)[..., :1].astype(int) * 2 - 60, 0, 255).astype(np.uint8)
        rgba = np.concatenate([pixels, alpha], axis=-1)
        return encode(rgba, "PNG", compress_level=1), on_white(rgba)
    if kind == "png16":
        wide = pixels.astype(np.uint16) * 257 + rng.integers(0, 257, pixels.shape).astype(np.uint16)
        return png16(wide), np.round(wide / 257).astype(np.uint8)
    if kind == "webp":
        return (data := encode(pixels, "WEBP", quality=90)), pillow_decode(data)
    if kind == "jpeg_cmyk":
        buf = io.BytesIO()
        Image.fromarray(pixels).convert("CMYK").save(buf, "JPEG", quality=95)
        data = buf.getvalue()
        # Colours go through libvips' CMYK profile (Pillow's naive CMYK→RGB is not a colour
        # conversion); geometry is still checked against Pillow's resize of the whole image.
        full = pyvips.Image.new_from_buffer(data, "").icc_transform("srgb", input_profile="cmyk", embedded=True)
        return data, full.numpy()
    raise AssertionError(kind)


KINDS = [
    "jpeg",
    "jpeg_progressive",
    "jpeg_exif_rotated",
    "jpeg_grey",
    "jpeg_icc_srgb",
    "jpeg_cmyk",
    "png",
    "png_palette",
    "png_alpha",
    "png16",
    "webp",
]


@pytest.mark.parametrize("kind", KINDS)
def test_patches_match_pillow_lanczos_of_whole_image(kind):
    rng = np.random.default_rng(zlib.crc32(kind.encode()))
    settings = SamplerSettings(p=48, size_distribution="log_uniform", global_prob=0.25)
    worst = np.inf
    for _ in range(2):
        data, full = make_case(kind, rng)
        header = read_header(data)
        assert (header.height, header.width) == full.shape[:2]
        for _ in range(10):
            drawn = draw_spec(width=header.width, height=header.height, settings=settings, rng=rng)
            patch = cut_patch(data, drawn, header=header)
            assert patch.pixels.shape == (48, 48, 3) and patch.pixels.dtype == np.uint8
            assert patch.square == drawn.square
            f = drawn.square.m / drawn.spec.s  # JPEGs shrink on load by shrink_factor(f)
            assert patch.spec.s == drawn.spec.s and patch.spec.p == drawn.spec.p
            assert_lies_where_drawn(patch, drawn, k=shrink_factor(f) if header.format == "jpg" else 1)
            value = psnr(patch.pixels, reference(full, patch))
            assert value >= BAR_DB, f"{kind}: {value:.1f} dB for {drawn} (real {patch.spec})"
            worst = min(worst, value)
    print(f"{kind}: worst PSNR {worst:.1f} dB")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_lands_in_displayed_coordinates(orientation):
    rng = np.random.default_rng(orientation)
    pixels = structured_image(400, 260, seed=orientation)
    data = jpeg_with_orientation(pixels, orientation, quality=92)
    header = read_header(data)
    assert header.orientation == orientation
    assert (header.width, header.height) == ((260, 400) if orientation >= 5 else (400, 260))
    full = pillow_decode(data)
    settings = SamplerSettings(p=32, size_distribution="log_uniform", global_prob=0.2)
    for _ in range(6):
        drawn = draw_spec(width=header.width, height=header.height, settings=settings, rng=rng)
        patch = cut_patch(data, drawn, header=header)
        assert psnr(patch.pixels, reference(full, patch)) >= BAR_DB


def test_misplaced_patch_fails_the_comparison():
    """The bar is meaningful: one output pixel of shift, or 3% of scale, fails it."""
    rng = np.random.default_rng(5)
    pixels = structured_image(640, 480, seed=5)
    data = encode(pixels, "JPEG", quality=90)
    full = pillow_decode(data)
    header = read_header(data)
    settings = SamplerSettings(p=48, size_distribution="log_uniform", global_prob=0.0)
    for _ in range(8):
        drawn = draw_spec(width=header.width, height=header.height, settings=settings, rng=rng)
        patch = cut_patch(data, drawn, header=header)
        s, x0, y0, p = patch.spec.as_tuple()
        assert psnr(patch.pixels, reference(full, patch)) >= BAR_DB
        assert psnr(patch.pixels, reference(full, patch, PatchSpec(s, x0 + 1, y0, p))) < BAR_DB
        assert psnr(patch.pixels, reference(full, patch, PatchSpec(s, x0, y0 - 1, p))) < BAR_DB
        assert psnr(patch.pixels, reference(full, patch, PatchSpec(s * 1.03, x0, y0, p))) < BAR_DB


def test_cut_global_renders_the_centred_square():
    pixels = structured_image(300, 220, seed=3)
    data = encode(pixels, "PNG")
    patch = cut_global(data, p=64)
    assert patch.square == Square(40, 0, 220)
    assert patch.spec.s == 64 and abs(patch.spec.x0) < 0.25 and abs(patch.spec.y0) < 0.25
    expected = np.asarray(Image.fromarray(pixels).resize((64, 64), Image.Resampling.LANCZOS, box=(40, 0, 260, 220)))
    assert psnr(patch.pixels, expected) >= BAR_DB


def test_cut_global_of_a_square_at_p_is_the_image_itself():
    pixels = structured_image(64, 64, seed=4)
    patch = cut_global(encode(pixels, "PNG"), p=64)
    assert patch.spec == PatchSpec.global_(64)
    np.testing.assert_array_equal(patch.pixels, pixels)


def test_cut_global_random_crop_needs_rng_and_moves_the_square():
    data = encode(structured_image(300, 100, seed=1), "PNG")
    with pytest.raises(ValueError, match="rng"):
        cut_global(data, p=32, crop="random")
    offsets = {cut_global(data, p=32, crop="random", rng=np.random.default_rng(i)).square.ox for i in range(6)}
    assert len(offsets) > 1 and all(0 <= ox <= 200 for ox in offsets)


def test_global_sample_of_a_small_image_is_upsampled_with_exact_placement():
    pixels = structured_image(48, 40, seed=2)
    patch = cut_global(encode(pixels, "PNG"), p=64)
    assert patch.spec == PatchSpec.global_(64)
    assert patch.pixels.shape == (64, 64, 3)
    expected = np.asarray(Image.fromarray(pixels).resize((64, 64), Image.Resampling.BICUBIC, box=(4, 0, 44, 40)))
    assert psnr(patch.pixels, expected) >= 30  # libvips bicubic vs Pillow bicubic: same idea, other kernels


def test_patches_are_never_upsampled():
    data = encode(structured_image(100, 80, seed=1), "PNG")
    drawn = DrawnSpec(Square(0, 0, 80), PatchSpec(160.0, 0.0, 0.0, 32), False)
    with pytest.raises(ValueError, match="upsampling"):
        cut_patch(data, drawn)


def test_square_outside_the_image_is_rejected():
    data = encode(structured_image(100, 80, seed=1), "PNG")
    drawn = DrawnSpec(Square(30, 0, 80), PatchSpec(40.0, 0.0, 0.0, 32), False)
    with pytest.raises(ValueError, match="does not fit"):
        cut_patch(data, drawn)


def test_undecodable_bytes_raise():
    with pytest.raises(Rejected, match="not_an_image"):
        cut_patch(b"this is not an image", DrawnSpec(Square(0, 0, 400), PatchSpec.global_(32), True))
    data = encode(structured_image(400, 400, seed=1), "JPEG", quality=90)
    truncated = data[: len(data) // 3]
    drawn = DrawnSpec(Square(0, 0, 400), PatchSpec(100.0, 60.0, 60.0, 32), False)  # needs the bottom rows
    with pytest.raises(pyvips.Error):
        cut_patch(truncated, drawn)


def test_shrink_factor_leaves_headroom_for_lanczos():
    assert [shrink_factor(f) for f in (1.0, 2.4, 5.0, 9.9, 10.0, 20.0, 40.0, 400.0)] == [1, 1, 2, 2, 4, 8, 8, 8]
    assert MARGIN_PIXELS >= 3.5  # lanczos3 support plus half a pixel, in output pixels
