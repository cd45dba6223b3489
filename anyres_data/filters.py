"""What the build keeps: size, pixel, aspect, animation and license rules, each with a named reason.

`check_candidate` runs before anything is downloaded, on what the source already knows (license,
displayed size); `check_header` runs on the probed header, before any pixel is decoded. Both raise
`Rejected`; passing returns None. `check_decodable` holds the memory limits alone: the loader applies
it too, so that it refuses what the build refuses.
"""

from __future__ import annotations

from dataclasses import dataclass

from anyres_data.candidate import Candidate
from anyres_data.probe import ImageHeader
from anyres_data.rejects import Rejected
from anyres_data.settings import setting

ANIMATED_FORMATS = ("gif", "webp")  # formats whose pages are animation frames (a TIFF's pages are not)


@dataclass(frozen=True)
class FilterSettings:
    min_size: int = setting(0, "smallest shorter side, as displayed (after EXIF orientation), in pixels; 0: any")
    max_pixels: int = setting(
        400_000_000, "largest stored width x height, checked from the header before decoding (bomb limit)"
    )
    max_decode_bytes: int = setting(
        256 * 2**20,
        "largest memory a decode may hold at once, in bytes, estimated from the header: images that decode "
        "whole (progressive JPEG, interlaced PNG, GIF, WebP, HEIC/AVIF) at their full decoded size "
        "(width x height x bands x bytes per sample, times the decoder's factor); streamed ones need ~0",
    )
    max_aspect: float = setting(4.0, "largest ratio of the longer to the shorter side")
    license: tuple[str, ...] = setting((), "allowed license ids, comma-separated (Flickr: 4,5,9,10); empty: any")
    near_duplicate_distance: int = setting(
        4, "perceptual hashes this many bits apart or closer are near duplicates (the larger is kept); -1: off"
    )


def check_candidate(candidate: Candidate, settings: FilterSettings) -> None:
    """Reject before download on what the source knows. Raises Rejected: license, too_many_pixels, size, aspect."""
    if settings.license and candidate.license not in settings.license:
        shown = "unknown" if candidate.license is None else repr(candidate.license)
        raise Rejected("license", f"license {shown} not in {','.join(settings.license)}")
    if candidate.width and candidate.height:
        _check_size(candidate.width, candidate.height, settings, source="source says ")


def check_header(header: ImageHeader, settings: FilterSettings) -> None:
    """Reject on the probed header.

    Raises Rejected: too_many_pixels, too_large_to_decode, animated, below_min_size, extreme_aspect.
    """
    check_decodable(header, max_pixels=settings.max_pixels, max_decode_bytes=settings.max_decode_bytes)
    if header.format in ANIMATED_FORMATS and header.n_pages > 1:
        raise Rejected("animated", f"{header.format} with {header.n_pages} frames")
    _check_size(header.width, header.height, settings, source="")


def check_decodable(header: ImageHeader, *, max_pixels: int, max_decode_bytes: int) -> None:
    """Reject an image whose decode would cost too much. Raises Rejected: too_many_pixels, too_large_to_decode."""
    if header.pixels > max_pixels:
        raise Rejected("too_many_pixels", f"{header.stored_width}x{header.stored_height} > {max_pixels} pixels")
    if header.decode_bytes > max_decode_bytes:
        raise Rejected(
            "too_large_to_decode",
            f"a {header.stored_width}x{header.stored_height} {'interlaced ' if header.interlaced else ''}"
            f"{header.format} ({header.bands} bands, {header.bit_depth}-bit) decodes whole: about "
            f"{header.decode_bytes / 2**20:.0f} MiB > {max_decode_bytes / 2**20:.0f} MiB",
        )


def _check_size(width: int, height: int, settings: FilterSettings, *, source: str) -> None:
    if width * height > settings.max_pixels:
        raise Rejected("too_many_pixels", f"{source}{width}x{height} > {settings.max_pixels} pixels")
    short, long = min(width, height), max(width, height)
    if short < settings.min_size:
        raise Rejected("below_min_size", f"{source}{width}x{height}: shorter side {short} < {settings.min_size}")
    if short == 0 or long / short > settings.max_aspect:
        raise Rejected("extreme_aspect", f"{source}{width}x{height}: aspect above {settings.max_aspect}")
