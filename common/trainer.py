"""One training loop for every domain: AdamW + OneCycle, AMP on CUDA, clipping, early stopping, resume."""
from __future__ import annotations

import functools
import math
import os
import random
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from common import distributed
from common.augment_seeding import reseed_for_epoch
from common.config import Constraints, Interval
from common.io import atomic_path, remove_abandoned_temp_files


@dataclass
class TrainConfig:
    """Optimisation settings shared by all domains (section `train` of every config)."""

    CONSTRAINTS: ClassVar[Constraints] = {
        "epochs": Interval(1), "batch_size": Interval(1), "lr": Interval(0, None, "neither"),
        "weight_decay": Interval(0), "pct_start": Interval(0, 1, "neither"), "grad_clip": Interval(0),
        "patience": Interval(1), "num_workers": Interval(0), "focal_gamma": Interval(0), "seed": Interval(0),
    }

    epochs: int = 10
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    pct_start: float = 0.3
    grad_clip: float = 1.0  # 0: no clipping
    patience: int = 3
    monitor: str = "val_auc"  # one of the validation metrics the domain declares
    # "auto": from the metric (the domain says whether higher or lower is better; val_loss: lower)
    monitor_mode: Literal["auto", "max", "min"] = "auto"
    amp: bool = True
    num_workers: int = 0
    loss: Literal["weighted_ce", "ce", "focal"] = "weighted_ce"
    focal_gamma: float = 2.0
    seed: int = 0
    keep_checkpoints: bool = False  # keep the run's checkpoint folder after it finished


def resolve_monitor(cfg: TrainConfig, directions: Mapping[str, Literal["max", "min"]], section: str) -> None:
    """Check `cfg.monitor` against the validation metrics a stage reports and set its mode from the metric.

    Before any epoch runs: a misspelt metric would otherwise surface after the first epoch, and a mode
    that contradicts the metric (val_loss with max) would silently keep the worst weights.
    """
    if cfg.monitor not in directions:
        raise ValueError(f"{section}.monitor {cfg.monitor!r} is not a validation metric of this stage "
                         f"(choose from: {', '.join(sorted(directions))})")
    derived = directions[cfg.monitor]
    if cfg.monitor_mode not in ("auto", derived):
        better = "higher" if derived == "max" else "lower"
        raise ValueError(f"{section}.monitor_mode {cfg.monitor_mode!r} contradicts {cfg.monitor} ({better} is "
                         f"better): leave it out (auto) or set {derived}")
    cfg.monitor_mode = derived


