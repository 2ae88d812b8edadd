"""Helpers that let the training loops run under DistributedDataParallel (DDP).

Every helper is a no-op on a single process (or a process group of one), so
`edgeecg train` without `--ddp` runs exactly the code it always ran. Across
ranks:

- batches: `--batch` / `--ssl-batch` stay the *global* batch; each rank takes
  its 1/world share through a DistributedSampler, so a run's hyper-parameters
  mean the same with any process count;
- gradients: DDP averages them; SimCLR embeddings are gathered *with* their
  gradients, so every rank scores its views against the whole global batch;
- BatchNorm: SyncBatchNorm on CUDA (statistics over the global batch, which
  SimCLR needs with its small per-GPU batches); on CPU (gloo) PyTorch has no
  SyncBatchNorm, so BN normalises per rank and rank 0's running statistics are
  broadcast (every forward, and at the end of every epoch);
- files and decisions: only rank 0 writes; what it reads (checkpoints, earlier
  fold results, validation scores) is broadcast, so ranks never need a shared
  file system and always take the same early-stopping decisions.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from edgeecg.errors import EdgeECGError

T = TypeVar("T")
RANK_SEED_STRIDE = 100_003  # a prime: per-rank augmentation/dropout streams never coincide


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0: the one process that logs, plots and writes files."""
    return rank() == 0


def backend() -> str:
    """NCCL for CUDA tensors (when there is a GPU), gloo for CPU tensors (object broadcasts, CPU runs)."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def init_from_env() -> None:
    """Join the process group described by torchrun's (or `launch`'s) environment variables."""
    if not dist.is_available():
        raise EdgeECGError("this PyTorch build has no torch.distributed")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend())


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: torch.device) -> torch.device:
    """Each rank drives its own GPU (cuda:LOCAL_RANK); CPU stays CPU."""
    if is_distributed() and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def seed_for_rank(seed: int) -> int:
    """Rank 0 keeps the single-process seed; other ranks draw their own augmentations and dropout."""
    return seed + RANK_SEED_STRIDE * rank()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (filling a cache), the other ranks after it (reading the cache)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def from_main(load: Callable[[], T]) -> T:
    """`load()` evaluated on rank 0 only, its result sent to every rank."""
    if not is_distributed():
        return load()
    box = [load() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_over_ranks(*values: float) -> tuple:
    """Element-wise sums over ranks (the values unchanged on one process)."""
    if not is_distributed():
        return values
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return tuple(total.tolist())


def gather_with_grad(z: torch.Tensor) -> torch.Tensor:
    """All ranks' rows in rank order; gradients flow back to the rank that computed each row."""
    if not is_distributed():
        return z
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated in torch 2.10+ for a private module; public since torch 1.x
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(z.contiguous()))


def check_batch_split(batches: dict[str, int]) -> None:
    """Each global batch must split evenly over the ranks (checked by every rank before anything is written)."""
    for option, batch in batches.items():
        if batch % world_size():
            raise EdgeECGError(f"{option} {batch} does not split evenly over {world_size()} processes")


def loader(dataset: Dataset, batch: int, workers: int, seed: int, epoch: int) -> DataLoader:
    """Shuffled batches of `batch` images in total: on one process all of them, across ranks 1/world each."""
    drop_last = len(dataset) > batch
    if not is_distributed():
        return DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=drop_last, num_workers=workers)
    world = world_size()
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank(), shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch // world, sampler=sampler, drop_last=drop_last,
                      num_workers=workers)


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` itself on one process; across ranks, DDP around it (SyncBatchNorm first on CUDA).

    Every parameter is made trainable before wrapping and `find_unused_parameters`
    is on, so DDP tracks them all: progressive unfreezing then only changes
    requires_grad (frozen parts count as unused and keep no gradient), and the
    head a phase does not use (classifier in SSL, projection head in fine-tuning)
    needs no special case.
    """
    if not is_distributed():
        return module
    if device.type == "cuda" and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                     and not isinstance(m, nn.SyncBatchNorm) for m in module.modules()):
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)  # in place: same parameters and buffers
    module.requires_grad_(True)
    return nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)


def sync_buffers(model: nn.Module) -> None:
    """Rank 0's BatchNorm running statistics to every rank, so all ranks hold one identical model."""
    if is_distributed():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
