"""The any-resolution generator G(z, spec): mapping network + StyleGAN3-T synthesis of patch specs."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from anyres_model.networks.config import GeneratorConfig
from anyres_model.networks.mapping import MappingNetwork
from anyres_model.networks.synthesis import SpecLike, SynthesisNetwork
from anyres_model.ops import FAST_OPS, Ops

__all__ = ["Generator", "GeneratorConfig"]


class Generator(nn.Module):
    """z (B, z_dim) and patch specs -> patches (B, 3, p, p) of the images, roughly in [-1, 1].

    `ops` picks the implementation of the synthesis ops (REFERENCE_OPS for tests and benchmarks);
    it is not part of the config because it does not change what the network computes.
    """

    def __init__(self, cfg: GeneratorConfig, *, ops: Ops = FAST_OPS) -> None:
        super().__init__()
        self.cfg = cfg
        self.synthesis = SynthesisNetwork(cfg, ops=ops)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=cfg.z_dim,
            w_dim=cfg.w_dim,
            num_ws=self.num_ws,
            num_layers=cfg.mapping_layers,
            lr_multiplier=cfg.mapping_lr_multiplier,
            w_avg_beta=cfg.w_avg_beta,
        )

    @property
    def patch_size(self) -> int:
        return self.cfg.patch_size

    def forward(
        self, z: torch.Tensor, spec: SpecLike = None, *, truncation_psi: float = 1.0, update_emas: bool = False
    ) -> torch.Tensor:
        """G(z) is the global image at P×P; G(z, spec) the window `spec` names, at its scale.

        update_emas (training only) updates the tracked mean w and the layers' magnitude averages.
        Returns (B, img_channels, p, p) float32. Raises ValueError for bad z or specs.
        """
        ws = self.mapping(z, truncation_psi=truncation_psi, update_emas=update_emas)
        return self.synthesis(ws, spec, update_emas=update_emas)

    def scale_branch_parameters(self) -> list[nn.Parameter]:
        """The scale embedding and its projections, which phase 1 (fixed scale) freezes.

        At s = P the branch adds exactly nothing (the embedding is measured from s = P and the
        projections have no bias), so a fixed-scale phase gives it no gradient anyway; freezing it
        says so and saves the work.
        """
        syn = self.synthesis
        if syn.scale_embed is None:
            return []
        return [*syn.scale_embed.parameters(), *syn.scale_proj.parameters()]

    def load_unconditioned(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load weights saved without the scale branch (a phase-1 G) into this scale-conditioned G.

        The branch keeps its initialisation: its projections are zero, so the output is unchanged.
        Raises RuntimeError if anything other than the scale branch is missing or unexpected.
        """
        missing, unexpected = self.load_state_dict(state_dict, strict=False)
        missing = [k for k in missing if not k.startswith(("synthesis.scale_embed.", "synthesis.scale_proj."))]
        if missing or unexpected:
            raise RuntimeError(f"state_dict does not fit this generator: missing {missing}, unexpected {unexpected}")