@dataclass
class TrainResult:
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    """Same seed, same run: Python, NumPy and torch generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng_states() -> dict[str, Any]:
    """Python, NumPy, torch and CUDA generator states as tensors and numbers (loadable with weights_only)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return {
        "python": torch.tensor(python_state, dtype=torch.int64), "python_version": version, "python_gauss": gauss,
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)), "numpy_pos": int(position),
        "numpy_has_gauss": int(has_gauss), "numpy_cached": float(cached), "numpy_kind": kind,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(state: dict[str, Any]) -> None:
    """Put every global generator back where `capture_rng_states` found it."""
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()),
                     state["python_gauss"]))
    np.random.set_state((state["numpy_kind"], state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def pick_device() -> torch.device:
    """CUDA when present (one GPU per torchrun process), else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors (and anything with `.to`, e.g. PyG data) inside nested dicts/lists to `device`."""
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    if hasattr(batch, "to"):
        return batch.to(device, non_blocking=device.type == "cuda")
    return batch


class Trainer:
    """Fits `model` with `loss_fn(model(inputs(batch)), batch)`, keeping the weights `validate` scores best.

    `inputs` picks what the network takes from a batch (default: the whole batch, e.g. a dict).

    `validate(model)` returns a dict with `val_loss` and the monitored metric; it runs on the unwrapped
    model. Under torchrun the model is wrapped in DistributedDataParallel (the loader's sampler shards
    each epoch); the training loss is averaged over the ranks; rank 0 alone validates, on the whole
    validation set with the unwrapped model (so its metrics are those of a one-process evaluation of
    the same weights), and hands the metrics to the others, so every rank takes the same best-epoch and
    early-stopping decisions; rank 0 alone checkpoints (with every rank's generator states) and reports.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        loss_fn: Callable[[Any, Any], torch.Tensor],
        validate: Callable[[nn.Module], dict[str, float]],
        checkpoint_dir: str | Path | None = None,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        device: torch.device | None = None,
        inputs: Callable[[Any], Any] | None = None,
    ):
        self.config = config
        self.device = device or pick_device()
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        self.validate = validate
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.on_epoch_end = on_epoch_end
        self.inputs = inputs or (lambda batch: batch)
        self.use_amp = config.amp and self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.train_model: nn.Module = self.model
        if distributed.is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    # -- checkpointing -------------------------------------------------------------------------
    def _save(self, name: str, state: dict[str, Any]) -> None:
        if self.checkpoint_dir is None or not distributed.is_main_process():
            return
        remove_abandoned_temp_files(self.checkpoint_dir / name)  # a kill inside an earlier save leaves one
        with atomic_path(self.checkpoint_dir / name) as tmp:
            torch.save(state, tmp)

    def _load_last(self) -> dict[str, Any] | None:
        """Rank 0 reads the checkpoint and hands it to the other ranks (other machines need no copy)."""
        def read() -> dict[str, Any] | None:
            path = self.checkpoint_dir / "last.pt" if self.checkpoint_dir else None
            if path is None or not path.is_file():
                return None
            # weights_only: a checkpoint is tensors, numbers and strings only, so a planted pickle cannot run code
            return torch.load(path, map_location="cpu", weights_only=True)

        return distributed.main_only(read)

    def _end_epoch(self, checkpoint: dict[str, Any], metrics: dict[str, float]) -> None:
        """Rank 0: write `last.pt`, then report the epoch."""
        self._save("last.pt", checkpoint)
        if self.on_epoch_end:
            self.on_epoch_end(checkpoint["epoch"], metrics)

    def _seed_this_rank(self) -> None:
        """Ranks other than 0 draw their own dropout and augmentation randomness (rank 0 keeps the seed's)."""
        if distributed.rank() > 0:
            seed_everything(int(np.random.SeedSequence([self.config.seed, distributed.rank()]).generate_state(1)[0]))

    def _restore_rng(self, state: dict[str, Any]) -> None:
        per_rank = state.get("rng_ranks")
        if per_rank is not None and len(per_rank) == distributed.world_size():
            restore_rng_states(per_rank[distributed.rank()])
        elif distributed.is_main_process():  # another number of processes: rank 0 continues, the others reseed
            restore_rng_states(state["rng"])

    def _report_weights(self) -> None:
        """Every rank must end with the same weights; SUITE_WEIGHTS_DIGEST_DIR keeps each rank's digest."""
        digest = distributed.state_digest(self.model.state_dict())
        digests = distributed.gather_objects(digest)
        if distributed.is_main_process() and len(set(digests)) > 1:
            warnings.warn(f"the {len(digests)} ranks ended with different weights ({digests})", stacklevel=3)
        folder = os.environ.get("SUITE_WEIGHTS_DIGEST_DIR")
        if folder:
            stage = self.checkpoint_dir.name if self.checkpoint_dir else "model"
            Path(folder).mkdir(parents=True, exist_ok=True)
            with open(Path(folder) / f"rank{distributed.rank()}.txt", "a") as fh:
                fh.write(f"{stage} {digest}\n")

    # -- training ------------------------------------------------------------------------------
    def fit(self, train_loader: Iterable, resume: bool = False) -> TrainResult:
        """Train until `epochs` or early stop; on return the model holds the best validation weights."""
        cfg = self.config
        steps_per_epoch = max(1, len(train_loader))  # type: ignore[arg-type]
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=cfg.pct_start
        )
        if cfg.monitor_mode == "auto":
            raise ValueError(f"monitor_mode is 'auto' for {cfg.monitor!r}: resolve it from the domain's metrics "
                             "(resolve_monitor; `suite run` does) or set max or min")
        sign = 1.0 if cfg.monitor_mode == "max" else -1.0
        start_epoch, best_score, best_epoch, bad_epochs = 0, -math.inf, -1, 0
        history: list[dict[str, float]] = []
        best_state = None

        self._seed_this_rank()
        state = self._load_last() if resume else None
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if state["scheduler"]["total_steps"] == scheduler.total_steps:
                scheduler.load_state_dict(state["scheduler"])
            else:  # `--set train.epochs=N` extends the run: the one-cycle schedule is re-planned over the new total
                scheduler.last_epoch = min(state["scheduler"]["last_epoch"], scheduler.total_steps - 1)
            self.scaler.load_state_dict(state["scaler"])
            start_epoch, best_score, best_epoch = state["epoch"] + 1, state["best_score"], state["best_epoch"]
            bad_epochs, history, best_state = state["bad_epochs"], state["history"], state["best_model"]
            self._restore_rng(state)
            if history and self.on_epoch_end:
                # The kill may have come between the checkpoint and the log of that epoch: log it (again).
                distributed.main_only(lambda: self.on_epoch_end(state["epoch"], history[-1]))

        stopped_early = bad_epochs >= cfg.patience
        for epoch in range(start_epoch, cfg.epochs):
            if stopped_early:
                break
            for holder in (getattr(train_loader, "sampler", None), getattr(train_loader, "batch_sampler", None)):
                if hasattr(holder, "set_epoch"):
                    holder.set_epoch(epoch)
            reseed_for_epoch(train_loader, cfg.seed, epoch, distributed.rank())
            train_loss = self._train_epoch(train_loader, scheduler, epoch)
            distributed.broadcast_buffers(self.model)  # BatchNorm statistics: rank 0's, on every rank
            metrics = {"train_loss": train_loss, **distributed.main_only(self._validate)}
            if cfg.monitor not in metrics:
                raise KeyError(f"validate() returned {sorted(metrics)}, not the monitored {cfg.monitor!r}")
            history.append(metrics)
            score = sign * metrics[cfg.monitor]
            if not math.isfinite(score):  # e.g. a heading error with no car matched yet: the worst score
                score = -math.inf
            if score > best_score or best_state is None:
                best_score, best_epoch, bad_epochs = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                bad_epochs += 1
            stopped_early = bad_epochs >= cfg.patience
            rng_ranks = distributed.gather_objects(capture_rng_states())
            checkpoint = {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": epoch, "best_score": best_score, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "history": history, "best_model": best_state, "rng": rng_ranks[0], "rng_ranks": rng_ranks,
            }
            distributed.main_only(functools.partial(self._end_epoch, checkpoint, metrics))  # a failure stops all
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self._report_weights()
        return TrainResult(best_epoch, sign * best_score, history, stopped_early)

    def _train_epoch(self, loader: Iterable, scheduler: Any, epoch: int) -> float:
        self.train_model.train()
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{self.config.epochs}", leave=False,
                   disable=None if distributed.is_main_process() else True)
        for batch in bar:
            batch = move_to_device(batch, self.device)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
                loss = self.loss_fn(self.train_model(self.inputs(batch)), batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch + 1}")
            self.scaler.scale(loss).backward()
            if self.config.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            scale_before = self.scaler.get_scale() if self.use_amp else 1.0
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if not self.use_amp or self.scaler.get_scale() >= scale_before:
                scheduler.step()  # GradScaler skipped the optimizer step on inf/NaN gradients: the schedule waits too
            total += loss.item()
            count += 1
            bar.set_postfix(loss=f"{total / count:.4f}")
        total, count = distributed.sum_across_ranks([total, count], self.device)  # every rank's batches
        return total / max(count, 1)

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        self.model.eval()
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp):
            return {k: float(v) for k, v in self.validate(self.model).items()}
