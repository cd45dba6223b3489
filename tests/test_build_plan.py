"""The plan: candidates persisted in partitions before anything is fetched, and continued on resume."""

from __future__ import annotations

import itertools

import pandas as pd

from anyres_data.build.plan import plan, read_partition, row_candidate
from anyres_data.candidate import Candidate
from anyres_data.dataset import Layout
from anyres_data.filters import FilterSettings

FILTERS = FilterSettings(min_size=100, license=("4", "5"))


def candidates(n: int, *, tag: str = "") -> list[Candidate]:
    out = []
    for i in range(n):
        out.append(
            Candidate(
                "urls",
                f"id{i}",
                f"https://example.com/{tag}{i}.jpg",
                width=50 if i % 7 == 3 else 800,  # some too small, known before download
                height=600,
                license="0" if i % 5 == 4 else "4",  # some not allowed
                extra={"row": i, "tag": tag},
            )
        )
    out.insert(6, out[2])  # a key proposed twice
    return out


def test_partitions_hold_shard_size_candidates_to_fetch_plus_the_early_rejections(tmp_path):
    layout = Layout.at(str(tmp_path))
    source = candidates(30)
    parts = list(plan(source, layout, shard_size=4, filters=FILTERS))
    frames = [read_partition(layout, p.index) for p in parts]
    assert [p.index for p in parts] == list(range(len(parts)))
    assert all(p.to_fetch == 4 for p in parts[:-1]) and 0 < parts[-1].to_fetch <= 4
    assert sum(p.rows for p in parts) == len(source)
    rows = [row for frame in frames for _, row in frame.iterrows()]
    assert [row_candidate(row) for row in rows] == source  # every candidate, in order, as it was
    reasons = [None if pd.isna(row["reason"]) else row["reason"] for row in rows]
    assert reasons.count("duplicate_key") == 1 and reasons[6] == "duplicate_key"
    assert set(reasons) == {None, "duplicate_key", "license", "below_min_size"}
    assert parts[0].rejected == {"below_min_size": 1, "license": 1}  # rows 3 and 4; row 6 is in the next one
    assert parts[1].rejected["duplicate_key"] == 1


def test_an_interrupted_plan_keeps_its_partitions_and_continues_the_source(tmp_path):
    layout = Layout.at(str(tmp_path))
    first = list(itertools.islice(plan(candidates(30), layout, shard_size=4, filters=FILTERS), 3))
    written = [read_partition(layout, i) for i in range(3)]
    # the source has changed since (a web search): the partitions on disk stay as they were
    resumed = list(plan(candidates(30, tag="new-"), layout, shard_size=4, filters=FILTERS))
    assert resumed[:3] == first
    for i in range(3):
        assert read_partition(layout, i).equals(written[i])
    later = read_partition(layout, 3)
    assert (
        later["url"].str.contains("new-").all() and later["key"].iloc[0] == f"urls-id{sum(p.rows for p in first) - 1}"
    )
    uninterrupted = list(plan(candidates(30), Layout.at(str(tmp_path / "b")), shard_size=4, filters=FILTERS))
    assert [(p.rows, p.to_fetch) for p in resumed] == [(p.rows, p.to_fetch) for p in uninterrupted]
    assert list(plan([], layout, shard_size=4, filters=FILTERS)) == resumed  # done: the source is not read again
