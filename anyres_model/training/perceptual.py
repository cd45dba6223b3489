"""LPIPS (AlexNet) for the teacher loss, with weights found offline or failing clearly.

The `lpips` package ships its calibrated linear heads, but its AlexNet trunk comes from
torchvision's ImageNet weights, which torchvision downloads on first use. Here the trunk is
loaded from a file: the torch hub cache (where torchvision would have put it) or a path the
user gives. `random` builds a randomly initialised trunk — for tests of the plumbing only.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lpips
import torch
from torch import nn

from anyres_model.weights import find_weights, hub_checkpoint

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
# lpips' AlexNet wrapper splits torchvision's `features` into five slices; features.i lives in slice k.
_SLICE_OF_FEATURE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 3, 6: 3, 7: 3, 8: 4, 9: 4, 10: 5, 11: 5}


def default_alexnet_path() -> Path:
    """Where torchvision keeps AlexNet's ImageNet weights: $TORCH_HOME/hub/checkpoints/."""
    return hub_checkpoint(ALEXNET_FILE)


def _missing_weights_message(tried: Path) -> str:
    return (
        f"LPIPS needs AlexNet's ImageNet weights, file {ALEXNET_FILE}, which was not found at {tried}. "
        f"Download it from {ALEXNET_URL} and put it in {default_alexnet_path().parent}/ "
        f"(or set TORCH_HOME), or pass its path (--lpips /path/to/{ALEXNET_FILE}). "
        "`--lpips random` uses a random trunk and is meant for tests only."
    )


def load_lpips(weights: str = "alex", *, spatial: bool = True) -> nn.Module:
    """LPIPS-AlexNet in eval mode with frozen parameters.

    weights: "alex" (the torch hub cache), "random" (random trunk, tests only), or a path to
    torchvision's AlexNet state_dict. Raises FileNotFoundError naming the file and where to put it.
    """
    with warnings.catch_warnings():  # lpips still calls torchvision's deprecated `pretrained=` argument
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = lpips.LPIPS(net="alex", pnet_rand=True, spatial=spatial, verbose=False)
    if weights != "random":
        path = find_weights(None if weights == "alex" else weights, ALEXNET_FILE, missing=_missing_weights_message)
        state = torch.load(path, map_location="cpu", weights_only=True)
        trunk = {}
        for name, tensor in state.items():
            parts = name.split(".")
            if parts[0] != "features":
                continue  # the classifier head is not used by LPIPS
            index = int(parts[1])
            trunk[f"slice{_SLICE_OF_FEATURE[index]}.{index}.{parts[2]}"] = tensor
        try:
            model.net.load_state_dict(trunk, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{path} is not torchvision's AlexNet state_dict ({ALEXNET_FILE}): {err}") from err
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model
