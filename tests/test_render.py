"""Rendering at any resolution: tiled vs one-pass agreement, crops, bounded memory, checkpoints, the CLI."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from anyres_data.spec import PatchSpec
from anyres_model.checkpoint import load_checkpoint, load_generator, network_config, save_checkpoint
from anyres_model.cli.render import app
from anyres_model.networks.discriminator import Discriminator
from anyres_model.networks.generator import Generator
from anyres_model.networks.presets import preset
from anyres_model.panels import BAND, GAP
from anyres_model.render import (
    default_border,
    latent,
    render,
    render_crop,
    tile_layout,
    to_numpy_image,
    zoom_specs,
)
from anyres_model.training.run_log import grid_name, save_image_grid

TINY_G, TINY_D = preset("tiny")


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return Generator(TINY_G).eval()


@pytest.fixture(scope="module")
def z():
    return torch.randn(2, TINY_G.z_dim, generator=torch.Generator().manual_seed(1))


def test_render_at_patch_size_is_the_global_image(generator, z):
    assert torch.equal(render(generator, z, TINY_G.patch_size), generator(z))


def test_tiled_render_matches_one_pass(generator, z):
    """Tile offsets are multiples of the grid step, so tiles agree with the one-pass render to float
    noise once the border (default 20 px) keeps each tile's own edge effects out (measured: 4e-7)."""
    size, tile = 97, 32  # an odd size: the one-pass render is 98 px, cropped
    full = render(generator, z, size)
    tiled = render(generator, z, size, tile=tile)
    assert tiled.shape == full.shape == (2, 3, size, size)
    assert (tiled - full).abs().max() < 1e-5
    no_border = render(generator, z[:1], size, tile=tile, border=0)
    assert (no_border - full[:1]).abs().max() > 1e-3  # the border is what makes the seams vanish


def test_tile_layout_covers_the_window_once_with_aligned_tiles():
    window = PatchSpec(500.0, 13.5, 7.0, 101)
    tiles = tile_layout(window, tile=30, border=20, step=4)
    cover = np.zeros((101, 101), dtype=int)
    for t in tiles:
        cover[t.top : t.top + t.height, t.left : t.left + t.width] += 1
        assert t.spec.p == 32 + 2 * 20  # tile and border rounded up to the step
        assert (t.spec.x0 - window.x0) % 4 == 0 and (t.spec.y0 - window.y0) % 4 == 0
        assert t.inner_top >= 0 and t.inner_top + t.height <= t.spec.p
        assert t.spec.x0 - window.x0 + t.spec.p <= 104  # inside the one-pass extent (p rounded up to 4)
    assert (cover == 1).all()
    with pytest.raises(ValueError):
        tile_layout(window, tile=0, border=0, step=4)


def test_render_crop_is_the_region_of_the_whole_image(generator, z):
    """With context, a crop equals the same region of the whole render: aligned offsets (whole
    first-layer samples) to 1e-5 (measured 2e-6), offsets shifted by half a first-layer sample to 1e-4
    (measured 6e-6: StyleGAN3-T's sub-sample translation equivariance)."""
    full = render(generator, z, 97)
    border = default_border(generator)
    for spec, bound in ((PatchSpec(97.0, 30.0, 16.0, 48), 1e-5), (PatchSpec(97.0, 31.0, 17.0, 40), 1e-4)):
        region = full[..., int(spec.y0) : int(spec.y0) + spec.p, int(spec.x0) : int(spec.x0) + spec.p]
        crop = render_crop(generator, z, spec, context=border)
        assert (crop - region).abs().max() < bound
        native = render_crop(generator, z, spec)  # what G renders for that window, with its own edges
        assert (native - region).abs().max() > 1e-3
        assert (native - region)[..., 16:-16, 16:-16].abs().max() < bound


def test_render_crop_any_size_and_subpixel_window(generator, z):
    spec = PatchSpec(313.7, 100.25, 57.5, 61)  # p not a multiple of the grid step, fractional offsets
    one_pass = render_crop(generator, z, spec)
    assert one_pass.shape == (2, 3, 61, 61)
    assert (render_crop(generator, z, spec, tile=16) - one_pass).abs().max() < 1e-5
    with pytest.raises(ValueError, match="context"):
        render_crop(generator, z, spec, context=-1)
    with pytest.raises(ValueError, match="size"):
        render(generator, z, 0)


