"""libvips in worker processes and threads: one thread per image, no cache."""

from __future__ import annotations

import pyvips


def setup_vips_worker() -> None:
    """Each image is read once, so libvips' cache only holds memory; parallelism comes from the
    caller's threads or processes, so libvips itself uses one thread per image."""
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
