"""Pure-PyTorch ops of the generator and discriminator (CPU and CUDA, no compiled extensions).

`FAST_OPS` and `REFERENCE_OPS` bundle the two implementations the synthesis layers can run on: the
fast ones (default) and the direct reference computations (tests, and the benchmark's baseline).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from anyres_model.ops.filtered_lrelu import filtered_lrelu
from anyres_model.ops.fir import design_lowpass_filter, upfirdn2d
from anyres_model.ops.modulated_conv import modulated_conv2d
from anyres_model.ops.reference import filtered_lrelu_ref, modulated_conv2d_ref, upfirdn2d_ref


class Ops(NamedTuple):
    """The ops a synthesis layer calls; same signatures in both implementations."""

    modulated_conv2d: Callable
    filtered_lrelu: Callable


FAST_OPS = Ops(modulated_conv2d=modulated_conv2d, filtered_lrelu=filtered_lrelu)
REFERENCE_OPS = Ops(modulated_conv2d=modulated_conv2d_ref, filtered_lrelu=filtered_lrelu_ref)

__all__ = [
    "FAST_OPS",
    "REFERENCE_OPS",
    "Ops",
    "design_lowpass_filter",
    "filtered_lrelu",
    "filtered_lrelu_ref",
    "modulated_conv2d",
    "modulated_conv2d_ref",
    "upfirdn2d",
    "upfirdn2d_ref",
]
