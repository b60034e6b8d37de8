"""One training epoch and one evaluation pass: plain loops, metrics kept on the device."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from alexnet.metrics import EvalAccumulator, Predictions
from alexnet.run.progress import bar

Batch = tuple[Tensor, Tensor]
# True: a bar named after the pass; False: none; or a function wrapping batches in the caller's bar.
ShowProgress = bool | Callable[[Iterable[Batch], str], Iterable[Batch]]


@dataclass
class EpochProgress:
    """What a mid-epoch checkpoint needs to continue a training pass exactly."""

    loss_sum: Tensor  # float64 on the device: the summed batch losses so far
    images: int = 0
    seconds: float = 0.0


def _bar(batches: Iterable[Batch], name: str, progress: ShowProgress) -> Iterable[Batch]:
    if callable(progress):
        return progress(batches, name)
    return bar(batches, name) if progress else batches  # (a bar is hidden when stderr is no terminal)


class _Together:
    """The runs' batches side by side, sized for a progress bar."""

    def __init__(self, batches: Sequence[Iterable[Batch]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches[0])  # type: ignore[arg-type]

    def __iter__(self) -> Iterable[tuple[Batch, ...]]:
        return zip(*self.batches, strict=True)


def autocast(x: Tensor, dtype: torch.dtype | None) -> torch.autocast:
    """`dtype` None means plain fp32."""
    return torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None)


def train_step(model: nn.Module, inputs: Sequence[Tensor], targets: Sequence[Tensor],
               optimizers: Sequence[torch.optim.Optimizer], autocast_dtype: torch.dtype | None = None,
               scalers: Sequence[torch.amp.GradScaler | None] = (),
               label_smoothing: Sequence[float] = ()) -> list[Tensor]:
    """One loss summed over the runs, so each run's gradients are its own (scaled by its own fp16 scaler,
    so one run's overflow never shrinks another's); losses stay unsynced."""
    with autocast(inputs[0], autocast_dtype):
        losses = [nn.functional.cross_entropy(logits, y, label_smoothing=smoothing) for logits, y, smoothing
                  in zip(model(inputs), targets, label_smoothing or [0.0] * len(targets), strict=True)]
    scalers = [s if s is not None and s.is_enabled() else None for s in scalers or [None] * len(losses)]
    scaled = [loss if s is None else s.scale(loss) for loss, s in zip(losses, scalers, strict=True)]
    model.zero_grad(set_to_none=True)
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    (scaled[0] if len(scaled) == 1 else torch.stack(scaled).sum()).backward()
    model.share_grads()
    for optimizer, scaler in zip(optimizers, scalers, strict=True):
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
    return [loss.detach() for loss in losses]


def train_one_epoch(model: nn.Module, batches: Sequence[Iterable[Batch]],
                    optimizers: Sequence[torch.optim.Optimizer], device: torch.device,
                    progress: ShowProgress = True, autocast_dtype: torch.dtype | None = None,
                    scalers: Sequence[torch.amp.GradScaler | None] = (), *,
                    resume: Sequence[EpochProgress | None] | None = None,
                    on_step: Callable[[list[EpochProgress]], None] | None = None,
                    schedulers: Sequence[torch.optim.lr_scheduler.LRScheduler | None] = (),
                    label_smoothing: Sequence[float] = ()) -> list[dict[str, float]]:
    """`resume` continues mid-epoch checkpoints' passes; `on_step`, after every step, is the runs'
    safe point; each scheduler steps after every optimizer step."""
    model.train()
    runs = len(batches)
    states = [kept or EpochProgress(torch.zeros((), dtype=torch.float64, device=device))
              for kept in (resume or [None] * runs)]
    start = time.perf_counter() - states[0].seconds
    smoothing = list(label_smoothing) or [0.0] * runs
    for parts in _bar(_Together(batches), "train", progress):
        inputs, targets = [x for x, _ in parts], [y for _, y in parts]
        losses = train_step(model, inputs, targets, optimizers, autocast_dtype, scalers, smoothing)
        for state, loss, y, scheduler in zip(states, losses, targets,
                                             schedulers or [None] * runs, strict=True):
            if scheduler is not None:
                scheduler.step()
            state.loss_sum += loss.double() * len(y)
            state.images += len(y)
        if on_step is not None:
            for state in states:
                state.seconds = time.perf_counter() - start
            on_step(states)
    seconds = time.perf_counter() - start
    return [{"train_loss": float(state.loss_sum) / state.images,  # (a host sync per run, per epoch)
             "lr": optimizer.param_groups[0]["lr"], "train_time_s": seconds,
             "images_per_s": state.images / seconds} for state, optimizer in
            zip(states, optimizers, strict=True)]


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Sequence[Iterable[Batch]], num_classes: int, device: torch.device,
             progress: ShowProgress = True, autocast_dtype: torch.dtype | None = None, split: str = "test", *,
             predictions: Sequence[Predictions] | None = None) -> list[tuple[dict[str, float], Tensor]]:
    """Each run's split metrics and confusion matrix; fills `predictions` when given."""
    model.eval()
    accumulators = [EvalAccumulator(num_classes, device, keep_predictions=predictions is not None)
                    for _ in batches]
    for parts in _bar(_Together(batches), split, progress):
        with autocast(parts[0][0], autocast_dtype):
            outputs = model([x for x, _ in parts])
        for accumulator, logits, (_, y) in zip(accumulators, outputs, parts, strict=True):
            logits = logits.float()
            accumulator.update(logits, y, nn.functional.cross_entropy(logits, y, reduction="sum"))
    for accumulator, kept in zip(accumulators, predictions or [], strict=False):
        found = accumulator.predictions()
        kept.predicted, kept.confidence = found.predicted, found.confidence
    return [(accumulator.compute(split), accumulator.confusion_matrix()) for accumulator in accumulators]
