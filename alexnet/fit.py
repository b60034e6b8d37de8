"""A run's training: take its device, build what it trains with, go on from its checkpoint, and
loop over the epochs, recording and checkpointing each one, until the last epoch, early stopping,
the search's pruner, divergence or a stop signal ends it."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import hydra
import pandas as pd
import torch
from omegaconf import DictConfig

from alexnet import scores, speed
from alexnet.config_checks import resolve_device
from alexnet.data.cifar import NUM_CLASSES, NUM_SUPERCLASSES, Cifar100, hold_out, load_cifar100
from alexnet.data.pipelines import Batches, build_batches
from alexnet.engine import EpochProgress, autocast, evaluate, train_one_epoch
from alexnet.files import OutputError
from alexnet.launch.placement import Placement, one_at_a_time
from alexnet.launch.position import terminal_line, this_job
from alexnet.metrics import Predictions, superclass_confusion
from alexnet.models import build_model
from alexnet.resume import checkpoint
from alexnet.resume.stop import GracefulStop, by_signal
from alexnet.run import bars
from alexnet.run import progress as run_progress
from alexnet.run.record import CONFUSION_FILE, RunRecord
from alexnet.schedules import build_scheduler
from alexnet.scores import Status
from alexnet.speed import keep_freed_memory
from alexnet.tracking.guard import Tracking

log = logging.getLogger(__name__)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"{device} ({threads} thread{'s' if threads != 1 else ''})"


def take_device(placement: Placement, speed_cfg: DictConfig,
                record: RunRecord) -> tuple[torch.device, speed.SpeedSettings]:
    """Use the placement's device and threads, resolve the speed switches for it, and record both."""
    if placement.threads is not None:
        torch.set_num_threads(placement.threads)
    device = resolve_device(placement.device)
    if device.type == "cuda":
        if device.index is None:  # `cuda`: the current one, named, so states and logs say which
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    record.set_device(describe(device), torch_threads=torch.get_num_threads(),
                      device_slot=placement.slot)
    settings = speed.resolve(speed_cfg, device)
    if settings.keep_freed_memory:
        keep_freed_memory()
    return device, settings


@dataclass
class Training:
    """What a run trains with: the data, its batches, the network (compiled or not) and the state
    a checkpoint holds."""

    data: Cifar100
    test_batches: Batches
    val_batches: Batches | None  # data.val_split's images, scored every epoch (val_acc, ...)
    model: torch.nn.Module  # what runs the steps: the network, or its compiled / graphed form
    state: checkpoint.TrainingState  # network, optimizer, grad scaler, training batches


def build_training(cfg: DictConfig, device: torch.device,
                   settings: speed.SpeedSettings) -> Training:
    """Load the data, build batches, network, optimizer and grad scaler, apply the speed settings."""
    data = load_cifar100(cfg.data.root, cfg.data.download, cfg.data.train_subset,
                         cfg.data.test_subset)
    if cfg.data.val_split is not None:
        train, val = hold_out(data.train, cfg.data.val_split, cfg.data.val_seed)
        data = dataclasses.replace(data, train=train, val=val)
    log.info("CIFAR-100: %d train / %s%d test images on %s, %s pipeline, %s", len(data.train),
             f"{len(data.val)} validation / " if data.val is not None else "", len(data.test),
             describe(device), cfg.data.pipeline, settings.describe())
    train_batches = build_batches(data.train, cfg, True, device, settings)
    test_batches = build_batches(data.test, cfg, False, device, settings)
    val_batches = (build_batches(data.val, cfg, False, device, settings)
                   if data.val is not None else None)
    # Every key of the model config but these two is a constructor argument of the network.
    options = {k: v for k, v in cfg.model.items() if k not in ("name", "crop_resize")}
    network = build_model(cfg.model.name, **options).to(device)
    optimizer = hydra.utils.instantiate(cfg.optimizer, params=network.parameters(),
                                        _convert_="all")
    sample = speed.probe_batch(next(iter(test_batches))[0], cfg.batch_size)

    def probe(candidate: torch.nn.Module) -> None:
        with autocast(sample, settings.autocast_dtype):
            candidate(sample).float().logsumexp(1).mean().backward()

    model = speed.prepare_model(network, settings, probe, cfg.batch_size)
    scheduler = (build_scheduler(hydra.utils.instantiate(cfg.scheduler), optimizer,
                                 len(train_batches), cfg.epochs) if cfg.scheduler else None)
    state = checkpoint.TrainingState(network, optimizer, settings.grad_scaler(device),
                                     train_batches, scheduler)
    return Training(data, test_batches, val_batches, model, state)


