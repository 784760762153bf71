"""torchrun support: the same training code runs as one process or as a DDP group (gloo on CPU)."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed() -> None:
    """Join the process group torchrun described in the environment (no-op for a single process)."""
    if is_distributed() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main_process() -> bool:
    """Only rank 0 logs, checkpoints and registers models."""
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown_distributed() -> None:
    """Leave the group cleanly; see STACK.md on gloo crashes at interpreter exit."""
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(value: object) -> object:
    """Rank 0's `value` on every rank (e.g. the MLflow run id that names the checkpoint folder)."""
    if not dist.is_initialized():
        return value
    box = [value if is_main_process() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
