"""The FID Inception-v3 network (TensorFlow's 2015-12-05 graph, 2048-d pool3 features), loaded offline.

The network is torch-fidelity's port (`FeatureExtractorInceptionV3`, the same one torch-fidelity
and clean-fid compute FID with): it takes uint8 images of any size, resizes them to 299×299
with TensorFlow-1-compatible bilinear interpolation, as the original graph does, and returns the
pool3 features. Its constructor would download the weights, or unpickle a given file with
`weights_only=False`; here the module is built empty and the weights are loaded with
`torch.load(weights_only=True)` after checking every key and shape.

Weights are looked for, in order: an explicit path, `$ANYRES_INCEPTION_WEIGHTS`, then the torch
hub cache (`$TORCH_HOME/hub/checkpoints/`, where torch-fidelity itself caches them).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

from anyres_model.weights import find_weights, hub_checkpoint

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = URL_INCEPTION_V3
INCEPTION_ENV = "ANYRES_INCEPTION_WEIGHTS"
FEATURES = 2048


class InceptionV3(FeatureExtractorInceptionV3):
    """torch-fidelity's Inception-v3 with random weights until `load_state_dict` is given the real ones.

    forward: uint8 (B, 3, H, W), any H and W → tuple with one (B, 2048) float32 tensor.
    """

    def __init__(self) -> None:
        empty = io.BytesIO()
        torch.save({}, empty)
        empty.seek(0)
        # The parent constructor insists on loading a state dict; give it an empty one (see load_state_dict).
        super().__init__("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)

    def randomize_(self, seed: int = 0) -> InceptionV3:
        """Variance-preserving random weights (He-normal convolutions, identity batch norms), in place.

        PyTorch's default initialisation shrinks activations ~1e-8 by pool3 over this depth, which
        makes every image's features the same; these keep them image-dependent, for tests.
        """
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
                elif isinstance(module, torch.nn.BatchNorm2d):
                    module.reset_parameters()
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        if not state_dict:  # the parent constructor's placeholder load: keep the random initialisation
            strict = False
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


@dataclass(frozen=True)
class Inception:
    """A loaded feature network and where its weights came from ("random" for tests)."""

    model: InceptionV3
    source: str
    sha256: str | None  # of the weights file; None for random weights

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pool3 features of uint8 (B, 3, H, W) images: (B, 2048) float64 on the CPU."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"Inception takes uint8 (B, 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
        device = next(self.model.parameters()).device
        (feats,) = self.model(images.to(device))
        return feats.to("cpu", torch.float64)


def default_inception_path() -> Path:
    """Where torch-fidelity caches the weights: $TORCH_HOME/hub/checkpoints/INCEPTION_FILE."""
    return hub_checkpoint(INCEPTION_FILE)


def missing_weights_message(tried: Path) -> str:
    return (
        f"FID/KID need the Inception-v3 weights file {INCEPTION_FILE} (TensorFlow's 2015-12-05 network as "
        f"converted by torch-fidelity); not found at {tried}. Download it from {INCEPTION_URL} and put it in "
        f"{default_inception_path().parent}/ (or set TORCH_HOME), or point ${INCEPTION_ENV} or "
        "--inception-weights at it. SWD and pSWD need no weights."
    )


def find_inception_weights(path: str | Path | None = None) -> Path:
    """The weights file to use: `path`, else $ANYRES_INCEPTION_WEIGHTS, else the torch hub cache.

    Raises FileNotFoundError naming the file, the places tried, and where to download it.
    """
    return find_weights(path or os.environ.get(INCEPTION_ENV), INCEPTION_FILE, missing=missing_weights_message)


def check_state_dict(state: object, reference: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """`state` if it has exactly the reference's keys and shapes; otherwise ValueError saying what differs."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source}: expected a state_dict (name → tensor) of Inception-v3, got {type(state).__name__}")
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in reference.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                more = f" and {len(items) - 5} more" if len(items) > 5 else ""
                parts.append(f"{label}: {', '.join(items[:5])}{more}")
        raise ValueError(
            f"{source} is not torch-fidelity's Inception-v3 state_dict ({INCEPTION_FILE}); " + "; ".join(parts)
        )
    return state


def load_inception(
    weights: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
) -> Inception:
    """The FID Inception network in eval mode, frozen.

    weights: a path to torch-fidelity's `weights-inception-2015-12-05-6726825d.pth`, None (look in
    $ANYRES_INCEPTION_WEIGHTS, then the torch hub cache), or "random" (random initialisation, for
    tests of the plumbing: its features mean nothing). Raises FileNotFoundError when no file is
    found and ValueError when the file is not that network's state_dict.
    """
    model = InceptionV3()
    if str(weights) == "random":
        return Inception(model=model.randomize_().to(device), source="random", sha256=None)
    path = find_inception_weights(weights)
    data = path.read_bytes()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated download or a pickle with code in it: say which file
        raise ValueError(f"{path}: cannot be read as a weights-only state_dict ({err})") from err
    model.load_state_dict(check_state_dict(state, model.state_dict(), str(path)))
    return Inception(model=model.to(device), source=str(path), sha256=hashlib.sha256(data).hexdigest())
