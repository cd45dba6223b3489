"""`anyres-data build --source flickr ...` end to end, against the Flickr stand-in on 127.0.0.1."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from anyres_data.cli.app import app
from anyres_data.dataset import load_info, read_manifest, read_rejects
from anyres_data.dataset.verify import verify
from tests.support.flickr_server import TEST_KEY, FlickrServer

LICENSES = ("4", "5", "9", "10")
MIN_SIZE = 600


@pytest.fixture(scope="module")
def server():
    with FlickrServer(n_photos=160, seed=5, min_side=300, max_side=1400) as s:
        yield s


def test_the_readme_command_builds_a_licensed_high_resolution_set(server, tmp_path, monkeypatch):
    monkeypatch.setenv("FLICKR_API_KEY", TEST_KEY)
    out = tmp_path / "church-hr"
    command = ["build", "--source", "flickr", "--query", "church", "--license", ",".join(LICENSES)]
    command += ["--min-size", str(MIN_SIZE), "--out", str(out), "--api-endpoint", server.endpoint]
    command += ["--api-calls-per-hour", "1000000", "--workers", "0", "--threads", "4", "--shard-size", "8"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output

    expected = server.matching(text="church", licenses=LICENSES)
    info = load_info(str(out)).data
    manifest, rejects = read_manifest(str(out)), read_rejects(str(out))
    assert info["counts"]["candidates"] == len(expected) > 0
    assert set(manifest["source_id"]) | set(rejects["source_id"]) == {p.id for p in expected}
    assert len(manifest) > 0 and set(rejects["reason"]) <= {"below_min_size", "near_duplicate"}
    assert set(manifest["license"]) <= set(LICENSES)
    assert (manifest[["width", "height"]].min(axis=1) >= MIN_SIZE).all()
    for row in manifest.itertuples():  # the original bytes of the largest size the API offered
        assert server.photo_file(urlsplit(row.url).path) is not None
    small = [p for p in expected if p.has_original and min(p.width, p.height) < MIN_SIZE]
    early = rejects[rejects["shard"].isna() & (rejects["reason"] == "below_min_size")]
    assert {p.id for p in small} <= set(early["source_id"])  # rejected from o_dims, never downloaded
    downloaded = {urlsplit(c.path).path.split("/")[-1].split("_")[0] for c in server.calls if "/photos/" in c.path}
    assert not downloaded & {p.id for p in small}
    assert verify(str(out)).ok
    for path in out.rglob("*"):  # the API key is never written anywhere
        if path.is_file():
            assert TEST_KEY.encode() not in path.read_bytes(), path


def test_a_missing_api_key_is_a_clear_error(server, tmp_path, monkeypatch):
    monkeypatch.delenv("FLICKR_API_KEY", raising=False)
    command = ["build", "--source", "flickr", "--query", "church", "--out", str(tmp_path / "x")]
    command += ["--api-endpoint", server.endpoint, "--workers", "0"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2 and "FLICKR_API_KEY" in result.output


def flickr_command(server, out, *extra: str) -> list[str]:
    command = ["build", "--source", "flickr", "--query", "church", "--out", str(out), "--api-endpoint", server.endpoint]
    return [*command, "--api-calls-per-hour", "1000000", "--workers", "0", "--no-progress", *extra]


def test_an_answer_nested_200000_deep_is_a_clear_error(server, tmp_path, monkeypatch):
    monkeypatch.setenv("FLICKR_API_KEY", TEST_KEY)
    server.fault("deep_json")
    result = CliRunner().invoke(app, flickr_command(server, tmp_path / "deep"))
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output  # no RecursionError
    assert "nested too deeply" in result.output and "--api-endpoint" in result.output


def test_malformed_photo_entries_are_counted_rejections(server, tmp_path, monkeypatch):
    monkeypatch.setenv("FLICKR_API_KEY", TEST_KEY)
    server.fault("malformed_photos")  # a number, a string, null, a list and an object without an id
    out = tmp_path / "malformed"
    result = CliRunner().invoke(app, flickr_command(server, out, "--max-photos", "9", "--threads", "2"))
    assert result.exit_code == 0, result.output
    rejects = read_rejects(str(out))
    malformed = rejects[rejects["reason"] == "malformed"]
    assert len(malformed) == 5 and load_info(str(out)).data["counts"]["candidates"] == 9
    assert malformed["message"].str.contains("search result").all()
    assert len(read_manifest(str(out))) >= 1 and verify(str(out)).ok
