"""The resizer stage and seeded subsets: sizes drawn per key, Lanczos quality, and builds with and without them."""

from __future__ import annotations

import hashlib
import io
import json
import random

import numpy as np
import pytest
import pyvips
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from anyres_data.build import BuildSettings, build
from anyres_data.build.ingest import PROBE_NAMES
from anyres_data.build.resize import ResizeSettings, resize, resized_size, target_side
from anyres_data.build.subset import SubsetSettings, subset_candidates
from anyres_data.candidate import Candidate
from anyres_data.cli.app import app
from anyres_data.dataset import MANIFEST_COLUMNS, extra_fields, read_manifest
from anyres_data.dataset.verify import verify
from anyres_data.probe import read_header
from anyres_data.sources import FolderSettings, SourceSettings
from tests.support.photos import encode, jpeg_with_orientation, structured_image

UNIFORM = ResizeSettings(mode="uniform", min_size=100, max_size=140, seed=3)


def psnr(a: np.ndarray, b: np.ndarray, border: int = 4) -> float:
    a, b = a[border:-border, border:-border].astype(np.float64), b[border:-border, border:-border].astype(np.float64)
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def pillow_lanczos(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """The reference: Pillow's Lanczos on the fully decoded image, EXIF orientation applied."""
    from PIL import ImageOps

    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS))


# ---------------------------------------------------------------------------------------------- sizes


def test_sizes_are_drawn_per_key_uniformly_in_the_range_and_the_same_in_every_run():
    keys = [f"folder-img{i:05d}" for i in range(4000)]
    sides = [target_side(k, UNIFORM) for k in keys]
    assert set(sides) == set(range(100, 141))  # every integer of the inclusive range
    counts = np.bincount(np.array(sides) - 100)
    assert counts.min() > 0.6 * len(keys) / 41 and counts.max() < 1.4 * len(keys) / 41
    assert [target_side(k, UNIFORM) for k in reversed(keys)] == sides[::-1]  # a function of the key alone
    reseeded = [target_side(k, ResizeSettings(mode="uniform", min_size=100, max_size=140, seed=4)) for k in keys]
    assert np.mean(np.array(reseeded) != np.array(sides)) > 0.9
    assert target_side("x", ResizeSettings(mode="fixed", size=77)) == 77
    assert target_side("x", ResizeSettings()) is None


def test_resized_sizes_keep_the_aspect_on_the_shorter_side():
    assert resized_size(1024, 768, 256) == (341, 256)
    assert resized_size(768, 1024, 256) == (256, 341)
    assert resized_size(1000, 1000, 512) == (512, 512)
    assert resized_size(4000, 10, 1) == (400, 1)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mode": "fixed"}, "--resize-size"),
        ({"mode": "uniform", "min_size": 300, "max_size": 200}, "--resize-min-size"),
        ({"mode": "uniform", "min_size": 300}, "--resize-max-size"),
        ({"quality": 0}, "--resize-quality"),
    ],
)
def test_bad_resize_settings_say_which_flag_to_fix(options, message):
    with pytest.raises(ValueError, match=message):
        ResizeSettings(**options)