def fit(cfg: DictConfig, record: RunRecord, stop: GracefulStop | None = None,
        saved: dict[str, Any] | None = None, placement: Placement | None = None,
        tracking: Tracking | None = None) -> Status:
    """Train up to cfg.epochs, from scratch or from the checkpoint `saved`, recording and
    checkpointing every epoch; returns the final status, or raises Stop when a stop signal ends
    the run (its checkpoint saved at the step it had reached). `placement` (a sweep job's device
    and threads) defaults to cfg.device and cfg.torch_threads; `tracking` mirrors every epoch."""
    stop = stop or GracefulStop()
    placement = placement or Placement(str(cfg.device), cfg.torch_threads)
    tracking = tracking or Tracking()
    device, settings = take_device(placement, cfg.speed, record)
    torch.manual_seed(cfg.seed)
    startup = (one_at_a_time(placement.startup_lock) if placement.startup_lock is not None
               else contextlib.nullcontext())
    with startup:  # parallel jobs load data and allocate one after the other
        sig = stop.requested()
        if sig is not None:  # stopped while waiting its turn: nothing to save
            raise by_signal(sig, "before it began training", saved=False)
        parts = build_training(cfg, device, settings)
    state, train_batches = parts.state, parts.state.train_batches
    checkpoint_path = record.run_dir / checkpoint.CHECKPOINT_FILE
    config = record.summary["config"]
    in_progress = None
    if saved is not None:
        epochs, in_progress = checkpoint.restore(saved, state, device)
        record.resumed_from(epochs)
        log.info("resuming %s after epoch %d%s", record.run_dir, len(epochs),
                 f", {in_progress.images} images into the next" if in_progress else "")
    else:
        record.resumed_from(None)  # from the first epoch: an earlier attempt's rows go
    tracking.start(record)

    def safe_point(progress: EpochProgress) -> None:
        """After every step: on a stop request save where we are and end the run."""
        sig = stop.requested()
        if sig is None:
            return
        if train_batches.resumes_mid_pass:
            checkpoint.save(checkpoint_path, state, config, record.epochs, device, progress)
        raise by_signal(sig, f"in epoch {len(record.epochs) + 1}",
                        saved=train_batches.resumes_mid_pass or bool(record.epochs))

    fine_to_coarse = parts.data.fine_to_coarse()
    objective = scores.selection_metric(config)
    status = Status.completed
    last_test = Predictions()  # each test image's prediction in the last evaluation: its mistakes
    position = this_job(cfg.epochs)  # run i of n, for the bars and the log line
    line = terminal_line(position) if cfg.progress else None
    while len(record.epochs) < cfg.epochs:
        if scores.should_stop(record.epochs, cfg.early_stop, config):
            status = Status.early_stopped
            log.info("early stop: %s has not improved for %d epochs",
                     scores.watched(cfg.early_stop, config)[0], cfg.early_stop.patience)
            break
        epoch = len(record.epochs) + 1
        left = run_progress.time_left(run_progress.measured(record.epochs), cfg.epochs - epoch + 1,
                                      position)
        shown = (bars.labelled(run_progress.bar_label(position, epoch, cfg.epochs),
                               run_progress.bar_postfix(left, position), line)
                 if cfg.progress else False)
        train_stats = train_one_epoch(parts.model, train_batches, state.optimizer, device,
                                      shown, settings.autocast_dtype, state.scaler,
                                      resume=in_progress, on_step=safe_point,
                                      scheduler=state.scheduler,
                                      label_smoothing=cfg.loss.label_smoothing)
        in_progress = None
        test_start = time.perf_counter()
        val_stats = (evaluate(parts.model, parts.val_batches, NUM_CLASSES, device, shown,
                              settings.autocast_dtype, split="val")[0]
                     if parts.val_batches is not None else {})
        test_stats, confusion = evaluate(parts.model, parts.test_batches, NUM_CLASSES, device,
                                         shown, settings.autocast_dtype,
                                         predictions=last_test)
        row = {"epoch": epoch, **train_stats, **val_stats, **test_stats,
               "epoch_time_s": train_stats["train_time_s"] + time.perf_counter() - test_start}
        left = run_progress.time_left(run_progress.measured([*record.epochs, row]),
                                      cfg.epochs - epoch, position)
        log.info("%s  train_loss %.4f  %stest_loss %.4f  acc %.4f  top5 %.4f  F1 %.4f  "
                 "%.0f img/s  %s", run_progress.where(position, epoch, cfg.epochs), row["train_loss"],
                 f"val_acc {row['val_acc']:.4f}  " if "val_acc" in row else "", row["test_loss"],
                 row["test_acc"], row["test_top5"], row["test_f1"], row["images_per_s"],
                 run_progress.told(left, position))
        if not math.isfinite(row["train_loss"]):
            log.error("training diverged (train loss %s) at epoch %d", row["train_loss"], epoch)
            record.add_epoch(row)  # the last good epoch's checkpoint stays for a post-mortem
            tracking.log_epoch(row)
            record.finish(Status.diverged, stopped_epoch=epoch)
            return Status.diverged
        checkpoint.save(checkpoint_path, state, config, [*record.epochs, row], device)
        record.add_epoch(row)
        tracking.log_epoch(row)
        record.save_table(CONFUSION_FILE, pd.DataFrame(
            superclass_confusion(confusion, fine_to_coarse, NUM_SUPERCLASSES).numpy(),
            index=parts.data.superclasses, columns=parts.data.superclasses))
        if _pruned(row.get(objective), epoch, last=epoch == cfg.epochs):
            log.info("pruned after epoch %d by its search's pruner", epoch)
            status = Status.pruned
            break
        sig = stop.requested()
        if sig is not None:
            raise by_signal(sig, f"after epoch {epoch}", saved=True)
    if cfg.checkpoint.keep in ("weights", "best"):  # (best: the sweep's end removes the others')
        checkpoint.save_weights(record.run_dir / checkpoint.MODEL_FILE, state.model)
    from alexnet.results.learned import save_learned  # (matplotlib: only once a run has ended)

    try:  # what it learned: first-layer filters, mistakes (pictures: never worth a trained run)
        save_learned(record.run_dir, state.model, parts.data.test, parts.data.classes, last_test,
                     record.summary["overrides"])
    except OutputError:
        raise  # (a full disk stops the sweep, naming the file, as for every other file)
    except Exception as err:
        log.warning("what the network learned was not drawn (%s: %s); python -m alexnet.show_run "
                    "%s draws it from the saved weights", type(err).__name__, err, record.run_dir)
    stopped_early = status in (Status.early_stopped, Status.pruned)
    record.finish(status, stopped_epoch=len(record.epochs) if stopped_early else None)
    checkpoint.remove(record.run_dir, keep_newest=cfg.checkpoint.keep == "full")
    return status


def _pruned(value: float | None, epoch: int, last: bool) -> bool:
    """Report the epoch's objective to the search trial this run is (hydra/sweeper=optuna; no-op
    outside a search): True when its pruner says stop (never asked at the last epoch)."""
    from alexnet.search.trial import report  # (optuna only where a search runs)

    return value is not None and report(float(value), epoch, last=last)
