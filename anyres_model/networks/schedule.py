"""StyleGAN3's layer schedule: cutoffs, stopbands, sampling rates, channels and margins per layer.

Frequencies are in cycles per unit of the image (the unit square), sampling rates in samples per
unit: a layer with sampling rate r holds the global image on r×r samples (plus margins). Cutoffs
grow geometrically from `first_cutoff` to P/2 over the first num_layers - num_critical layers;
stopbands likewise; each sampling rate is the power of two that holds twice the stopband (at most P).
The last two layers (the final critically sampled layer and toRGB) drop the margin.

The schedule is fixed by the config; the number of samples per layer is not: a patch of p pixels
is p * rate / P samples across, plus twice the layer's margin (see `SynthesisNetwork`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anyres_model.networks.config import GeneratorConfig


@dataclass(frozen=True)
class LayerSchedule:
    """One synthesis layer's place in the schedule (index 0 .. num_layers; the last is toRGB)."""

    index: int
    in_channels: int
    out_channels: int
    in_rate: int  # sampling rate of the input, samples per unit
    out_rate: int
    in_cutoff: float  # cycles per unit
    out_cutoff: float
    in_half_width: float  # half the transition band, cycles per unit
    out_half_width: float
    in_margin: int  # samples beyond the patch on each side
    out_margin: int
    is_torgb: bool
    is_critical: bool

    @property
    def name(self) -> str:
        return f"L{self.index}_{self.out_rate}_{self.out_channels}"


@dataclass(frozen=True)
class Schedule:
    """The input layer's parameters and every synthesis layer's."""

    input_channels: int
    input_rate: int
    input_cutoff: float
    margin: int
    layers: tuple[LayerSchedule, ...]


def layer_schedule(cfg: GeneratorConfig) -> Schedule:
    """StyleGAN3's schedule for the patch size, channel and filter settings of cfg."""
    n, res = cfg.num_layers, cfg.patch_size
    last_cutoff = res / 2
    last_stopband = last_cutoff * cfg.last_stopband_rel
    exponents = np.minimum(np.arange(n + 1) / (n - cfg.num_critical), 1)
    cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** exponents
    stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels
    margins = np.full(n + 1, cfg.margin_size)
    margins[-2:] = 0  # the last critically sampled layer crops to the patch; toRGB keeps it
    layers = []
    for i in range(n + 1):
        prev = max(i - 1, 0)
        layers.append(
            LayerSchedule(
                index=i,
                in_channels=int(channels[prev]),
                out_channels=int(channels[i]),
                in_rate=int(rates[prev]),
                out_rate=int(rates[i]),
                in_cutoff=float(cutoffs[prev]),
                out_cutoff=float(cutoffs[i]),
                in_half_width=float(half_widths[prev]),
                out_half_width=float(half_widths[i]),
                in_margin=int(margins[prev]),
                out_margin=int(margins[i]),
                is_torgb=i == n,
                is_critical=i >= n - cfg.num_critical,
            )
        )
    return Schedule(
        input_channels=int(channels[0]),
        input_rate=int(rates[0]),
        input_cutoff=float(cutoffs[0]),
        margin=cfg.margin_size,
        layers=tuple(layers),
    )
