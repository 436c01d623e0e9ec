"""DistributedDataParallel support for the fit loop: who this process is, its data shard, collectives.

Nothing here starts processes: ``torchrun`` does (see :mod:`gnn_recsys.training.distributed`). When
``torch.distributed`` is not initialised every helper behaves as the single process of a world of one,
so the single-process loop runs exactly the code it ran before.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

#: Environment variables ``torchrun`` sets for every process it starts.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` training processes (``size == 1``: no DDP)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints, logs and reports metrics."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """The initialised process group's rank and size, or a world of one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return World(torch.distributed.get_rank(), torch.distributed.get_world_size())
    return World()


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_ENV)


def init_from_torchrun(device: str = "auto") -> World:
    """Initialise the process group from ``torchrun``'s environment (nccl on CUDA, gloo on CPU).

    On CUDA each process takes the GPU of its ``LOCAL_RANK``. Without torchrun's environment (a plain
    ``python`` run) nothing is initialised and the world is one process.
    """
    if not launched_by_torchrun() or torch.distributed.is_initialized():
        return current_world()
    cuda = device == "cuda" or device.startswith("cuda:") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        local_rank, gpus = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local_rank >= gpus:  # else CUDA's "invalid device ordinal", which names neither cause nor fix
            fewer = f"--nproc_per_node={gpus} or fewer, or " if gpus else ""
            raise RuntimeError(
                f"torchrun started process {local_rank} of {os.environ.get('LOCAL_WORLD_SIZE', '?')} on this "
                f"machine, but it has {gpus} GPU(s) and DDP takes one GPU per process: use "
                f"{fewer}train on the CPU (--set train.device=cpu)"
            )
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    world = current_world()
    logger.info("DDP: rank %d of %d (%s)", world.rank, world.size, torch.distributed.get_backend())
    return world


def check_config(sparse_embedding: bool, world: World) -> None:
    """Refuse what DDP cannot do: it all-reduces dense gradients only."""
    if sparse_embedding and world.distributed:
        raise ValueError(
            "model.sparse_embedding cannot train under DistributedDataParallel (it does not all-reduce "
            "sparse gradients): set model.sparse_embedding to false for a torchrun launch"
        )


def shard_order(order: np.ndarray, world: World) -> np.ndarray:
    """This rank's part of an epoch's sample order: every ``size``-th sample from position ``rank``.

    The order is first cut to a multiple of ``size`` (at most ``size - 1`` samples of the epoch are left
    out), so every rank gets as many samples -- and batches -- as the others. With a per-rank batch of
    ``b``, batch ``i`` of all ranks together is exactly batch ``i`` of one process with batch
    ``size * b`` on the same order: the averaged gradient then equals the single-process one.
    """
    if not world.distributed:
        return order
    usable = len(order) - len(order) % world.size
    return order[:usable][world.rank :: world.size]


def all_reduce_sum(values: list[float], device: torch.device, world: World) -> list[float]:
    """Sums of ``values`` over all ranks (float64, on ``device`` as nccl needs)."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def gather_objects(obj: Any, world: World) -> list[Any]:
    """``obj`` of every rank, in rank order (a list of one without DDP)."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    torch.distributed.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.distributed:
        torch.distributed.barrier()


class LossForward(nn.Module):
    """``forward(batch) = model.loss(batch)``, so the loss goes through the DDP wrapper.

    DDP synchronises gradients only for computations run by its own ``forward``; calling
    ``model.loss`` on the unwrapped model would train every rank on its own gradients. The loss
    module is held outside the module tree: it has no trainable parameters and its buffers (the
    negative-sampling distribution) are the same on every rank.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._loss_fn = (loss_fn,)  # a tuple: not registered as a submodule

    def forward(self, batch: Any, generator: torch.Generator | None, type_weights: Tensor | None) -> Tensor:
        return self.model.loss(batch, self._loss_fn[0], generator, type_weights)


def wrap(
    model: nn.Module, loss_fn: nn.Module, device: torch.device, *, find_unused: bool = False
) -> nn.Module:
    """The DDP-wrapped loss of ``model`` (call it as ``wrapped(batch, generator, type_weights)``).

    ``find_unused``: some parameters take no part in this run (DGSR's type heads when the samples
    carry no target type); DDP then looks for them each step (an extra pass over the autograd graph).
    A parameter unused on every rank keeps no gradient, as in one process.
    """
    from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

    return DistributedDataParallel(
        LossForward(model, loss_fn),
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused,
    )