# ---------------------------------------------------------------------------------------------- pixels


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_resizing_matches_pillow_lanczos_on_the_full_image(fmt):
    pixels = structured_image(960, 720, seed=11)
    data = encode(pixels, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    header = read_header(data)
    for side in (180, 300, 600):  # 4x (JPEG shrink-on-load by 2), 2.4x, 1.2x
        stored = resize(data, header, key="k", settings=ResizeSettings(mode="fixed", size=side))
        out = read_header(stored)
        assert (out.format, out.width, out.height, out.orientation) == ("png", side * 4 // 3, side, 1)
        got = pyvips.Image.new_from_buffer(stored, "").numpy()
        reference = pillow_lanczos(data, (out.width, out.height))
        assert psnr(got, reference) >= 40, side
        shifted = np.asarray(
            Image.fromarray(reference).transform(reference.shape[1::-1], Image.AFFINE, (1, 0, 1, 0, 1, 0))
        )
        assert psnr(got, shifted) < 35  # the comparison can fail: one pixel off is far below


def test_resizing_applies_exif_orientation_cmyk_alpha_and_encodes_as_asked():
    pixels = structured_image(480, 320, seed=12)
    rotated = jpeg_with_orientation(pixels, 6, quality=95)  # stored 480x320, displayed 320x480
    stored = resize(rotated, read_header(rotated), key="k", settings=ResizeSettings(mode="fixed", size=160))
    header = read_header(stored)
    assert (header.width, header.height, header.orientation) == (160, 240, 1)
    got = pyvips.Image.new_from_buffer(stored, "").numpy()
    assert psnr(got, pillow_lanczos(rotated, (160, 240))) >= 38

    buf = io.BytesIO()
    Image.fromarray(pixels).convert("CMYK").save(buf, "JPEG", quality=95)
    cmyk = buf.getvalue()
    jpg = ResizeSettings(mode="fixed", size=160, format="jpg", quality=90)
    stored = resize(cmyk, read_header(cmyk), key="k", settings=jpg)
    header = read_header(stored)
    assert (header.format, header.interpretation, header.bands, header.width) == ("jpg", "srgb", 3, 240)

    rgba = encode(np.dstack([pixels, np.full(pixels.shape[:2], 200, np.uint8)]), "PNG")
    as_png = resize(rgba, read_header(rgba), key="k", settings=ResizeSettings(mode="fixed", size=160))
    as_jpg = resize(rgba, read_header(rgba), key="k", settings=jpg)
    assert read_header(as_png).bands == 4 and read_header(as_jpg).bands == 3  # JPEG: flattened on white


def test_images_at_or_below_their_target_keep_their_original_bytes():
    data = encode(structured_image(300, 200, seed=13), "JPEG")
    header = read_header(data)
    assert resize(data, header, key="k", settings=ResizeSettings(mode="fixed", size=200)) is data
    assert resize(data, header, key="k", settings=ResizeSettings(mode="fixed", size=500)) is data
    assert resize(data, header, key="k", settings=ResizeSettings()) is data
    assert resize(data, header, key="k", settings=ResizeSettings(mode="fixed", size=199)) is not data


# ---------------------------------------------------------------------------------------------- subsets


def candidates(n: int) -> list[Candidate]:
    return [Candidate(source="folder", source_id=f"img{i:04d}.png", url=f"file:///x/img{i:04d}.png") for i in range(n)]


def test_subsets_are_exact_disjoint_in_source_order_and_independent_of_it():
    pool = candidates(300)
    first = list(subset_candidates(pool, SubsetSettings(count=50, seed=1)))
    second = list(subset_candidates(pool, SubsetSettings(count=20, skip=50, seed=1)))
    assert len(first) == 50 and len(second) == 20
    assert not {c.key for c in first} & {c.key for c in second}
    order = [c.key for c in pool]
    assert [c.key for c in first] == sorted((c.key for c in first), key=order.index)  # source order
    shuffled = pool[:]
    random.Random(0).shuffle(shuffled)
    assert {c.key for c in subset_candidates(shuffled, SubsetSettings(count=50, seed=1))} == {c.key for c in first}
    both = list(subset_candidates(pool, SubsetSettings(count=70, seed=1)))
    assert {c.key for c in both} == {c.key for c in first + second}
    other_seed = {c.key for c in subset_candidates(pool, SubsetSettings(count=50, seed=2))}
    assert other_seed != {c.key for c in first}
    assert len(list(subset_candidates(pool[:10], SubsetSettings(count=50)))) == 10  # fewer than asked: all


def test_no_subset_streams_and_bad_subsets_are_errors():
    def endless():
        i = 0
        while True:
            yield candidates(1)[0]
            i += 1

    stream = subset_candidates(endless(), SubsetSettings())
    assert next(stream).key == candidates(1)[0].key  # lazy: an endless source is fine
    with pytest.raises(ValueError, match="--subset-count"):
        subset_candidates(candidates(3), SubsetSettings(skip=2))
    with pytest.raises(ValueError, match="≥ 0"):
        subset_candidates(candidates(3), SubsetSettings(count=-1))


# ---------------------------------------------------------------------------------------------- builds


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Six photos: two already small enough, one EXIF-rotated, a PNG; file name -> bytes."""
    root = tmp_path_factory.mktemp("photos")
    files = {
        "a.jpg": encode(structured_image(400, 300, seed=21), "JPEG", quality=90),
        "b.jpg": jpeg_with_orientation(structured_image(360, 240, seed=22), 6, quality=90),
        "c.png": encode(structured_image(320, 320, seed=23), "PNG"),
        "d.jpg": encode(structured_image(130, 100, seed=24), "JPEG", quality=90),  # below the range
        "e.jpg": encode(structured_image(200, 120, seed=25), "JPEG", quality=90),  # inside the range
        "f.webp": encode(structured_image(500, 260, seed=26), "WEBP", quality=90),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root, files


def folder_build(out, folder, **options) -> BuildSettings:
    settings = BuildSettings(
        source="folder",
        out=str(out),
        sources=SourceSettings(folder=FolderSettings(folder=str(folder))),
        workers=0,
        threads=2,
        shard_size=4,
        progress=False,
        **options,
    )
    build(settings)
    return settings


def shard_samples(out) -> dict[str, dict]:
    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    return {s["__key__"]: s for s in wds.WebDataset(shards, shardshuffle=False)}


def test_a_resizing_build_stores_resized_bytes_with_their_original_size(folder, tmp_path):
    root, files = folder
    out = tmp_path / "resized"
    folder_build(out, root, resize=UNIFORM)
    manifest = read_manifest(str(out)).set_index("source_id")
    samples = shard_samples(out)
    assert sorted(manifest.index) == sorted(files)
    for name, row in manifest.iterrows():
        original = read_header(files[name])
        side = target_side(row["key"], UNIFORM)
        data = samples[row["key"]][row["format"]]
        metadata = json.loads(samples[row["key"]]["json"])
        assert (row["original_width"], row["original_height"]) == (original.width, original.height)
        assert hashlib.sha256(data).hexdigest() == row["sha256"] and len(data) == row["bytes"]
        assert extra_fields(row)["resized"] is metadata["resized"]
        if min(original.width, original.height) <= side:  # kept as it was: the original bytes
            assert data == files[name] and metadata["resized"] is False
            assert (row["width"], row["height"]) == (original.width, original.height)
        else:
            assert metadata["resized"] is True and row["format"] == "png" and row["orientation"] == 1
            assert min(row["width"], row["height"]) == side
            assert (row["width"], row["height"]) == resized_size(original.width, original.height, side)
    assert manifest.loc["d.jpg", "key"] and not extra_fields(manifest.loc["d.jpg"])["resized"]
    assert (
        extra_fields(manifest.loc["b.jpg"])["resized"]
        and manifest.loc["b.jpg", "height"] > manifest.loc["b.jpg", "width"]
    )
    report = verify(str(out))
    assert report.ok, report.problems

    again = tmp_path / "again"  # the same settings build the same bytes: deterministic, so resumable
    folder_build(again, root, resize=UNIFORM)
    assert read_manifest(str(again))["sha256"].tolist() == read_manifest(str(out))["sha256"].tolist()


def test_a_build_without_resize_stores_the_original_bytes_and_metadata_as_before(folder, tmp_path):
    root, files = folder
    out = tmp_path / "plain"
    folder_build(out, root)
    manifest = read_manifest(str(out)).set_index("key")
    samples = shard_samples(out)
    expected_fields = {n for n in MANIFEST_COLUMNS if n not in ("shard", "extra", "caption")} | set(PROBE_NAMES)
    for key, sample in samples.items():
        row = manifest.loc[key]
        metadata = json.loads(sample["json"])
        assert sample[row["format"]] == files[row["source_id"]]
        assert set(metadata) == expected_fields  # no `resized`: the metadata of a build without the stage
        assert (metadata["original_width"], metadata["original_height"]) == (metadata["width"], metadata["height"])
    assert len(samples) == len(files) and verify(str(out)).ok


def test_the_build_command_takes_resize_and_subset_flags(folder, tmp_path):
    root, files = folder
    out = tmp_path / "cli"
    command = ["build", "--source", "folder", "--folder", str(root), "--out", str(out), "--workers", "0"]
    command += ["--resize-mode", "fixed", "--resize-size", "150", "--resize-format", "jpg", "--resize-quality", "90"]
    command += ["--subset-count", "4", "--subset-seed", "7", "--no-progress"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    manifest = read_manifest(str(out))
    chosen = {
        c.source_id
        for c in subset_candidates(
            [Candidate(source="folder", source_id=n, url="") for n in sorted(files)], SubsetSettings(count=4, seed=7)
        )
    }
    assert set(manifest["source_id"]) == chosen
    assert (manifest[["width", "height"]].min(axis=1) <= 150).all()
    resized = manifest[manifest["original_width"] != manifest["width"]]
    assert len(resized) > 0 and (resized["format"] == "jpg").all()
    bad = [
        "build",
        "--source",
        "folder",
        "--folder",
        str(root),
        "--out",
        str(tmp_path / "bad"),
        "--resize-mode",
        "fixed",
    ]
    bad = CliRunner().invoke(app, bad, env={"COLUMNS": "200"})
    assert bad.exit_code != 0 and "--resize-size" in bad.output
