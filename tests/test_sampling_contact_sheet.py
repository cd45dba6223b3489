import numpy as np
import pytest
import typer
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from anyres_data.cli import app as cli
from anyres_data.cli.sample import sample_command
from anyres_data.sampling import SamplerSettings
from anyres_data.sampling.contact_sheet import PAD, WINDOW_COLOUR, contact_sheet
from tests.support.photos import encode, jpeg_with_orientation, structured_image


@pytest.fixture
def dataset(tmp_path):
    samples = []
    for i in range(5):
        pixels = structured_image(240 + 30 * i, 180, seed=i)
        data = jpeg_with_orientation(pixels, 6, quality=90) if i == 1 else encode(pixels, "JPEG", quality=90)
        samples.append({"__key__": f"k{i}", "jpg": data, "json": b"{}"})
    samples.append({"__key__": "broken", "jpg": b"nope", "json": b"{}"})
    (tmp_path / "shards").mkdir()
    with wds.TarWriter(str(tmp_path / "shards" / "d-000000.tar")) as sink:
        for sample in samples:
            sink.write(sample)
    return tmp_path


def test_contact_sheet_lays_out_cells_and_draws_windows(dataset):
    settings = SamplerSettings(p=64, global_prob=0.0)
    sheet, skipped = contact_sheet(str(dataset), settings=settings, n=6, columns=3)
    tile = 64
    cell_w, cell_h = 2 * tile + 3 * PAD, tile + 34 + 2 * PAD
    assert sheet.size == (3 * cell_w, 2 * cell_h)  # 5 readable samples in 3 columns
    assert skipped["unreadable"] == 1
    pixels = np.asarray(sheet)
    red = np.all(pixels == WINDOW_COLOUR, axis=-1)
    for i in range(5):  # every cell has its patch window drawn on the thumbnail
        x, y = (i % 3) * cell_w, (i // 3) * cell_h
        assert red[y : y + tile + 2 * PAD, x : x + tile + 2 * PAD].sum() > 20


def test_sample_command_writes_png(dataset, tmp_path):
    out = tmp_path / "sheet.png"
    assert any(c.name == "sample" for c in cli.app.registered_commands)
    app = typer.Typer()  # a group of our own, whatever else cli.app holds by now
    app.command("sample")(sample_command)
    app.callback()(lambda: None)
    args = ["sample", str(dataset), "--n", "4", "--p", "48", "--out", str(out), "--crop", "centre"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    with Image.open(out) as image:
        assert image.size == (4 * (2 * 48 + 3 * PAD), 48 + 34 + 2 * PAD)
    bad = CliRunner().invoke(app, ["sample", str(dataset), "--size-distribution", "gaussian"])
    assert bad.exit_code != 0 and "size_distribution" in bad.output
