"""Named model sizes: `preset(name)` -> (GeneratorConfig, DiscriminatorConfig).

- tiny:  P = 32, 32 channels at most, < 1 M parameters in G: CPU tests.
- tiny64: P = 64, 24 channels at most, ~0.1 M parameters in G: the CPU experiment. At P = 64 a
  patch at s = 4p still covers 16×16 teacher pixels (8×8 at P = 32), and the narrow schedule keeps
  a training step at about 1.2× tiny's.
- small: P = 64, 256 channels at most: CPU/GPU experiments.
- paper: P = 256, StyleGAN3-T's published channel counts at 256² (channel_base 16384, channel_max 512:
  the configuration of NVIDIA's stylegan3-t-ffhqu-256x256 and of the reference implementation's
  256² runs; the dataclass defaults, channel_base 32768, are StyleGAN3's for 512² and up).

The layer schedule (14 layers, 2 critical, cutoffs, stopbands, margins, filters) is StyleGAN3's in
all three; parameter counts are listed in docs/model.md.
"""

from __future__ import annotations

from anyres_model.networks.config import DiscriminatorConfig, GeneratorConfig


def tiny() -> tuple[GeneratorConfig, DiscriminatorConfig]:
    g = GeneratorConfig(patch_size=32, z_dim=64, w_dim=64, channel_base=512, channel_max=32, scale_dim=32)
    d = DiscriminatorConfig(patch_size=32, channel_base=512, channel_max=32)
    return g, d


def tiny64() -> tuple[GeneratorConfig, DiscriminatorConfig]:
    g = GeneratorConfig(patch_size=64, z_dim=64, w_dim=64, channel_base=1024, channel_max=24, scale_dim=32)
    d = DiscriminatorConfig(patch_size=64, channel_base=1024, channel_max=24)
    return g, d


def small() -> tuple[GeneratorConfig, DiscriminatorConfig]:
    g = GeneratorConfig(patch_size=64, z_dim=256, w_dim=256, channel_base=8192, channel_max=256, scale_dim=128)
    d = DiscriminatorConfig(patch_size=64, channel_base=8192, channel_max=256)
    return g, d


def paper() -> tuple[GeneratorConfig, DiscriminatorConfig]:
    return GeneratorConfig(channel_base=16384), DiscriminatorConfig(channel_base=16384)


PRESETS = {"tiny": tiny, "tiny64": tiny64, "small": small, "paper": paper}


def preset(name: str) -> tuple[GeneratorConfig, DiscriminatorConfig]:
    """The (generator, discriminator) configs of a named size. Raises ValueError for unknown names."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
