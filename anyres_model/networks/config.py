"""Settings of the generator and the discriminator (frozen dataclasses, saved in every checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass

from anyres_data.settings import setting


@dataclass(frozen=True)
class GeneratorConfig:
    """StyleGAN3-T synthesis with patch coordinates and scale conditioning (defaults: StyleGAN3-T; see presets)."""

    patch_size: int = setting(256, "P: pixels across the patches G is trained on; G(z) renders the global image at P×P")
    z_dim: int = setting(512, "latent z dimensions")
    w_dim: int = setting(512, "intermediate latent w dimensions")
    img_channels: int = setting(3, "output image channels")
    mapping_layers: int = setting(2, "fully connected layers of the mapping network")
    mapping_lr_multiplier: float = setting(0.01, "learning-rate multiplier of the mapping network")
    w_avg_beta: float = setting(0.998, "decay of the tracked mean w (truncation trick)")
    channel_base: int = setting(32768, "channels = min(channel_base / 2 / cutoff, channel_max) per layer")
    channel_max: int = setting(512, "most channels of any synthesis layer")
    num_layers: int = setting(14, "synthesis layers, not counting toRGB")
    num_critical: int = setting(2, "critically sampled layers at the end")
    first_cutoff: float = setting(2.0, "cutoff frequency of the first layer (cycles per unit)")
    first_stopband: float = setting(2**2.1, "minimum stopband of the first layer (cycles per unit)")
    last_stopband_rel: float = setting(2**0.3, "minimum stopband of the last layer, relative to its cutoff")
    margin_size: int = setting(10, "samples computed beyond the patch on each side, per layer")
    output_scale: float = setting(0.25, "scale of the toRGB output")
    conv_kernel: int = setting(3, "kernel size of the modulated convolutions (3 = StyleGAN3-T)")
    filter_size: int = setting(6, "low-pass filter taps per unit of up/down-sampling factor")
    lrelu_upsampling: int = setting(2, "rate increase for the leaky ReLU, relative to the layer's sampling rate")
    conv_clamp: float = setting(256.0, "activations are clamped to [-conv_clamp, conv_clamp]")
    magnitude_ema_beta: float = setting(0.999, "decay of each layer's input magnitude average")
    scale_conditioning: bool = setting(True, "add a scale embedding of log(s / P) to every synthesis layer's styles")
    scale_freqs: int = setting(6, "Fourier frequencies of the log-scale embedding")
    scale_dim: int = setting(256, "width of the scale-embedding MLP (0 with scale_conditioning off)")
    scale_layers: int = setting(2, "fully connected layers of the scale-embedding MLP")
    scale_lr_multiplier: float = setting(0.01, "learning-rate multiplier of the scale-embedding MLP")

    def __post_init__(self) -> None:
        if self.patch_size < 4 or self.patch_size & (self.patch_size - 1):
            raise ValueError(f"patch_size must be a power of two >= 4, got {self.patch_size}")
        if not 0 < self.num_critical < self.num_layers:
            raise ValueError(f"need 0 < num_critical < num_layers, got {self.num_critical}, {self.num_layers}")
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {self.conv_kernel}")


@dataclass(frozen=True)
class DiscriminatorConfig:
    """StyleGAN2 residual discriminator at the patch size (no scale input, as in the paper)."""

    patch_size: int = setting(256, "P: pixels across the patches D judges")
    img_channels: int = setting(3, "input image channels")
    channel_base: int = setting(32768, "channels at resolution r = min(channel_base / r, channel_max)")
    channel_max: int = setting(512, "most channels of any block")
    mbstd_group_size: int = setting(4, "minibatch-std group size (the batch must be divisible by min(group, batch))")
    mbstd_num_channels: int = setting(1, "minibatch-std feature channels")
    conv_clamp: float = setting(256.0, "activations are clamped to [-conv_clamp, conv_clamp]")

    def __post_init__(self) -> None:
        if self.patch_size < 4 or self.patch_size & (self.patch_size - 1):
            raise ValueError(f"patch_size must be a power of two >= 4, got {self.patch_size}")
