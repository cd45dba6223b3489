"""Named rejections: a candidate that is not kept is data (a reason and a message), never a crash.

Every stage of the build (plan, fetch, probe, filters, dedup) says why it drops a candidate by
raising `Rejected(reason, message)`; the shard task catches it and records one row in
`rejects.parquet`. Anything else that goes wrong is a bug and fails the task loudly.
"""

from __future__ import annotations

# reason -> what it means; `http_<status>` stands for every HTTP error status (http_404, http_503, ...).
REASONS: dict[str, str] = {
    "duplicate_key": "the source proposed a key that an earlier candidate already has; the first one is kept",
    "license": "the license is not among the allowed ones (--license), or unknown while a filter is set",
    "unsupported_scheme": "the URL is not http(s) (only local sources may read local paths; demo:// only demo)",
    "http_<status>": "the server answered with an HTTP error status (after retries for 429 and 5xx)",
    "timeout": "no answer within --first-byte-timeout, no data for --timeout seconds, or the whole download took "
    "longer than --deadline",
    "connection_error": "the connection failed or broke off (after retries)",
    "too_large": "the file is larger than --max-bytes (checked while streaming)",
    "read_error": "a local or fsspec file (or tar member) could not be read, or is not a regular file",
    "malformed": "the source's own record of the candidate is unusable (e.g. a Flickr search result that is no object)",
    "empty": "zero bytes",
    "not_an_image": "libvips finds no image format in the bytes (e.g. an HTML page served as image/jpeg)",
    "unsupported_format": "a format that is not a raster photo format we store (SVG, PDF, video, ...)",
    "animated": "an animated GIF/WebP (more than one frame); a photo dataset keeps still images",
    "too_many_pixels": "stored width x height above --max-pixels, read from the header (decompression bombs)",
    "too_large_to_decode": "decoding would hold more than --max-decode-bytes (an image that decodes whole, such as "
    "an interlaced PNG, counted at its full decoded size)",
    "below_min_size": "shorter displayed side (after EXIF orientation) below --min-size",
    "extreme_aspect": "longer side / shorter side above --max-aspect",
    "truncated": "the data ends before the image does",
    "corrupt": "the header reads but the pixels do not decode",
    "duplicate": "the same bytes (sha256) as a kept image",
    "near_duplicate": "perceptual hash within --near-duplicate-distance bits of a larger kept image",
}

# Reasons that say nothing about the image, only about the network or the server at that moment: the
# build retries them once more at its end, and --resume retries them again (see `is_transient`).
TRANSIENT = ("timeout", "connection_error", "http_429")


def is_transient(reason: str) -> bool:
    """Whether a rejection may go away by itself: timeout, connection_error, HTTP 429 and every 5xx."""
    return reason in TRANSIENT or (reason.startswith("http_5") and len(reason) == 8)


class Rejected(Exception):
    """A candidate is dropped for a named `reason` (a key of REASONS, or http_<status>)."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS or reason.startswith("http_"), reason
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
