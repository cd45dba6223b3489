"""The generated side of each comparison: whole images at R, patches at given specs, and the Lanczos baseline.

Latent z_i comes from its own random stream (seed, i), so sample i is the same whatever the
batch size and can be regenerated alone. Generator output in [-1, 1] becomes uint8 as in
StyleGAN3's metrics (x·127.5 + 128, clamped, truncated), the same 8-bit quantisation the real
images went through.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from anyres_data.spec import tensor_to_specs
from anyres_model.render import render


def latents(seed: int, indices: Sequence[int] | np.ndarray, z_dim: int) -> torch.Tensor:
    """(B, z_dim) float32 standard normal latents, z_i drawn from the stream (seed, i)."""
    rows = [np.random.default_rng([seed, int(i)]).standard_normal(z_dim, dtype=np.float32) for i in indices]
    return torch.from_numpy(np.stack(rows)).reshape(len(rows), z_dim)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] → uint8 on the CPU."""
    return (images.detach() * 127.5 + 128).clamp(0, 255).to("cpu", torch.uint8)


@torch.no_grad()
def whole_images(G: torch.nn.Module, z: torch.Tensor, size: int, *, tile: int | None = None) -> torch.Tensor:
    """The global image of each z rendered at size×size (`anyres_model.render.render`, tile by tile with `tile`).

    Returns uint8 (B, 3, size, size).
    """
    return quantize(render(G, z, size, tile=tile))


@torch.no_grad()
def global_images(G: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """G(z): the whole unit square at the generator's own p×p, uint8 (B, 3, p, p) (the baseline's base image)."""
    return quantize(G(z))


@torch.no_grad()
def patches(G: torch.nn.Module, z: torch.Tensor, specs: torch.Tensor) -> torch.Tensor:
    """G(z_i, spec_i) for specs (B, 4) = (s, x0, y0, p): uint8 (B, 3, p, p)."""
    return quantize(G(z, specs.to(z.device)))


def lanczos_windows(base: torch.Tensor, specs: torch.Tensor) -> torch.Tensor:
    """The Lanczos baseline: each spec's window resampled from the global image, as interpolation would.

    base: uint8 (B, 3, P, P), the whole unit square at P×P; specs: (B, 4). Pillow's
    `resize((p, p), LANCZOS, box=spec.box(P))` is the same as Lanczos-upsampling the P×P image
    to s×s and cropping the window, without building the s×s image. Returns uint8 (B, 3, p, p).
    """
    side = base.shape[-1]
    out = []
    for pixels, spec in zip(base.permute(0, 2, 3, 1).numpy(), tensor_to_specs(specs), strict=True):
        window = Image.fromarray(pixels).resize((spec.p, spec.p), Image.Resampling.LANCZOS, box=spec.box(side))
        out.append(np.asarray(window))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


class FakePatches(NamedTuple):
    index: np.ndarray  # (B,) positions in the spec list
    model: torch.Tensor | None  # G(z_i, spec_i), uint8 (B, 3, p, p)
    baseline: torch.Tensor | None  # spec_i's window Lanczos-resampled from G(z_i), uint8 (B, 3, p, p)


def patch_stream(
    G: torch.nn.Module,
    specs: np.ndarray,
    *,
    seed: int,
    batch: int,
    model: bool = True,
    baseline: bool = False,
) -> Iterator[FakePatches]:
    """Fakes for a spec list (n, 4), in order, `batch` at a time: G(z_i, spec_i) and/or the Lanczos baseline.

    z_i = `latents(seed, [i], z_dim)`, so entry i can be rendered again alone to check it.
    """
    device = next(G.parameters()).device
    z_dim = int(G.cfg.z_dim)
    for start in range(0, len(specs), batch):
        index = np.arange(start, min(start + batch, len(specs)))
        z = latents(seed, index, z_dim).to(device)
        spec = torch.from_numpy(np.ascontiguousarray(specs[index]))
        yield FakePatches(
            index=index,
            model=patches(G, z, spec) if model else None,
            baseline=lanczos_windows(global_images(G, z), spec) if baseline else None,
        )
