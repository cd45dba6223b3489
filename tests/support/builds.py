"""Build settings tests share: a URL-list build, quiet, without the pause before the transient retry."""

from __future__ import annotations

from anyres_data.build import BuildSettings
from anyres_data.sources import SourceSettings
from anyres_data.sources.urls import UrlListSettings


def url_list_settings(out: object, url_list: object, **options: object) -> BuildSettings:
    """BuildSettings for `--source urls --url-list URL_LIST --out OUT`; options override any field."""
    defaults = {"progress": False, "retry_pause": 0.0}
    sources = SourceSettings(urls=UrlListSettings(url_list=str(url_list)))
    return BuildSettings(source="urls", out=str(out), sources=sources, **(defaults | options))
