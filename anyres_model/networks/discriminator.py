"""StyleGAN2 residual discriminator at the patch size (no scale input, as in the paper).

fromRGB, then residual blocks from P down to 4×4 (two 3×3 convolutions, the second one
downsampling, plus a 1×1 downsampling skip, summed with gain √0.5), then the epilogue:
minibatch standard deviation, a 3×3 convolution, a fully connected layer and the output logit.
Downsampling blurs with the FIR filter [1, 3, 3, 1] before striding; all layers use equalised
learning rates.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from anyres_model.networks.config import DiscriminatorConfig
from anyres_model.networks.equalized import LRELU_GAIN, FullyConnected
from anyres_model.ops import upfirdn2d

__all__ = ["Discriminator", "DiscriminatorConfig"]


class Conv2d(nn.Module):
    """Equalised-lr convolution, optionally downsampling by 2 (blur, then stride), bias + leaky ReLU + clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int,
        lrelu: bool = True,
        bias: bool = True,
        down: bool = False,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.lrelu, self.down, self.conv_clamp = lrelu, down, conv_clamp
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.register_buffer("blur", torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8, persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        pad = self.kernel_size // 2
        if not self.down:
            x = F.conv2d(x, w, padding=pad)
        elif self.kernel_size == 1:  # blur-downsample, then 1x1
            x = F.conv2d(upfirdn2d(x, self.blur, down=2, padding=pad + 1), w)
        else:  # blur (keeps the size + 1), then strided conv: H -> H / 2
            x = F.conv2d(upfirdn2d(x, self.blur, padding=pad + 1), w, stride=2)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype)[None, :, None, None]
        act_gain = (LRELU_GAIN if self.lrelu else 1.0) * gain
        if self.lrelu:
            x = F.leaky_relu(x, 0.2)
        if act_gain != 1:
            x = x * act_gain
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp * gain, self.conv_clamp * gain)
        return x


class DiscriminatorBlock(nn.Module):
    """Residual block at one resolution: (fromRGB), conv, downsampling conv, plus downsampling skip."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, *, img_channels: int, conv_clamp: float):
        super().__init__()
        self.fromrgb = None
        if in_channels == 0:
            self.fromrgb = Conv2d(img_channels, tmp_channels, kernel_size=1, conv_clamp=conv_clamp)
        self.conv0 = Conv2d(tmp_channels, tmp_channels, kernel_size=3, conv_clamp=conv_clamp)
        self.conv1 = Conv2d(tmp_channels, out_channels, kernel_size=3, down=True, conv_clamp=conv_clamp)
        self.skip = Conv2d(tmp_channels, out_channels, kernel_size=1, lrelu=False, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return x + y


def minibatch_std(x: torch.Tensor, *, group_size: int, num_channels: int) -> torch.Tensor:
    """Append the mean standard deviation over groups of samples as `num_channels` feature maps.

    x: (N, C, H, W) with N divisible by min(group_size, N). Returns (N, C + num_channels, H, W).
    """
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch-std needs a batch divisible by {g}, got {n}")
    y = x.reshape(g, -1, num_channels, c // num_channels, h, w)  # (G, n, F, c, H, W): sample i is in group i % n
    y = (y - y.mean(dim=0)).square().mean(dim=0)  # (n, F, c, H, W): variance over the group
    y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))  # (n, F)
    y = y.reshape(-1, num_channels, 1, 1).repeat(g, 1, h, w)  # (N, F, H, W)
    return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Images (B, C, P, P) -> logits (B,)."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        res_log2 = int(math.log2(cfg.patch_size))
        resolutions = [2**i for i in range(res_log2, 2, -1)]  # P, P/2, ..., 8

        def channels(res: int) -> int:
            return min(cfg.channel_base // res, cfg.channel_max)

        self.blocks = nn.ModuleList(
            DiscriminatorBlock(
                0 if res == cfg.patch_size else channels(res),
                channels(res),
                channels(res // 2),
                img_channels=cfg.img_channels,
                conv_clamp=cfg.conv_clamp,
            )
            for res in resolutions
        )
        c4 = channels(4)
        self.epilogue_conv = Conv2d(c4 + cfg.mbstd_num_channels, c4, kernel_size=3, conv_clamp=cfg.conv_clamp)
        self.epilogue_fc = FullyConnected(c4 * 16, c4, lrelu=True)
        self.out = FullyConnected(c4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Raises ValueError for images of the wrong shape or a batch that minibatch-std cannot group."""
        p, c = self.cfg.patch_size, self.cfg.img_channels
        if img.ndim != 4 or img.shape[1:] != (c, p, p):
            raise ValueError(f"D expects images (B, {c}, {p}, {p}), got {tuple(img.shape)}")
        x = img.to(torch.float32)
        for block in self.blocks:
            x = block(x)
        x = minibatch_std(x, group_size=self.cfg.mbstd_group_size, num_channels=self.cfg.mbstd_num_channels)
        x = self.epilogue_conv(x)
        x = self.epilogue_fc(x.flatten(1))
        return self.out(x)[:, 0]
