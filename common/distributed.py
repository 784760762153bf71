"""torchrun support: the same training code runs as one process or as a DDP group (gloo on CPU, NCCL on GPU).

Two halves:
- inside a rank: joining the group, rank-0-only steps whose failure reaches every rank (`main_only`,
  `main_first`) instead of leaving the others blocked in a collective, reductions, and a clean exit
  (`run_as_rank`: destroy the group, then `os._exit`, see STACK.md on gloo crashes at interpreter exit);
- the launcher (`launch`): `suite run --nproc N` re-runs the same command under torch's own launcher
  (`torch.distributed.run`, i.e. torchrun) and turns the ranks' outcome into one exit status and at most
  one error line.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

ERROR_DIR_ENV = "SUITE_DIST_ERROR_DIR"  # set by `launch`: each failing rank leaves its one-line reason here
TIMEOUT_ENV = "SUITE_DIST_TIMEOUT_MIN"  # how long a rank waits in a collective (rank 0 validating, say)
DEFAULT_TIMEOUT_MIN = 120


class PeerFailure(Exception):
    """Another rank (rank 0) failed in a step this rank was waiting on; that rank reports the reason."""

    def __init__(self, code: int, reason: str):
        self.code = code
        super().__init__(f"rank 0 failed: {reason}")


def is_distributed() -> bool:
    """True when started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed() -> None:
    """Join the process group torchrun described in the environment (no-op for a single process)."""
    if is_distributed() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        timeout = dt.timedelta(minutes=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_MIN)))
        dist.init_process_group(backend=backend, timeout=timeout)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


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


