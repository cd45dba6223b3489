"""Check a built dataset: every shard re-read and compared with the manifest, sample by sample.

Per sample: its key is in the manifest for this shard, once; it has exactly one image member, whose
extension is the manifest's format; a caption is its .txt member; the bytes' sha256 and length match;
the JSON holds the manifest's values; and libvips reads the header to the recorded format and
displayed size. Per dataset: the shards on disk are those dataset.json lists, wids.json counts the
manifest's samples per shard, and every manifest row was found.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from anyres_data import storage
from anyres_data.dataset.layout import MANIFEST_COLUMNS, Layout, extra_fields, load_info, read_manifest
from anyres_data.dataset.shards import read_shard
from anyres_data.probe import read_header
from anyres_data.rejects import Rejected

_JSON_FIELDS = [name for name in MANIFEST_COLUMNS if name not in ("shard", "extra")]


@dataclass
class VerifyReport:
    shards: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(out: str, *, probe: bool = True) -> VerifyReport:
    """Compare every shard of the dataset in `out` with its manifest. Raises ValueError if `out` is no dataset.

    `probe` also reads each image's header with libvips (cheap: no pixels are decoded).
    """
    info = load_info(out)
    manifest = read_manifest(out)
    layout = Layout.at(out)
    report = VerifyReport()
    listed = list(info.data["shards"])
    on_disk = storage.listdir(layout.shards, ".tar")
    for name in sorted(set(on_disk) - set(listed)):
        report.problems.append(f"{name}: in shards/ but not in dataset.json")
    if set(manifest["shard"]) != set(listed):
        report.problems.append("the manifest's shards differ from dataset.json's list")
    if manifest["key"].duplicated().any():
        report.problems.append(
            f"keys listed twice in the manifest: {sorted(manifest['key'][manifest['key'].duplicated()])[:5]}"
        )
    if len(manifest) != info.counts["kept"]:
        report.problems.append(f"manifest has {len(manifest)} rows, dataset.json counts {info.counts['kept']} kept")
    if storage.exists(layout.wids_json):  # builds before wids.json existed have none
        counts = manifest["shard"].value_counts().to_dict()
        listed_counts = {
            e["url"].removeprefix("shards/"): e["nsamples"] for e in storage.read_json(layout.wids_json)["shardlist"]
        }
        if listed_counts != counts:
            report.problems.append("wids.json's shards or sample counts differ from the manifest's")
    for name in listed:
        rows = {row["key"]: row for row in manifest[manifest["shard"] == name].to_dict("records")}
        if name not in on_disk:
            report.problems.append(f"{name}: missing ({len(rows)} samples in the manifest)")
            continue
        report.shards += 1
        seen: set[str] = set()
        try:
            for sample in read_shard(layout.shard(name)):
                report.samples += 1
                key = sample["__key__"]
                if key in seen:
                    report.problems.append(f"{name}/{key}: twice in the shard")
                elif key not in rows:
                    report.problems.append(f"{name}/{key}: not in the manifest for this shard")
                else:
                    report.problems.extend(f"{name}/{key}: {p}" for p in _check_sample(sample, rows[key], probe=probe))
                seen.add(key)
        except (tarfile.TarError, OSError, ValueError) as err:
            report.problems.append(f"{name}: cannot be read ({type(err).__name__}: {err})")
        for key in sorted(set(rows) - seen):
            report.problems.append(f"{name}/{key}: in the manifest but not in the shard")
    return report


def _check_sample(sample: dict[str, Any], row: dict[str, Any], *, probe: bool) -> list[str]:
    problems = []
    members = sorted(k for k in sample if not k.startswith("__") and k not in ("json", "txt"))
    if members != [row["format"]]:
        return [f"image members {members}, expected one .{row['format']}"]
    if "json" not in sample:
        return ["no .json member"]
    caption = row.get("caption")
    caption = None if caption is None or pd.isna(caption) else caption
    text = sample["txt"].decode("utf-8", errors="replace") if "txt" in sample else None
    if text != caption:
        problems.append(f".txt member {text!r}, manifest caption {caption!r}")
    data = sample[row["format"]]
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        problems.append("sha256 of the bytes differs from the manifest")
    if len(data) != row["bytes"]:
        problems.append(f"{len(data)} bytes, manifest says {row['bytes']}")
    metadata = json.loads(sample["json"])
    for name in _JSON_FIELDS:
        expected = None if name not in row or pd.isna(row[name]) else row[name]
        if metadata.get(name) != expected:
            problems.append(f"json {name}={metadata.get(name)!r}, manifest {expected!r}")
    extra = {k: v for k, v in metadata.items() if k not in MANIFEST_COLUMNS}
    if extra != extra_fields(row):
        problems.append("json's source columns differ from the manifest's extra")
    if probe:
        try:
            header = read_header(data)
        except Rejected as rejected:
            return [*problems, f"libvips cannot read it: {rejected}"]
        found = (header.format, header.width, header.height)
        if found != (row["format"], row["width"], row["height"]):
            problems.append(f"header says {found}, manifest {(row['format'], row['width'], row['height'])}")
    return problems