MEMORY_SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, sys, torch
    from anyres_model.networks.generator import Generator
    from anyres_model.networks.presets import preset
    from anyres_model.render import render

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    torch.set_num_threads(1)
    cfg = dataclasses.replace(preset("tiny")[0], channel_base=64, channel_max=4, num_layers=4, z_dim=16, w_dim=16,
                              scale_dim=8)
    torch.manual_seed(0)
    G = Generator(cfg).eval()
    z = torch.randn(1, cfg.z_dim)
    size = int(sys.argv[1])
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    img = render(G, z, size, tile=512)
    channels = max(layer.sched.out_channels for layer in G.synthesis.layers)
    one_pass_layer = channels * (size + 2 * cfg.margin_size + 2) ** 2 * 4  # one activation of a one-pass render
    print(json.dumps({"growth": status("VmHWM") - base, "canvas": img.numel() * 4, "one_pass_layer": one_pass_layer}))
    """
)


def render_memory(size):
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(size)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tiled_4096_render_has_bounded_peak_memory():
    """Peak RSS (Linux VmHWM, reset just before rendering, in a fresh process) of a tiled render grows by
    the float32 output canvas plus one tile's working set: the same ~75 MiB (one-time allocations
    included) at 1024² and 4096², while one activation of a one-pass 4096² render alone is 259 MiB.
    Uses the tiny preset's schedule with 4 channels and 4 layers, so 16.8 M pixels take seconds."""
    small, large = render_memory(1024), render_memory(4096)
    assert large["canvas"] == 4096 * 4096 * 3 * 4
    small_set, large_set = small["growth"] - small["canvas"], large["growth"] - large["canvas"]
    assert large_set < small_set + 32 * 2**20, f"working set {small_set / 2**20:.0f} -> {large_set / 2**20:.0f} MiB"
    assert large_set < 160 * 2**20 < 3 * large["one_pass_layer"]


def test_zoom_specs_are_the_whole_image_then_centred_crops_at_doubling_scale():
    specs = zoom_specs(32, levels=4, centre=(0.25, 0.5))
    assert [s.s for s in specs] == [32, 64, 128, 256] and all(s.p == 32 for s in specs)
    assert specs[0] == PatchSpec.global_(32)
    assert all(s.centre == pytest.approx((0.25, 0.5)) for s in specs[1:])
    with pytest.raises(ValueError):
        zoom_specs(32, levels=0, centre=(0.5, 0.5))


def save_tiny_checkpoint(path, generator):
    torch.manual_seed(5)
    save_checkpoint(
        path,
        config=network_config(TINY_G, TINY_D),
        tensors={"G": generator.state_dict(), "G_ema": generator.state_dict(), "D": Discriminator(TINY_D).state_dict()},
        extra_json={"kimg": 0},
    )


