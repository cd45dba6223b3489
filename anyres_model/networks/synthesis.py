"""StyleGAN3-T synthesis network, rendering any patch spec (s, x0, y0, p) of the image.

Every layer: modulated 3×3 convolution (1×1 without demodulation for toRGB), then the filtered
leaky ReLU, which upsamples by the layer's factor with a Kaiser low-pass designed from the input's
cutoff, applies bias + leaky ReLU * √2 + clamp at the high rate, and low-passes/downsamples to the
output rate. Each layer's input is normalised by a running average of its magnitude.

Patch geometry. Layer i holds the patch on n_i = p * rate_i / P samples per side plus its margin
on each side. The layers' paddings depend only on the margins and the filters, not on n_i, so one
network renders any p for which the first layer's n_0 is a whole number (p a multiple of
P / rate_0); sizes are computed per call. All layers' grids share the patch's corner, so the output
pixels are exactly the spec's pixels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from anyres_data.spec import PatchSpec, as_spec_tensor
from anyres_model.networks.config import GeneratorConfig
from anyres_model.networks.equalized import FullyConnected
from anyres_model.networks.fourier_input import FourierInput
from anyres_model.networks.scale_embedding import ScaleEmbedding
from anyres_model.networks.schedule import LayerSchedule, layer_schedule
from anyres_model.ops import FAST_OPS, Ops, design_lowpass_filter

SpecLike = PatchSpec | list[PatchSpec] | torch.Tensor | None


class SynthesisLayer(nn.Module):
    """One layer of the schedule: modulated conv + filtered leaky ReLU (or toRGB)."""

    def __init__(self, sched: LayerSchedule, *, cfg: GeneratorConfig, ops: Ops) -> None:
        super().__init__()
        self.sched, self.ops = sched, ops
        self.is_torgb = sched.is_torgb
        self.kernel = 1 if sched.is_torgb else cfg.conv_kernel
        self.conv_clamp = cfg.conv_clamp
        self.magnitude_ema_beta = cfg.magnitude_ema_beta
        self.affine = FullyConnected(cfg.w_dim, sched.in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(sched.out_channels, sched.in_channels, self.kernel, self.kernel))
        self.bias = nn.Parameter(torch.zeros(sched.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))

        # The nonlinearity runs at tmp_rate; filters are designed at that rate.
        tmp_rate = max(sched.in_rate, sched.out_rate) * (1 if sched.is_torgb else cfg.lrelu_upsampling)
        self.up = int(np.rint(tmp_rate / sched.in_rate))
        self.down = int(np.rint(tmp_rate / sched.out_rate))
        up_taps = cfg.filter_size * self.up if self.up > 1 and not sched.is_torgb else 1
        down_taps = cfg.filter_size * self.down if self.down > 1 and not sched.is_torgb else 1
        self.register_buffer(
            "up_filter",
            design_lowpass_filter(numtaps=up_taps, cutoff=sched.in_cutoff, width=sched.in_half_width * 2, fs=tmp_rate),
        )
        self.register_buffer(
            "down_filter",
            design_lowpass_filter(
                numtaps=down_taps, cutoff=sched.out_cutoff, width=sched.out_half_width * 2, fs=tmp_rate
            ),
        )
        # Padding (StyleGAN3's, from the global geometry p = P); it does not depend on p.
        in_size = sched.in_rate + 2 * sched.in_margin
        out_size = sched.out_rate + 2 * sched.out_margin
        pad_total = (out_size - 1) * self.down + 1 - (in_size + self.kernel - 1) * self.up + up_taps + down_taps - 2
        pad_lo = (pad_total + self.up) // 2  # symmetric interpretation: sample centres stay aligned
        pad_hi = pad_total - pad_lo
        self.padding = (pad_lo, pad_hi, pad_lo, pad_hi)

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, style_offset: torch.Tensor | None = None, *, update_emas: bool = False
    ) -> torch.Tensor:
        if update_emas:
            magnitude = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()
        styles = self.affine(w)  # (B, in_channels)
        if style_offset is not None:
            styles = styles + style_offset
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.sched.in_channels * self.kernel**2))
        x = self.ops.modulated_conv2d(
            x, self.weight, styles, demodulate=not self.is_torgb, padding=self.kernel - 1, input_gain=input_gain
        )
        return self.ops.filtered_lrelu(
            x,
            fu=self.up_filter,
            fd=self.down_filter,
            b=self.bias.to(x.dtype),
            up=self.up,
            down=self.down,
            padding=self.padding,
            gain=1.0 if self.is_torgb else math.sqrt(2),
            slope=1.0 if self.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )

    def extra_repr(self) -> str:
        s = self.sched
        return (
            f"{s.name}: channels {s.in_channels}->{s.out_channels}, rate {s.in_rate}->{s.out_rate}, "
            f"up={self.up}, down={self.down}, padding={self.padding}"
        )


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) and patch specs -> images (B, img_channels, p, p), roughly in [-1, 1]."""

    def __init__(self, cfg: GeneratorConfig, *, ops: Ops = FAST_OPS) -> None:
        super().__init__()
        self.cfg = cfg
        self.schedule = layer_schedule(cfg)
        sched = self.schedule
        self.num_ws = cfg.num_layers + 2  # input transform + one per layer (toRGB included)
        self.grid_step = cfg.patch_size // sched.input_rate  # p must be a multiple of this
        self.input = FourierInput(
            w_dim=cfg.w_dim,
            channels=sched.input_channels,
            rate=sched.input_rate,
            bandwidth=sched.input_cutoff,
            margin=sched.margin,
            patch_size=cfg.patch_size,
        )
        self.layers = nn.ModuleList(SynthesisLayer(layer, cfg=cfg, ops=ops) for layer in sched.layers)
        self.scale_embed = None
        self.scale_proj = None
        if cfg.scale_conditioning:
            self.scale_embed = ScaleEmbedding(
                num_freqs=cfg.scale_freqs,
                dim=cfg.scale_dim,
                num_layers=cfg.scale_layers,
                lr_multiplier=cfg.scale_lr_multiplier,
            )
            # bias-free: a zero embedding (s = P) adds exactly nothing to the styles
            self.scale_proj = nn.ModuleList(
                FullyConnected(cfg.scale_dim, layer.in_channels, weight_init=0.0, bias=False) for layer in sched.layers
            )

    def spec_tensor(self, spec: SpecLike, batch: int) -> torch.Tensor:
        """Any spec form as a validated (batch, 4) float64 tensor; None is the global patch (s = p = P).

        Raises ValueError if the batch sizes differ, s <= 0, the specs' p differ, or p is not a
        multiple of `grid_step`.
        """
        t = as_spec_tensor(PatchSpec.global_(self.cfg.patch_size) if spec is None else spec)
        if t.shape[0] == 1 and batch > 1:
            t = t.expand(batch, 4)
        if t.shape[0] != batch:
            raise ValueError(f"got {t.shape[0]} specs for a batch of {batch}")
        s, p = t[:, 0], t[:, 3]
        if not bool((s > 0).all()):
            raise ValueError(f"spec scales s must be > 0, got {s.tolist()}")
        if not bool((p == p[0]).all()):
            raise ValueError(f"all specs of a batch must have the same p, got {sorted(set(p.tolist()))}")
        size = float(p[0])
        step = self.grid_step
        if size != round(size) or round(size) % step:
            raise ValueError(
                f"patch size p={size:g} does not fit the first layer's grid: p must be a multiple of "
                f"{step} (P / first-layer sampling rate = {self.cfg.patch_size} / {self.schedule.input_rate}), "
                f"e.g. {step * max(1, round(size / step))}; render_crop() renders any p by cropping"
            )
        return t

    def forward(self, ws: torch.Tensor, spec: SpecLike = None, *, update_emas: bool = False) -> torch.Tensor:
        """Render the patches `spec` names (None: the global image at P×P) for the latents ws.

        spec: a PatchSpec (shared by the batch), a list of B PatchSpecs, or a (B, 4) tensor (s, x0, y0, p).
        Returns (B, img_channels, p, p) float32. Raises ValueError for invalid specs (see `spec_tensor`).
        """
        if ws.ndim != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must be (B, {self.num_ws}, w_dim), got {tuple(ws.shape)}")
        specs = self.spec_tensor(spec, ws.shape[0]).to(ws.device)
        p = round(float(specs[0, 3]))
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0], specs, p // self.grid_step)
        embedding = None
        if self.scale_embed is not None:
            embedding = self.scale_embed(torch.log(specs[:, 0] / self.cfg.patch_size))  # (B, scale_dim)
        for i, (layer, w) in enumerate(zip(self.layers, ws[1:], strict=True)):
            offset = None if embedding is None else self.scale_proj[i](embedding)
            x = layer(x, w, offset, update_emas=update_emas)
        assert x.shape[-2:] == (p, p), f"synthesis produced {tuple(x.shape)} for p={p}"
        return x * self.cfg.output_scale

    def extra_repr(self) -> str:
        return f"patch_size={self.cfg.patch_size}, grid_step={self.grid_step}, num_ws={self.num_ws}"
