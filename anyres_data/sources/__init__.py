"""Sources: what proposes image candidates before anything is fetched (the build's reader stage).

Each source is a module with a settings dataclass and a generator of `Candidate`s in a
deterministic order: `flickr` (a Flickr search), `urls` (URL lists), `folder` (local or fsspec
folders, img2dataset output) and `demo` (procedural landscapes, no network). `SourceSettings`
gathers their settings; the build nests it in its own, so their flags sit beside the build's
(`--query`, `--url-list`, `--folder`, `--demo-count`, ...).
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from anyres_data.candidate import Candidate
from anyres_data.settings import setting
from anyres_data.sources.demo import DemoSettings, demo_bytes, iter_demo, render_demo
from anyres_data.sources.flickr import FlickrSettings, iter_flickr
from anyres_data.sources.folder import FolderSettings, TarReader, iter_folder
from anyres_data.sources.urls import UrlListSettings, iter_url_list

SourceName = Literal["flickr", "urls", "folder", "demo"]
SOURCE_NAMES: tuple[str, ...] = typing.get_args(SourceName)
LOCAL_SOURCES = frozenset({"folder", "demo"})  # sources whose URLs the fetcher may read from disk / generate


@dataclass(frozen=True)
class SourceSettings:
    """Settings of every source; only the one named by the build's --source is used."""

    flickr: FlickrSettings = setting(FlickrSettings(), "Flickr search (--source flickr)", cli_prefix="")
    urls: UrlListSettings = setting(UrlListSettings(), "URL lists (--source urls)", cli_prefix="")
    folder: FolderSettings = setting(FolderSettings(), "image folders (--source folder)", cli_prefix="")
    demo: DemoSettings = setting(DemoSettings(), "procedural demo images (--source demo)")


def iter_candidates(
    name: SourceName, settings: SourceSettings, *, licenses: tuple[str, ...] = ()
) -> Iterator[Candidate]:
    """Stream the candidates of source `name`, in a deterministic order.

    `licenses` (the build's license filter) is passed to sources that can filter on the server
    (Flickr's `license` parameter); the build checks it itself as well. Raises ValueError for an
    unknown source or bad settings (when the iterator is first advanced).
    """
    if name == "flickr":
        return iter_flickr(settings.flickr, licenses=licenses)
    if name == "urls":
        return iter_url_list(settings.urls)
    if name == "folder":
        return iter_folder(settings.folder)
    if name == "demo":
        return iter_demo(settings.demo)
    raise ValueError(f"unknown source {name!r}; choose from {', '.join(SOURCE_NAMES)}")


__all__ = [
    "LOCAL_SOURCES",
    "SOURCE_NAMES",
    "DemoSettings",
    "FlickrSettings",
    "FolderSettings",
    "SourceName",
    "SourceSettings",
    "TarReader",
    "UrlListSettings",
    "demo_bytes",
    "iter_candidates",
    "render_demo",
]