def test_checkpoint_round_trip(tmp_path, generator, z):
    path = tmp_path / "run" / "ckpt.pt"
    save_tiny_checkpoint(path, generator)
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # no temporary file left behind
    ckpt = load_checkpoint(path)
    assert ckpt.config["G"]["patch_size"] == 32 and ckpt.extra_json == {"kimg": 0}
    loaded = load_generator(path)
    assert loaded.cfg == TINY_G and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(z), generator(z))
    with pytest.raises(ValueError, match="no state 'G_best'"):
        load_generator(path, "G_best")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an anyres checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_cli_renders_tiled_image_and_zoom_strip(tmp_path, generator):
    ckpt = tmp_path / "ckpt.pt"
    save_tiny_checkpoint(ckpt, generator)
    runner = CliRunner()
    out = tmp_path / "img.png"
    result = runner.invoke(app, [str(ckpt), "--size", "80", "--tile", "32", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    pixels = np.asarray(Image.open(out))
    expected = to_numpy_image(render(generator, latent(3, TINY_G.z_dim), 80, tile=32)[0])
    assert pixels.shape == (80, 80, 3)
    assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= 1  # rounding of float noise at most
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["settings"]["size"] == 80 and record["generator"]["patch_size"] == 32

    strip = tmp_path / "zoom.png"
    result = runner.invoke(app, [str(ckpt), "--zoom", "--zoom-levels", "3", "--out", str(strip)])
    assert result.exit_code == 0, result.output
    image = np.asarray(Image.open(strip))
    panel, top = 256, BAND + GAP  # 32 px panels shown at 256 px, below the labels' band
    assert image.shape == (top + panel + GAP, 3 * (panel + GAP) + GAP, 3)
    # the s = 2P crop (centre half of the image) is outlined in red on the first panel
    assert tuple(image[top + 64, GAP + 80]) == (255, 48, 48) and tuple(image[top + 100, GAP + 64]) == (255, 48, 48)
    assert (image[:BAND].min(axis=2) < 128).any()  # the labels, beside the panels, not over them
    assert (image[:BAND] == 255).mean() > 0.8
    first = Image.open(strip).crop((GAP, top, GAP + panel, top + panel)).resize((32, 32), Image.Resampling.NEAREST)
    whole = to_numpy_image(render(generator, latent(0, TINY_G.z_dim), 32)[0])
    assert np.abs(np.asarray(first).astype(int) - whole.astype(int))[2:30, 2:30].max() <= 1  # enlarged, not changed

    outdir = tmp_path / "seeds"
    result = runner.invoke(app, [str(ckpt), "--size", "32", "--seeds", "0-2,5", "--outdir", str(outdir)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in outdir.glob("*.png")) == [
        "seed0000.png",
        "seed0001.png",
        "seed0002.png",
        "seed0005.png",
    ]
    for seed in (1, 5):
        got = np.asarray(Image.open(outdir / f"seed{seed:04d}.png")).astype(int)
        assert np.abs(got - to_numpy_image(render(generator, latent(seed, TINY_G.z_dim), 32)[0]).astype(int)).max() <= 1
    assert json.loads((outdir / "seed0005.json").read_text())["seed"] == 5
    no_dir = runner.invoke(app, [str(ckpt), "--seeds", "0-3"])
    assert no_dir.exit_code == 2 and "--outdir" in no_dir.output
    bad_seeds = runner.invoke(app, [str(ckpt), "--seeds", "3-1", "--outdir", str(outdir)])
    assert bad_seeds.exit_code == 2 and "not a range" in bad_seeds.output

    missing = runner.invoke(app, [str(tmp_path / "nope.pt")])
    assert missing.exit_code != 0
    bad = runner.invoke(app, [str(ckpt), "--zoom-centre", "0.5"])
    assert bad.exit_code != 0 and "expected 2 values" in bad.output


class _Payload:
    """An object whose unpickling would run code: a weights-only load must refuse it."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickled_object_is_not_a_checkpoint_and_the_cli_says_so(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "x", "payload": _Payload()}, path)
    with pytest.raises(ValueError, match="not a checkpoint this tool wrote"):
        load_checkpoint(path)
    result = CliRunner().invoke(app, [str(path), "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "this must never run" not in result.output
    message = " ".join(result.output.replace("│", " ").split())  # rich wraps the error in a box
    assert "not a checkpoint this tool wrote" in message and "weights_only" not in message


def test_training_grids_never_overwrite_one_another_and_are_labelled(tmp_path, generator):
    names = [grid_name(nimg) for nimg in (0, 4, 400, 800, 1000, 12_345)]
    assert len(set(names)) == len(names) and names == sorted(names) and names[2] == "grid-000000.400kimg.png"
    z = torch.randn(2, TINY_G.z_dim, generator=torch.Generator().manual_seed(0))
    save_image_grid(generator, z, tmp_path / names[2])
    grid = np.asarray(Image.open(tmp_path / names[2]))
    left = grid.shape[1] - 3 * (256 + GAP) - GAP  # the row labels' column
    assert left > 0 and grid.shape[0] == BAND + 2 * (256 + GAP) + GAP  # 2 latents x 3 scales, 256 px panels
    assert (grid[:BAND].min(axis=2) < 128).any() and (grid[BAND:, :left].min(axis=2) < 128).any()  # labels
