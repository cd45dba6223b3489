"""Header probing, decode check and filters on the bad-input corpus, one file at a time."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import pyvips

from anyres_data.candidate import Candidate
from anyres_data.filters import FilterSettings, check_candidate, check_header
from anyres_data.probe import check_complete, decode_thumbnail, read_header
from anyres_data.rejects import REASONS, Rejected
from tests.support.corpus import CORPUS_FILTERS, file_cases, header_bomb_jpeg, header_bomb_png
from tests.support.photos import encode, structured_image

CASES = file_cases()
PER_FILE = {"duplicate": "kept", "near_duplicate": "kept"}  # found over the whole dataset, not per file


def outcome(data: bytes, filters: FilterSettings = CORPUS_FILTERS) -> tuple:
    try:
        header = read_header(data)
        check_header(header, filters)
        grey = decode_thumbnail(data, header)
    except Rejected as rejected:
        assert rejected.reason in REASONS
        return (rejected.reason,)
    assert grey.shape == (32, 32) and grey.dtype == np.float32 and 0 <= grey.min() <= grey.max() <= 255
    return ("kept", (header.width, header.height), header.format)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_corpus_file_reaches_its_outcome(case):
    expect = PER_FILE.get(case.expect, case.expect)
    got = outcome(case.data)
    assert got[0] == expect, got
    if case.expect == "kept":
        assert got[1:] == (case.size, case.fmt)


def test_header_facts_of_unusual_images():
    names = ("exif-rotated", "cmyk", "png16", "grey", "palette-alpha", "animated-gif", "jpeg")
    by_name = {c.name: read_header(c.data) for c in CASES if c.name in names}
    rotated = by_name["exif-rotated"]
    assert (rotated.orientation, rotated.stored_width, rotated.stored_height) == (6, 640, 480)
    assert (rotated.width, rotated.height) == (480, 640)
    assert (by_name["cmyk"].bands, by_name["cmyk"].interpretation) == (4, "cmyk")
    assert (by_name["png16"].bit_depth, by_name["png16"].interpretation) == (16, "rgb16")
    assert (by_name["grey"].bands, by_name["grey"].interpretation) == (1, "b-w")
    assert by_name["palette-alpha"].bands == 4
    assert by_name["animated-gif"].n_pages == 3
    assert not by_name["jpeg"].interlaced
    assert read_header(encode(structured_image(64, 64, seed=0), "JPEG", progressive=True)).interlaced


def peak_rss_growth_mb(tmp_path, data: bytes, call: str) -> float:
    """How much a fresh Python's peak resident memory grows (MB) while it runs `call` on `data`."""
    (tmp_path / "image").write_bytes(data)
    script = tmp_path / "peak.py"
    script.write_text(
        "import resource, sys\n"
        "from anyres_data.probe import decode_thumbnail, read_header\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"{call}\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    )
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "image")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.split()[-1])


def test_bombs_are_rejected_from_the_header_without_decoding(tmp_path):
    for data, size in ((header_bomb_jpeg(65_000, 65_000), 65_000), (header_bomb_png(100_000, 100_000), 100_000)):
        header = read_header(data)
        assert (header.stored_width, header.stored_height) == (size, size)
        with pytest.raises(Rejected, match="too_many_pixels"):
            check_header(header, FilterSettings())
    assert peak_rss_growth_mb(tmp_path, header_bomb_png(100_000, 100_000), "read_header(data)") < 50  # pixels: 30 GB


