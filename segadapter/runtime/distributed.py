"""torch.distributed helpers: init from torchrun's environment, rank queries, DDP wrapping.

Without torchrun (WORLD_SIZE unset or 1) everything degrades to a single process, so the same
trainer code runs in both settings.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError

# Rank 0 may evaluate or write checkpoints while the others wait at a collective: be patient.
DEFAULT_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this process's GPU when CUDA is available, else CPU; 'cuda' without a GPU is an error."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device: expected auto, cpu or cuda, got {preference!r}")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available; use device=auto or cpu")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    device = torch.device("cuda", local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


def init_distributed(device: str = "auto", init_method: str | None = None,
                     timeout: timedelta = DEFAULT_TIMEOUT) -> DistInfo:
    """Join the process group described by torchrun's RANK / WORLD_SIZE / LOCAL_RANK variables.

    The backend follows the device: NCCL on CUDA, gloo on CPU. `init_method` defaults to env://
    (MASTER_ADDR / MASTER_PORT); tests pass a file:// URL instead.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank,
                                world_size=world, timeout=timeout)
    return DistInfo(rank, world, local_rank, dev)


def cleanup() -> None:
    """Tear the process group down once every rank is done with it: a rank that destroys its gloo
    pairs while a peer still uses them can abort that peer's process (seen at the end of a CPU DDP
    run: "terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        except RuntimeError:  # a peer already failed: its error is the one to report, not this
            pass
        dist.destroy_process_group()


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of `value` over all ranks (a copy; the input is left alone)."""
    value = value.detach().clone()
    if get_world_size() > 1:
        dist.all_reduce(value)
        value /= get_world_size()
    return value


def any_rank(flags: list[bool], device: torch.device | str = "cpu") -> list[bool]:
    """For each flag: is it set on any rank? One small all-reduce (MAX), so every rank takes the
    same decision (stop now, skip this step); `device` must suit the backend (CUDA for NCCL)."""
    if get_world_size() == 1:
        return list(flags)
    votes = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=device)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return [bool(v) for v in votes.tolist()]


def all_gather_objects(obj: Any) -> list[Any]:
    """`obj` of every rank, in rank order (a one-element list without a process group)."""
    if get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def wrap_model(model: nn.Module, info: DistInfo, find_unused_parameters: bool = False) -> nn.Module:
    """DDP-wrap for multi-process runs (identity otherwise), with SyncBatchNorm where it works.

    SyncBatchNorm only synchronises GPU tensors; on CPU (gloo) BatchNorm stays per process, so
    its batch statistics come from the local batch - the usual behaviour of plain DDP.
    """
    if not info.distributed:
        return model
    if has_batchnorm(model):
        if info.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif info.is_main:
            warnings.warn("BatchNorm statistics stay per process under CPU DDP (SyncBatchNorm needs CUDA)",
                          stacklevel=2)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                               find_unused_parameters=find_unused_parameters)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside a DDP wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
