"""One training epoch and one evaluation pass: plain loops, metrics kept on the device."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from alexnet.metrics import EvalAccumulator, Predictions
from alexnet.run.bars import bar

Batch = tuple[Tensor, Tensor]
# How a pass shows its progress: True, a bar named after the pass (train, val, test); False, none;
# or a function that wraps the batches in the caller's bar, given the pass's name.
ShowProgress = bool | Callable[[Iterable[Batch], str], Iterable[Batch]]


@dataclass
class EpochProgress:
    """How far a training pass has got: what a mid-epoch checkpoint needs to continue it exactly."""

    loss_sum: Tensor  # float64 on the device: the summed batch losses so far
    images: int = 0
    seconds: float = 0.0


def _bar(batches: Iterable[Batch], name: str, progress: ShowProgress) -> Iterable[Batch]:
    if callable(progress):
        return progress(batches, name)
    return bar(batches, name) if progress else batches  # (a bar is hidden when stderr is no terminal)


def autocast(x: Tensor, dtype: torch.dtype | None) -> torch.autocast:
    """Mixed precision in `dtype` for computations on x's device; None means plain fp32."""
    return torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None)


def train_step(model: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer,
               autocast_dtype: torch.dtype | None = None,
               scaler: torch.amp.GradScaler | None = None, label_smoothing: float = 0.0) -> Tensor:
    """Forward, backward, update; returns the (detached) batch loss without syncing."""
    with autocast(x, autocast_dtype):
        loss = nn.functional.cross_entropy(model(x), y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach()


def train_one_epoch(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
                    optimizer: torch.optim.Optimizer, device: torch.device, progress: ShowProgress = True,
                    autocast_dtype: torch.dtype | None = None,
                    scaler: torch.amp.GradScaler | None = None, *,
                    resume: EpochProgress | None = None,
                    on_step: Callable[[EpochProgress], None] | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    label_smoothing: float = 0.0) -> dict[str, float]:
    """Update the model over every batch; return mean train loss, the learning rate it ended at,
    seconds and images/s.

    `resume` continues a pass from a mid-epoch checkpoint (the batches continue on their own);
    `on_step` is called after every step, the run's safe point to stop at; `scheduler` steps
    after every optimizer step."""
    model.train()
    state = resume or EpochProgress(torch.zeros((), dtype=torch.float64, device=device))
    start = time.perf_counter() - state.seconds
    for x, y in _bar(batches, "train", progress):
        loss = train_step(model, x, y, optimizer, autocast_dtype, scaler, label_smoothing)
        if scheduler is not None:
            scheduler.step()
        state.loss_sum += loss.double() * len(y)
        state.images += len(y)
        if on_step is not None:
            state.seconds = time.perf_counter() - start
            on_step(state)
    train_loss = float(state.loss_sum) / state.images  # the one host sync of the epoch
    seconds = time.perf_counter() - start
    return {"train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"], "train_time_s": seconds,
            "images_per_s": state.images / seconds}


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], num_classes: int,
             device: torch.device, progress: ShowProgress = True,
             autocast_dtype: torch.dtype | None = None,
             split: str = "test", *,
             predictions: Predictions | None = None) -> tuple[dict[str, float], Tensor]:
    """Loss, top-1, top-5 and macro-F1 over the whole split (keys named after it), plus its
    confusion matrix. `predictions`, when given, is filled with each image's predicted class and
    confidence (kept on the device, read back with the metrics: no sync per batch)."""
    model.eval()
    accumulator = EvalAccumulator(num_classes, device, keep_predictions=predictions is not None)
    for x, y in _bar(batches, split, progress):
        with autocast(x, autocast_dtype):
            logits = model(x).float()
        accumulator.update(logits, y, nn.functional.cross_entropy(logits, y, reduction="sum"))
    if predictions is not None:
        kept = accumulator.predictions()
        predictions.predicted, predictions.confidence = kept.predicted, kept.confidence
    return accumulator.compute(split), accumulator.confusion_matrix()