def gather_objects(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank."""
    if not dist.is_initialized():
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def _exit_code(exc: BaseException) -> int:
    from common.errors import InputError

    if isinstance(exc, PeerFailure):
        return exc.code
    return 2 if isinstance(exc, InputError) else 1


def main_only(fn: Callable[[], T], share: bool = True) -> T | None:
    """Run `fn` on rank 0 and hand its result to every rank (`share=False`: the others get None).

    When `fn` raises on rank 0, the other ranks raise `PeerFailure` instead of waiting for a broadcast
    that never comes; rank 0 re-raises the original (and alone reports it).
    """
    if not dist.is_initialized():
        return fn()
    if is_main_process():
        try:
            value = fn()
        except BaseException as exc:
            broadcast_object(("error", _exit_code(exc), f"{type(exc).__name__}: {exc}"))
            raise
        broadcast_object(("ok", value if share else None))
        return value
    message = broadcast_object(None)
    if message[0] == "error":
        raise PeerFailure(message[1], message[2])
    return message[1]


def main_first(fn: Callable[[], T]) -> T:
    """`fn` on rank 0 first (it fills a cache or makes data), then on the other ranks; a failure reaches all."""
    value = main_only(fn, share=False)
    return value if is_main_process() else fn()


def sum_across_ranks(values: list[float], device: torch.device | None = None) -> list[float]:
    """Element-wise sum over the ranks (e.g. a loss total and a batch count)."""
    if not dist.is_initialized():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: DDP syncs them only at the next forward."""
    if not dist.is_initialized():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and bytes: equal digests, equal weights."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------
# A rank's whole life: run, report a failure in one line, leave cleanly
# --------------------------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """A killed launcher takes its ranks with it (torchrun starts them in sessions of their own)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the launcher died before prctl took effect
        os._exit(137)


def _record_failure(code: int, message: str | None, peer: bool) -> None:
    """Leave this rank's reason for the launcher; when run by hand under torchrun, print it instead."""
    folder = os.environ.get(ERROR_DIR_ENV)
    if folder:
        record = {"rank": rank_from_env(), "code": code, "message": message, "peer": peer, "time": time.time()}
        path = Path(folder) / f"rank{rank_from_env()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    elif message and not peer:
        print(message, file=sys.stderr)


def rank_from_env() -> int:
    return int(os.environ.get("RANK", "0"))


def run_as_rank(body: Callable[[], None], redact: Callable[[str], str] = lambda s: s) -> NoReturn:
    """Run one torchrun rank of a `suite` command and exit with 0, 2 (bad input) or 1 (anything else).

    Ranks other than 0 print nothing on stdout. A failure is one line: recorded for the launcher
    (`launch` prints the line that matters), or printed when torchrun was started by hand. A rank
    that failed only because rank 0 did (`PeerFailure`) or because torchrun stopped it stays silent.
    Every rank then destroys the process group and leaves with `os._exit` (gloo at interpreter exit).
    """
    from common.errors import InputError

    if os.environ.get(ERROR_DIR_ENV):
        _die_with_parent()

    def stopped(signum, frame):  # torchrun stops the others when one rank fails: unwind (MLflow marks FAILED)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    if rank_from_env() != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - rank 0 alone talks to the user
        warnings.simplefilter("ignore")
    code = 0
    try:
        body()
    except BaseException as exc:  # noqa: BLE001 - every way out of a rank ends in one status and one line
        code, peer = _exit_code(exc), False
        where = "" if rank_from_env() == 0 else f"rank {rank_from_env()}: "
        if isinstance(exc, PeerFailure):
            message, peer = None, True
        elif isinstance(exc, SystemExit):
            code = exc.code if isinstance(exc.code, int) else 1
            message, peer = None, True
        elif isinstance(exc, KeyboardInterrupt):
            code, message, peer = 130, None, True
        elif isinstance(exc, InputError):
            message = f"error: {where}{redact(str(exc))}"
        else:
            if os.environ.get("SUITE_DEBUG"):
                traceback.print_exc()
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            message = (f"error: {where}{type(exc).__name__}: {redact(first_line)} "
                       "(set SUITE_DEBUG=1 for the traceback)")
        try:
            _record_failure(code, message, peer)
        except OSError:
            if message:
                print(message, file=sys.stderr)
    finally:
        try:
            shutdown_distributed()
        except Exception:  # noqa: BLE001 - leaving anyway
            code = code or 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


# --------------------------------------------------------------------------------------------------
# The launcher side: `suite run --nproc N [--nnodes M --node-rank R --rdzv-endpoint HOST:PORT]`
# --------------------------------------------------------------------------------------------------
def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_per_rank(nproc: int) -> int:
    """Intra-op threads per rank so that the ranks of one machine never oversubscribe its cores."""
    return max(1, usable_cores() // max(nproc, 1))


def torchrun_args(module_args: list[str], nproc: int, nnodes: int = 1, node_rank: int = 0,
                  rdzv_endpoint: str | None = None) -> list[str]:
    """torchrun's own command line: `--standalone` on one machine, a static rendezvous across several."""
    args = ["--nnodes", str(nnodes), "--nproc-per-node", str(nproc), "--max-restarts", "0",
            "--monitor-interval", "0.5"]
    if nnodes == 1 and not rdzv_endpoint:
        args.append("--standalone")
    else:  # node 0 hosts the rendezvous store at HOST:PORT; --node-rank fixes which node holds global rank 0
        args += ["--node-rank", str(node_rank), "--rdzv-backend", "static", "--rdzv-endpoint", str(rdzv_endpoint)]
    return [*args, "--module", *module_args]


def _failure_report(error_dir: Path, failures: dict[int, Any]) -> tuple[int, str | None]:
    """The exit status and the one line to print: rank 0's own error first, else the earliest one."""
    records = []
    for path in error_dir.glob("rank*.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    own = [r for r in records if not r["peer"] and r["message"]]
    if own:
        first = min(own, key=lambda r: (r["rank"] != 0, r["time"]))
        return int(first["code"]) or 1, first["message"]
    if not failures:
        return 1, "error: the training processes failed without a reason"
    global_rank, failure = min(failures.items(), key=lambda item: (item[1].timestamp, item[0]))
    code = failure.exitcode
    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    return 1, f"error: training process rank {global_rank} {how} (set SUITE_DEBUG=1 for its traceback)"


def launch(module_args: list[str], nproc: int, nnodes: int = 1, node_rank: int = 0,
           rdzv_endpoint: str | None = None) -> int:
    """Run `python -m <module_args>` as `nproc` ranks on this machine under torchrun; return the exit status.

    Prints at most one line (on stderr) when the group failed: rank 0's own error if it had one, else
    the first rank's. `OMP_NUM_THREADS` defaults to cores // nproc.
    """
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_rank(nproc)))
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # c10d's socket chatter while the ranks meet
    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the ranks' outcome is reported below, once
    with tempfile.TemporaryDirectory(prefix="suite-ranks-") as folder:
        os.environ[ERROR_DIR_ENV] = folder
        try:
            torchrun.run(torchrun.parse_args(torchrun_args(module_args, nproc, nnodes, node_rank, rdzv_endpoint)))
        except ChildFailedError as exc:
            code, line = _failure_report(Path(folder), exc.failures)
            if line:
                print(line, file=sys.stderr)
            return code
        except SignalException as exc:
            print(f"error: stopped by signal {exc.sigval.name}", file=sys.stderr)
            return 128 + int(exc.sigval)
        except Exception as exc:  # noqa: BLE001 - rendezvous failures and the like: one line
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            print(f"error: torchrun: {type(exc).__name__}: {first_line}", file=sys.stderr)
            return 1
        finally:
            os.environ.pop(ERROR_DIR_ENV, None)
    return 0
