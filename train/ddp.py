"""Start distributed (DDP) training: `edgeecg train --ddp [N]` on one machine, torchrun across machines.

`launch` spawns N local processes (torch.multiprocessing, a free port on
127.0.0.1) that join one process group and run the same function; the
torchrun entry point (`torchrun ... -m edgeecg.train.ddp [edgeecg train options]`)
joins the group torchrun describes and runs `edgeecg train` in every process.
See README.md, "Distributed training (PyTorch DDP)".
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any, Callable

import torch
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException

from edgeecg.errors import EdgeECGError, first_line

from . import distributed


def default_process_count(device: str = "auto") -> int:
    """One process per visible GPU; two on a machine without one (or with --device cpu)."""
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 2


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or distributed.is_distributed()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(local_rank: int, fn: Callable, arg: Any, nprocs: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(local_rank),
                      LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nprocs), LOCAL_WORLD_SIZE=str(nprocs))
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nprocs))  # no oversubscribed CPU cores
    distributed.init_from_env()
    try:
        result = fn(arg)
        if distributed.is_main():
            results.put(result)
    except EdgeECGError as exc:  # handed to the parent, which prints it as one line
        results.put(exc)
        raise SystemExit(2) from None
    finally:
        distributed.shutdown()


def launch(fn: Callable[[Any], Any], arg: Any, nprocs: int) -> Any:
    """Run `fn(arg)` in `nprocs` processes forming one DDP group on this machine; rank 0's result."""
    if nprocs < 1:
        raise EdgeECGError(f"--ddp needs at least one process, got {nprocs}")
    if torch.cuda.is_available() and nprocs > torch.cuda.device_count():
        raise EdgeECGError(f"--ddp {nprocs}: only {torch.cuda.device_count()} GPU(s) visible")
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)  # its "terminating process" notice
    try:
        mp.spawn(_worker, args=(fn, arg, nprocs, free_port(), results), nprocs=nprocs, join=True)
    except ProcessException as exc:
        while not results.empty():
            outcome = results.get()
            if isinstance(outcome, EdgeECGError):
                raise outcome from None
        raise EdgeECGError(f"distributed training failed: {first_line(exc)}") from None
    outcome = results.get()
    if isinstance(outcome, EdgeECGError):
        raise outcome
    return outcome


def main() -> None:
    """torchrun entry point: every process runs `edgeecg train` with the given options in one DDP group."""
    if "WORLD_SIZE" not in os.environ:
        sys.exit("edgeecg.train.ddp is started by torchrun; on one machine use `edgeecg train --ddp N`")
    from edgeecg.cli import main as edgeecg_main

    distributed.init_from_env()
    sys.argv = [sys.argv[0], "train", *sys.argv[1:]]
    try:
        edgeecg_main()
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
