"""Checkpoints: state_dicts plus a JSON config, written atomically, read with `torch.load(weights_only=True)`.

One file holds
- `config`: JSON-ready settings, by convention {"G": GeneratorConfig as dict, "D": DiscriminatorConfig
  as dict, ...} (training adds its own keys); the loader rebuilds the networks from it;
- `tensors`: named state_dicts ("G", "G_ema", "D", optimiser states, RNG states: anything
  `torch.load(weights_only=True)` accepts: tensors, numbers, strings, lists and dicts of them);
- `extra_json`: any other JSON-ready record (progress in kimg, metrics, versions).
No pickled code: loading never runs anything from the file.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anyres_data.settings import from_dict, to_dict
from anyres_model.networks.config import DiscriminatorConfig, GeneratorConfig
from anyres_model.networks.discriminator import Discriminator
from anyres_model.networks.generator import Generator

FORMAT = "anyres-checkpoint-1"
_RUN_CHECKPOINT = re.compile(r"^checkpoint-(\d+)\.pt$")


@dataclass(frozen=True)
class Checkpoint:
    config: dict[str, Any]
    tensors: dict[str, Any]
    extra_json: dict[str, Any]


def network_config(g: GeneratorConfig, d: DiscriminatorConfig | None = None) -> dict[str, Any]:
    """The conventional config entries for the networks: {"G": ..., "D": ...}."""
    config: dict[str, Any] = {"G": to_dict(g)}
    if d is not None:
        config["D"] = to_dict(d)
    return config


def save_checkpoint(
    path: str | Path,
    *,
    config: Mapping[str, Any],
    tensors: Mapping[str, Any],
    extra_json: Mapping[str, Any] | None = None,
) -> None:
    """Write the checkpoint to `path` atomically (temporary file in the same folder, then rename).

    Raises TypeError if config or extra_json is not JSON-serialisable.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "config_json": json.dumps(config),
        "extra_json": json.dumps(dict(extra_json or {})),
        "tensors": dict(tensors),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` (or a run directory's newest).

    Raises ValueError if the file is not one, FileNotFoundError if there is none.
    """
    try:
        payload = torch.load(resolve_checkpoint(path), map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:  # foreign pickles, truncated files
        raise ValueError(
            f"{path} is not a checkpoint this tool wrote (it holds objects other than tensors and plain "
            "data, or is damaged); anyres checkpoints load without running any pickled code"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an anyres checkpoint (expected format {FORMAT!r})")
    return Checkpoint(
        config=json.loads(payload["config_json"]),
        tensors=payload["tensors"],
        extra_json=json.loads(payload["extra_json"]),
    )


def _entry(ckpt: Checkpoint, path: str | Path, key: str, which: str) -> tuple[dict, Mapping]:
    if key not in ckpt.config:
        raise ValueError(f"{path}: config has no {key!r} entry (has {', '.join(ckpt.config)})")
    if which not in ckpt.tensors:
        raise ValueError(f"{path}: no state {which!r} (has {', '.join(ckpt.tensors)})")
    return ckpt.config[key], ckpt.tensors[which]


def load_generator(path: str | Path, which: str = "G_ema", *, map_location: str | torch.device = "cpu") -> Generator:
    """Rebuild the generator from the checkpoint's config["G"] and load its state `which`, in eval mode."""
    ckpt = load_checkpoint(path, map_location=map_location)
    config, state = _entry(ckpt, path, "G", which)
    generator = Generator(from_dict(GeneratorConfig, config))
    generator.load_state_dict(state)
    return generator.eval().to(map_location)


def load_discriminator(
    path: str | Path, which: str = "D", *, map_location: str | torch.device = "cpu"
) -> Discriminator:
    """Rebuild the discriminator from config["D"] and load its state `which`, in eval mode."""
    ckpt = load_checkpoint(path, map_location=map_location)
    config, state = _entry(ckpt, path, "D", which)
    discriminator = Discriminator(from_dict(DiscriminatorConfig, config))
    discriminator.load_state_dict(state)
    return discriminator.eval().to(map_location)


def run_checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """Where a training run keeps its checkpoint after `step` steps: RUN/checkpoints/checkpoint-STEP.pt."""
    return Path(run_dir) / "checkpoints" / f"checkpoint-{step:08d}.pt"


def run_checkpoints(run_dir: str | Path) -> list[Path]:
    """A training run's checkpoints, oldest first."""
    found = [p for p in (Path(run_dir) / "checkpoints").glob("checkpoint-*.pt") if _RUN_CHECKPOINT.match(p.name)]
    return sorted(found, key=lambda p: int(_RUN_CHECKPOINT.match(p.name).group(1)))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or the newest checkpoint of a run directory.

    Raises FileNotFoundError when the path does not exist or the run has no checkpoint yet.
    """
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = run_checkpoints(path)
        if not found:
            raise FileNotFoundError(f"{path} holds no checkpoints/checkpoint-*.pt yet (has the run started?)")
        return found[-1]
    raise FileNotFoundError(f"no checkpoint file or run directory at {path}")
