"""SourceSettings as CLI flags and YAML, and iter_candidates dispatching to each source."""

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from anyres_data.cli.flags import flat_fields, typer_options
from anyres_data.settings import from_dict, to_dict
from anyres_data.sources import SOURCE_NAMES, SourceSettings, iter_candidates
from anyres_data.sources.demo import DemoSettings
from anyres_data.sources.flickr import FlickrSettings


def test_flags_are_unique_and_read_well():
    flags = sorted(name for name, *_ in flat_fields(SourceSettings))
    assert len(flags) == len(set(flags))
    expected = {"query", "tags", "tag_mode", "min_upload_date", "api_key_file", "api_calls_per_hour", "url_list"}
    expected |= {"input_format", "url_col", "caption_col", "save_additional_columns", "folder", "demo_count"}
    assert expected <= set(flags)
    assert not any(f == "key" or f.endswith("api_key") for f in flags)  # the key itself is never a flag


def test_cli_and_yaml_build_the_same_settings(tmp_path):
    seen = {}

    def build(settings: SourceSettings) -> None:
        seen["settings"] = settings

    app = typer.Typer()
    app.command()(typer_options(SourceSettings, build))
    app.command("other")(lambda: None)
    args = ["build", "--query", "church", "--tags", "nave,apse", "--tag-mode", "all", "--api-calls-per-hour", "1200"]
    args += ["--url-list", "lists/", "--save-additional-columns", "a,b", "--folder", "imgs", "--no-folder-tars"]
    args += ["--demo-count", "5", "--demo-formats", "png,webp", "--api-key-file", "secret.key"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    s = seen["settings"]
    assert (s.flickr.query, s.flickr.tags, s.flickr.tag_mode, s.flickr.api_calls_per_hour) == (
        "church",
        ("nave", "apse"),
        "all",
        1200.0,
    )
    assert s.flickr.api_key_file == Path("secret.key")
    assert (s.urls.url_list, s.urls.save_additional_columns) == ("lists/", ("a", "b"))
    assert (s.folder.folder, s.folder.folder_tars) == ("imgs", False)
    assert (s.demo.count, s.demo.formats) == (5, ("png", "webp"))
    assert from_dict(SourceSettings, to_dict(s)) == s
    result = CliRunner().invoke(app, ["build", "--tag-mode", "some"])
    assert result.exit_code != 0 and "not one of" in result.output


def test_iter_candidates_dispatches(tmp_path):
    demo = list(iter_candidates("demo", SourceSettings(demo=DemoSettings(count=3))))
    assert [c.source for c in demo] == ["demo"] * 3
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "l.txt").write_text("https://e.example/1.jpg\n")
    folder = list(iter_candidates("folder", from_dict(SourceSettings, {"folder": {"folder": str(tmp_path)}})))
    assert [c.source_id for c in folder] == ["x.png"]
    urls = list(iter_candidates("urls", from_dict(SourceSettings, {"urls": {"url_list": str(tmp_path / "l.txt")}})))
    assert [c.url for c in urls] == ["https://e.example/1.jpg"]
    with pytest.raises(ValueError, match="needs --query"):
        iter_candidates("flickr", SourceSettings(flickr=FlickrSettings()))
    with pytest.raises(ValueError, match="unknown source 'ftp'"):
        iter_candidates("ftp", SourceSettings())  # type: ignore[arg-type]
    assert SOURCE_NAMES == ("flickr", "urls", "folder", "demo")
