"""The URL-list source on real list files of every format (written with pandas / by hand)."""

import gzip
import json

import pandas as pd
import pytest

from anyres_data.sources.urls import INPUT_FORMATS, UrlListSettings, iter_url_list, url_source_id

ROWS = [
    {
        "URL": "https://a.example/1.jpg",
        "TEXT": "a church",
        "WIDTH": 4000,
        "HEIGHT": 3000,
        "LICENSE": "CC-BY",
        "sim": 0.3,
    },
    {"URL": "https://a.example/2.png", "TEXT": "a bird", "WIDTH": 800, "HEIGHT": 600, "LICENSE": "CC0", "sim": 0.5},
    {"URL": "https://a.example/1.jpg", "TEXT": "again", "WIDTH": 4000, "HEIGHT": 3000, "LICENSE": "CC-BY", "sim": 0.1},
    {"URL": "", "TEXT": "no url", "WIDTH": 1, "HEIGHT": 1, "LICENSE": "", "sim": 0.0},
    {"URL": "ftp://old.example/3.jpg", "TEXT": "ftp", "WIDTH": None, "HEIGHT": None, "LICENSE": None, "sim": 0.9},
    {"URL": " https://a.example/4.webp ", "TEXT": None, "WIDTH": 640, "HEIGHT": 480, "LICENSE": "CC-BY", "sim": 1.0},
]
EXPECTED_URLS = [
    "https://a.example/1.jpg",
    "https://a.example/2.png",
    "ftp://old.example/3.jpg",
    "https://a.example/4.webp",
]


def write_list(df: pd.DataFrame, path, fmt: str) -> None:
    base = fmt.removesuffix(".gz")
    opener = gzip.open if fmt.endswith(".gz") else open
    if base == "parquet":
        df.to_parquet(path, index=False)
        return
    with opener(path, "wt", encoding="utf-8") as f:
        if base == "txt":
            f.write("\n".join(df["URL"]) + "\n")
        elif base in ("csv", "tsv"):
            df.to_csv(f, sep="," if base == "csv" else "\t", index=False)
        elif base == "jsonl":
            for row in df.to_dict("records"):
                f.write(json.dumps(row) + "\n")
        else:
            json.dump(df.to_dict("records"), f)


@pytest.mark.parametrize("fmt", INPUT_FORMATS)
def test_every_format_with_extra_columns_and_dedup(tmp_path, fmt):
    df = pd.DataFrame(ROWS)
    path = tmp_path / f"list.{fmt}"
    write_list(df, path, fmt)
    if fmt.startswith("txt"):
        settings = UrlListSettings(url_list=str(path))
    else:
        settings = UrlListSettings(
            url_list=str(path),
            url_col="URL",
            caption_col="TEXT",
            save_additional_columns=("sim", "LICENSE"),
            license_col="LICENSE",
            width_col="WIDTH",
            height_col="HEIGHT",
        )
    got = list(iter_url_list(settings))
    assert [c.url for c in got] == EXPECTED_URLS  # the repeat and the empty row are gone, spaces stripped
    assert [c.source_id for c in got] == [url_source_id(u) for u in EXPECTED_URLS]
    assert {c.source for c in got} == {"urls"}
    for c in got:
        json.dumps(c.extra)
    if fmt.startswith("txt"):
        assert all(c.extra == {} and c.width is None and c.license is None for c in got)
        return
    first, second, ftp, last = got
    assert (first.width, first.height, first.license) == (4000, 3000, "CC-BY")
    assert first.extra == {"sim": 0.3, "LICENSE": "CC-BY", "caption": "a church"}
    assert second.extra["caption"] == "a bird" and second.extra["sim"] == 0.5
    assert (ftp.width, ftp.height, ftp.license, ftp.extra["caption"]) == (None, None, None, "ftp")
    assert last.extra["caption"] is None and (last.width, last.height) == (640, 480)


def test_folder_and_glob_of_lists_dedup_across_files(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    write_list(pd.DataFrame(ROWS[:2]), lists / "b.csv", "csv")
    write_list(pd.DataFrame(ROWS[2:]), lists / "a.parquet", "parquet")
    (lists / "notes.md").write_text("not a list")
    got = [c.url for c in iter_url_list(UrlListSettings(url_list=str(lists), url_col="URL"))]
    # a.parquet first (sorted), then b.csv whose first URL was already seen in a.parquet
    assert got == [
        "https://a.example/1.jpg",
        "ftp://old.example/3.jpg",
        "https://a.example/4.webp",
        "https://a.example/2.png",
    ]
    globbed = [c.url for c in iter_url_list(UrlListSettings(url_list=str(lists / "*.csv"), url_col="URL"))]
    assert globbed == ["https://a.example/1.jpg", "https://a.example/2.png"]


def test_any_fsspec_location(tmp_path):
    import fsspec

    with fsspec.open("memory://anyres-test/list.jsonl", "w") as f:
        f.write('{"url": "https://m.example/x.jpg", "key": "k1"}\n{"url": "https://m.example/y.jpg", "key": "k2"}\n')
    settings = UrlListSettings(url_list="memory://anyres-test/list.jsonl", save_additional_columns=("key",))
    got = list(iter_url_list(settings))
    assert [c.url for c in got] == ["https://m.example/x.jpg", "https://m.example/y.jpg"]
    assert got[0].extra == {"source_key": "k1"}  # 'key' is a name the build writes itself


def test_source_ids_do_not_depend_on_list_order(tmp_path):
    write_list(pd.DataFrame(ROWS), tmp_path / "a.csv", "csv")
    write_list(pd.DataFrame(ROWS[::-1]), tmp_path / "b.csv", "csv")
    a = {c.url: c.source_id for c in iter_url_list(UrlListSettings(url_list=str(tmp_path / "a.csv"), url_col="URL"))}
    b = {c.url: c.source_id for c in iter_url_list(UrlListSettings(url_list=str(tmp_path / "b.csv"), url_col="URL"))}
    assert a == b


def test_bad_input_is_a_clear_error(tmp_path):
    write_list(pd.DataFrame(ROWS), tmp_path / "l.csv", "csv")
    with pytest.raises(ValueError, match="needs --url-list"):
        iter_url_list(UrlListSettings())
    with pytest.raises(ValueError, match="no such file"):
        iter_url_list(UrlListSettings(url_list=str(tmp_path / "missing.csv")))
    with pytest.raises(ValueError, match=r"no column\(s\) 'url'; its columns are URL, TEXT"):
        list(iter_url_list(UrlListSettings(url_list=str(tmp_path / "l.csv"))))
    (tmp_path / "l.xlsx").write_bytes(b"PK")
    with pytest.raises(ValueError, match="give --input-format"):
        iter_url_list(UrlListSettings(url_list=str(tmp_path / "l.xlsx")))
    (tmp_path / "l.txt").write_text("https://x/1.jpg\n")
    with pytest.raises(ValueError, match="a txt list has URLs only"):
        list(iter_url_list(UrlListSettings(url_list=str(tmp_path / "l.txt"), caption_col="TEXT")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no URL list files"):
        iter_url_list(UrlListSettings(url_list=str(empty)))


def test_input_format_overrides_the_extension(tmp_path):
    path = tmp_path / "urls.data"
    path.write_text("url\thint\nhttps://t.example/1.jpg\tx\n")
    got = list(
        iter_url_list(UrlListSettings(url_list=str(path), input_format="tsv", save_additional_columns=("hint",)))
    )
    assert [(c.url, c.extra) for c in got] == [("https://t.example/1.jpg", {"hint": "x"})]
