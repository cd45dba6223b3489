"""Multi-process training under torchrun: process group, gradient averaging, weight broadcast.

Gradients are averaged by hand after each backward (as StyleGAN3 does) rather than through
DistributedDataParallel, because the R1 penalty needs a double backward that DDP's hooks do
not support.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from anyres_model.devices import resolve_device


@dataclass(frozen=True)
class Process:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_process(device: str = "auto") -> Process:
    """Join the torchrun job if there is one (gloo on CPU, nccl on CUDA); otherwise a single process.

    device: "auto" (CUDA when available), "cpu", or "cuda".
    """
    on_cuda = resolve_device(device).type == "cuda"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = rank_from_env()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if on_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if on_cuda else "gloo")
    return Process(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def average_gradients(module: nn.Module, world_size: int) -> None:
    """All-reduce and average the gradients of `module` across ranks (no-op for one process)."""
    if world_size == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_module(module: nn.Module, world_size: int) -> None:
    """Give every rank rank 0's parameters and buffers."""
    if world_size == 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def all_ranks_mean(value: torch.Tensor, world_size: int) -> torch.Tensor:
    """Mean of a scalar tensor over ranks, for logging."""
    if world_size == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / world_size


def check_in_sync(module: nn.Module, world_size: int) -> None:
    """Assert that every rank holds the same parameters (a cheap checksum compared across ranks)."""
    if world_size == 1:
        return
    checksum = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum().reshape(1)
    low, high = checksum.clone(), checksum.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    assert torch.equal(low, high), (
        f"ranks disagree on {type(module).__name__}'s parameters: {low.item()} vs {high.item()}"
    )


def rank_from_env() -> int:
    """This process's rank as torchrun sets it (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