def test_decode_check_of_a_large_jpeg_stays_far_below_its_decoded_size(tmp_path):
    width, height = 9000, 6000  # 162 MB of RGB pixels
    noise = pyvips.Image.gaussnoise(width // 8, height // 8, sigma=40, mean=128).cast("uchar")
    image = noise.resize(8, kernel="linear").bandjoin([noise.resize(8), noise.resize(8).invert()])
    data = image.jpegsave_buffer(Q=85)
    growth = peak_rss_growth_mb(tmp_path, data, "decode_thumbnail(data, read_header(data))")
    assert growth < width * height * 3 / 1e6 / 4, growth


def test_truncation_is_caught_at_every_strictness():
    data = encode(structured_image(400, 300, seed=4), "PNG")[:-2000]
    for fail_on in ("truncated", "error", "warning"):
        with pytest.raises(Rejected, match="truncated"):
            decode_thumbnail(data, read_header(data), fail_on=fail_on)


def test_filters_before_download_use_what_the_source_knows():
    settings = FilterSettings(min_size=1024, license=("4", "5"))
    ok = Candidate("flickr", "1", "https://x/1.jpg", width=2048, height=1536, license="4")
    check_candidate(ok, settings)
    check_candidate(dataclasses.replace(ok, width=None, height=None), settings)  # unknown size: checked later
    for candidate, reason in [
        (dataclasses.replace(ok, license="0"), "license"),
        (dataclasses.replace(ok, license=None), "license"),
        (dataclasses.replace(ok, width=2048, height=1000), "below_min_size"),
        (dataclasses.replace(ok, width=8000, height=1024), "extreme_aspect"),
        (dataclasses.replace(ok, width=30000, height=20000), "too_many_pixels"),
    ]:
        with pytest.raises(Rejected) as info:
            check_candidate(candidate, settings)
        assert info.value.reason == reason
    check_candidate(dataclasses.replace(ok, license=None), FilterSettings())  # no license filter: any


def test_min_size_applies_to_the_displayed_shorter_side():
    rotated = next(c for c in CASES if c.name == "exif-rotated")  # stored 640x480, displayed 480x640
    assert outcome(rotated.data, FilterSettings(min_size=480))[0] == "kept"
    assert outcome(rotated.data, FilterSettings(min_size=481))[0] == "below_min_size"


def test_images_that_decode_whole_are_limited_by_their_decoded_size():
    # the 2.8 MB file: an interlaced 16-bit RGBA PNG of 19,000 x 19,000 (361 MP, under --max-pixels)
    header = read_header(header_bomb_png(19_000, 19_000, bit_depth=16, colour_type=6, interlace=1))
    assert (header.interlaced, header.bands, header.bit_depth) == (True, 4, 16)
    with pytest.raises(Rejected, match="too_large_to_decode") as info:
        check_header(header, FilterSettings())
    assert "interlaced png" in info.value.message and "MiB" in info.value.message
    # the same size, not interlaced, decodes in strips: only the pixel limit applies
    check_header(read_header(header_bomb_png(19_000, 19_000, bit_depth=16, colour_type=6)), FilterSettings())
    # real files: an interlaced PNG and a progressive JPEG count, a baseline JPEG does not
    pixels = structured_image(600, 400, seed=3)
    small = FilterSettings(max_decode_bytes=600 * 400 * 3 - 1)
    interlaced = pyvips.Image.new_from_array(pixels).copy(interpretation="srgb").pngsave_buffer(interlace=True)
    progressive = encode(pixels, "JPEG", progressive=True, subsampling=0)  # 4:4:4: 2 bytes per sample
    for data, estimate in ((interlaced, 2 * 600 * 400 * 3), (progressive, 2 * 600 * 400 * 3)):
        header = read_header(data)
        assert header.decode_bytes == estimate
        with pytest.raises(Rejected, match="too_large_to_decode"):
            check_header(header, small)
    assert read_header(encode(pixels, "JPEG")).decode_bytes == 0
    check_header(read_header(encode(pixels, "JPEG")), small)


def test_a_non_image_is_named_by_its_kind_and_its_bytes_are_never_quoted():
    secret = b"root:x:0:0:root:/root:/bin/bash\nsecret-token-123\n"
    for data, kind in ((secret, "text"), (b"<!DOCTYPE html><html>private</html>", "an HTML page")):
        with pytest.raises(Rejected) as info:
            read_header(data)
        assert info.value.reason == "not_an_image" and kind in info.value.message
        assert "root" not in info.value.message and "private" not in info.value.message


def test_a_jpeg_whose_second_half_is_zeroed_misses_its_end_marker():
    data = bytearray(encode(structured_image(400, 300, seed=5), "JPEG", quality=90))
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    header = read_header(bytes(data))  # the header is intact
    with pytest.raises(Rejected, match="truncated"):
        check_complete(bytes(data), header)
    check_complete(encode(structured_image(400, 300, seed=5), "JPEG"), header)
