"""The folder source on real files: a plain folder, img2dataset's "files" layout and its WebDataset tars."""

import io
import json
import os
import tarfile

import fsspec
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from anyres_data.sources.folder import FolderSettings, TarReader, iter_folder, split_tar_url


def image_bytes(fmt: str, size=(24, 16), seed=0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def read(url: str) -> bytes:
    with fsspec.open(url, "rb") as f:
        return f.read()


def test_plain_folder_recursive_sorted(tmp_path):
    files = {
        "b/z.png": image_bytes("PNG", seed=1),
        "a.JPG": image_bytes("JPEG", seed=2),
        "b/a/deep.webp": image_bytes("WEBP", seed=3),
        "b/readme.txt": b"not an image",
        ".hidden/x.bin": b"\0",
        "c.tiff": image_bytes("TIFF", seed=4),
        "d.v2.edited.png": image_bytes("PNG", seed=5),  # dots in a file name: the extension is after the last
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    got = list(iter_folder(FolderSettings(folder=str(tmp_path))))
    assert [c.source_id for c in got] == ["a.JPG", "b/a/deep.webp", "b/z.png", "c.tiff", "d.v2.edited.png"]
    for c in got:
        assert c.source == "folder" and c.url.startswith("file://")
        assert read(c.url) == files[c.source_id]
        assert c.extra == {} and c.width is None
    assert len({c.key for c in got}) == 5
    only_png = list(iter_folder(FolderSettings(folder=str(tmp_path), folder_extensions=("png",))))
    assert [c.source_id for c in only_png] == ["b/z.png", "d.v2.edited.png"]


def img2dataset_record(i: int) -> dict:
    """A sample's JSON as img2dataset writes it (with save_additional_columns=['license', 'similarity'])."""
    return {
        "url": f"https://origin.example/{i}.jpg",
        "key": f"{i:09d}",
        "status": "success",
        "error_message": None,
        "width": 24,
        "height": 16,
        "original_width": 2400,
        "original_height": 1600,
        "exif": "{}",
        "sha256": "ab" * 32,
        "caption": f"caption {i}",
        "license": "CC-BY-4.0",
        "similarity": 0.25 + i,
    }


def test_img2dataset_files_layout(tmp_path):
    shard = tmp_path / "00000"
    shard.mkdir()
    for i in range(3):
        (shard / f"{i:09d}.jpg").write_bytes(image_bytes("JPEG", seed=i))
        (shard / f"{i:09d}.json").write_text(json.dumps(img2dataset_record(i)))
        (shard / f"{i:09d}.txt").write_text(f"caption {i}")
    (shard / "000000003.jpg").write_bytes(image_bytes("JPEG", seed=3))  # no sidecars
    (shard / "000000003.txt").write_text("only a caption")
    (tmp_path / "00000.parquet").write_bytes(b"PAR1")
    (tmp_path / "00000_stats.json").write_text("{}")
    got = list(iter_folder(FolderSettings(folder=str(tmp_path))))
    assert [c.source_id for c in got] == [f"00000/{i:09d}.jpg" for i in range(4)]
    first = got[0]
    assert first.license == "CC-BY-4.0"
    assert first.original_url == "https://origin.example/0.jpg"  # the original URL, kept
    assert (first.original_width, first.original_height) == (2400, 1600)  # the size before img2dataset resized
    assert first.extra == {  # width/height (the copy's size) are measured again by the build
        "source_key": "000000000",
        "source_sha256": "ab" * 32,
        "caption": "caption 0",
        "similarity": 0.25,
    }
    assert got[3].extra == {"caption": "only a caption"} and got[3].license is None
    assert got[3].original_url is None and got[3].original_width is None
    assert read(got[2].url) == (shard / "000000002.jpg").read_bytes()


def write_webdataset_tar(path, n: int) -> dict[str, bytes]:
    """A tar as img2dataset's webdataset writer makes it: KEY.jpg, KEY.txt, KEY.json per sample, in order."""
    images = {}
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            key = f"{i:09d}"
            ext = "png" if i % 5 == 4 else "jpg"
            data = image_bytes("PNG" if ext == "png" else "JPEG", seed=i)
            images[f"{key}.{ext}"] = data
            record = json.dumps(img2dataset_record(i)).encode()
            for name, payload in ((f"{key}.{ext}", data), (f"{key}.txt", b"caption"), (f"{key}.json", record)):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return images


def test_img2dataset_webdataset_tars(tmp_path):
    first = write_webdataset_tar(tmp_path / "00000.tar", 6)
    second = write_webdataset_tar(tmp_path / "00001.tar", 2)
    got = list(iter_folder(FolderSettings(folder=str(tmp_path))))
    assert [c.source_id for c in got] == [f"00000.tar/{n}" for n in first] + [f"00001.tar/{n}" for n in second]
    c = got[4]
    assert c.url.startswith("tar://000000004.png::file://") and c.url.endswith("/00000.tar")
    assert c.original_url == "https://origin.example/4.jpg" and c.extra["caption"] == "caption 4"
    assert c.license == "CC-BY-4.0"
    assert read(c.url) == first["000000004.png"]  # plain fsspec opens the member URL
    with TarReader(max_open=1) as reader:
        for cand in got:
            tar_name, member = cand.source_id.split("/")
            assert reader.read(cand.url) == (first if tar_name == "00000.tar" else second)[member]
        with pytest.raises(KeyError, match="no member"):
            reader.read(got[0].url.replace("000000000.jpg", "999.jpg"))
        with pytest.raises(ValueError, match="not a tar member URL"):
            reader.read("file:///x.tar")
    assert not list(iter_folder(FolderSettings(folder=str(tmp_path), folder_tars=False)))
    single = list(iter_folder(FolderSettings(folder=str(tmp_path / "00001.tar"))))
    assert [c.source_id for c in single] == ["00001.tar/000000000.jpg", "00001.tar/000000001.jpg"]


def test_any_fsspec_location():
    fs = fsspec.filesystem("memory")
    fs.pipe({"/anyres-folder/x/1.png": image_bytes("PNG", seed=5), "/anyres-folder/0.jpg": image_bytes("JPEG")})
    got = list(iter_folder(FolderSettings(folder="memory://anyres-folder")))
    assert [(c.source_id, c.url) for c in got] == [
        ("0.jpg", "memory:///anyres-folder/0.jpg"),
        ("x/1.png", "memory:///anyres-folder/x/1.png"),
    ]
    assert read(got[1].url) == image_bytes("PNG", seed=5)


def test_bad_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="needs --folder"):
        iter_folder(FolderSettings())
    with pytest.raises(ValueError, match="no such folder"):
        iter_folder(FolderSettings(folder=str(tmp_path / "missing")))


# ---------------------------------------------------------------------------------------------- hostile folders


def test_only_regular_files_are_read_a_named_pipe_is_a_named_rejection(tmp_path):
    (tmp_path / "a.jpg").write_bytes(image_bytes("JPEG"))
    os.mkfifo(tmp_path / "pipe.jpg")
    os.mkfifo(tmp_path / "pipe.tar")
    (tmp_path / "z.png").write_bytes(image_bytes("PNG"))
    os.mkfifo(tmp_path / "z.json")  # a sidecar that is a pipe is not read either
    got = list(iter_folder(FolderSettings(folder=str(tmp_path))))  # would block on opening a pipe
    assert [(c.source_id, c.error and c.error[0]) for c in got] == [
        ("a.jpg", None),
        ("pipe.jpg", "read_error"),
        ("pipe.tar", "read_error"),
        ("z.png", None),
    ]
    assert "not a regular file" in got[1].error[1] and got[3].extra == {}


def test_a_bad_or_truncated_tar_is_one_named_rejection_after_the_members_it_holds(tmp_path):
    members = write_webdataset_tar(tmp_path / "b-good.tar", 3)
    whole = (tmp_path / "b-good.tar").read_bytes()
    (tmp_path / "a-random.tar").write_bytes(np.random.default_rng(0).bytes(5000))
    with tarfile.open(tmp_path / "b-good.tar") as tar:  # cut in the middle of the last image's bytes
        last = tar.getmember(list(members)[-1])
    (tmp_path / "c-cut.tar").write_bytes(whole[: last.offset_data + last.size // 2])
    got = list(iter_folder(FolderSettings(folder=str(tmp_path))))
    ids = [c.source_id for c in got]
    assert ids[0] == "a-random.tar" and got[0].error[0] == "read_error" and "a-random.tar" in got[0].error[1]
    assert ids[1:4] == [f"b-good.tar/{n}" for n in members] and not any(c.error for c in got[1:4])
    cut = [c for c in got if c.source_id.startswith("c-cut.tar")]
    assert cut[-1].source_id == "c-cut.tar" and cut[-1].error[0] == "read_error"
    assert [c.source_id for c in cut[:-1]] == [f"c-cut.tar/{n}" for n in members]  # their headers read
    with TarReader() as reader:
        assert reader.read(cut[0].url) == members["000000000.jpg"]
        with pytest.raises(OSError, match="cut short"):
            reader.read(cut[-2].url)  # the member whose bytes the cut went through


def test_double_colons_in_member_and_file_names_are_names_not_url_chains(tmp_path):
    elsewhere = tmp_path / "elsewhere.jpg"
    elsewhere.write_bytes(image_bytes("JPEG", seed=9))
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a::b.jpg").write_bytes(image_bytes("JPEG", seed=1))
    hostile = f"x::{elsewhere}"  # a member name that is also "MEMBER::PATH of an existing file"
    inside = image_bytes("JPEG", seed=2)
    with tarfile.open(folder / "s.tar", "w") as tar:
        info = tarfile.TarInfo(hostile)
        info.size = len(inside)
        tar.addfile(info, io.BytesIO(inside))
    got = {c.source_id: c for c in iter_folder(FolderSettings(folder=str(folder)))}
    assert set(got) == {"a::b.jpg", f"s.tar/{hostile}"}
    assert split_tar_url(got[f"s.tar/{hostile}"].url) == (hostile, f"file://{folder}/s.tar")
    with TarReader() as reader:
        assert reader.read(got[f"s.tar/{hostile}"].url) == inside


def test_an_img2dataset_output_builds_with_its_urls_original_sizes_and_captions(tmp_path):
    """img2dataset's "files" layout (resized to 24×16 from 96×64) and its tars, through a whole build."""
    import webdataset as wds

    from anyres_data.build import BuildSettings, build
    from anyres_data.dataset import extra_fields, read_manifest
    from anyres_data.dataset.verify import verify
    from anyres_data.sources import SourceSettings

    shard = tmp_path / "in" / "00000"
    shard.mkdir(parents=True)
    for i in range(3):
        record = img2dataset_record(i) | {"original_width": 96, "original_height": 64}
        (shard / f"{i:09d}.jpg").write_bytes(image_bytes("JPEG", seed=10 + i))  # unlike the tar's
        (shard / f"{i:09d}.json").write_text(json.dumps(record))
        (shard / f"{i:09d}.txt").write_text(f"caption {i}")
    record = img2dataset_record(3) | {"original_width": 24, "original_height": 16, "caption": None}
    (shard / "000000003.jpg").write_bytes(image_bytes("JPEG", seed=13))  # not resized, no caption
    (shard / "000000003.json").write_text(json.dumps(record))
    write_webdataset_tar(tmp_path / "in" / "00001.tar", 2)  # original size 2400×1600, caption "caption"
    out = tmp_path / "out"
    settings = BuildSettings(
        source="folder",
        out=str(out),
        sources=SourceSettings(folder=FolderSettings(folder=str(tmp_path / "in"))),
        workers=0,
        progress=False,
        retry_transient=False,
    )
    build(settings)
    manifest = read_manifest(str(out)).set_index("source_id")
    first = manifest.loc["00000/000000000.jpg"]
    assert first["url"] == "https://origin.example/0.jpg"
    assert extra_fields(first)["read_from"] == f"file://{shard}/000000000.jpg"
    assert (first["width"], first["height"], first["original_width"], first["original_height"]) == (24, 16, 96, 64)
    assert extra_fields(first)["resized"] is True
    assert "source_original_width" not in extra_fields(first)
    assert first["caption"] == "caption 0"
    unresized = manifest.loc["00000/000000003.jpg"]
    assert extra_fields(unresized)["resized"] is False and pd.isna(unresized["caption"])
    in_tar = manifest.loc["00001.tar/000000001.jpg"]
    assert in_tar["url"] == "https://origin.example/1.jpg" and in_tar["original_width"] == 2400
    assert extra_fields(in_tar)["read_from"].startswith("tar://000000001.jpg::file://")
    assert in_tar["caption"] == "caption 1"  # the JSON's caption first, else the KEY.txt member
    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    pairs = list(wds.WebDataset(shards, shardshuffle=False).select(lambda s: "txt" in s).to_tuple("__key__", "txt"))
    captions = {key: text.decode() for key, text in pairs}
    assert captions == {k: c for k, c in zip(manifest["key"], manifest["caption"], strict=True) if isinstance(c, str)}
    assert len(captions) == 5  # all but 000000003.jpg
    assert verify(str(out)).ok
