"""Trains a group of runs as one network (alexnet/fused.py), or one run as a group of one, from
its checkpoint, recording and checkpointing every run each epoch until its last epoch, early
stopping, its search's pruner, divergence or a stop signal ends it."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import hydra
import pandas as pd
import torch
from hydra.types import RunMode
from omegaconf import DictConfig

from alexnet import scores, speed
from alexnet.config_checks import resolve_device
from alexnet.data.cifar import NUM_CLASSES, NUM_SUPERCLASSES, Cifar100, hold_out, load_cifar100
from alexnet.data.pipelines import Batches, build_batches
from alexnet.engine import EpochProgress, autocast, evaluate, train_one_epoch
from alexnet.files import OutputError
from alexnet.fused import detach, fuse
from alexnet.launch.placement import Placement, one_at_a_time, terminal_line, this_job
from alexnet.metrics import Predictions, superclass_confusion
from alexnet.models import from_config
from alexnet.resume import checkpoint
from alexnet.resume.stop import GracefulStop, by_signal
from alexnet.run import progress as run_progress
from alexnet.run.record import CONFUSION_FILE, RunRecord
from alexnet.schedules import build_scheduler
from alexnet.scores import Status
from alexnet.tracking.guard import Tracking

log = logging.getLogger(__name__)


@dataclass
class Training:
    """A run's batches, and the state a checkpoint holds."""

    test_batches: Batches
    val_batches: Batches | None  # data.val_split's images, scored every epoch (val_acc, ...)
    state: checkpoint.TrainingState  # network, optimizer, grad scaler, training batches


@dataclass
class Member:
    """One run of a group."""

    cfg: DictConfig
    record: RunRecord
    tracking: Tracking = field(default_factory=Tracking)
    saved: dict[str, Any] | None = None
    hydra: DictConfig | None = None  # its job's Hydra config: where it stands in its sweep
    parts: Training | None = None
    generators: dict[str, torch.Generator] = field(default_factory=dict)  # its own, in a group
    grouped: bool = False  # whether its random state lives in its own generators (built beside others)
    in_progress: EpochProgress | None = None
    last_test: Predictions = field(default_factory=Predictions)  # its mistakes are drawn from it
    status: Status | None = None  # how it ended; None while it trains


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"{device} ({threads} thread{'s' if threads != 1 else ''})"


def take_device(placement: Placement, speed_cfg: DictConfig,
                records: Sequence[RunRecord]) -> tuple[torch.device, speed.SpeedSettings]:
    """Takes the placement's device and threads and resolves the speed switches for it."""
    if placement.threads is not None:
        torch.set_num_threads(placement.threads)
    device = resolve_device(placement.device)
    if device.type == "cuda":
        if device.index is None:  # `cuda`: the current one, named, so states and logs say which
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    for record in records:
        record.set_device(describe(device), torch_threads=torch.get_num_threads(), device_slot=placement.slot)
    settings = speed.resolve(speed_cfg, device)
    if settings.keep_freed_memory:
        speed.keep_freed_memory()
    return device, settings


def load_data(cfg: DictConfig) -> Cifar100:
    """A group's runs share the same images."""
    data = load_cifar100(cfg.data.root, cfg.data.download, cfg.data.train_subset, cfg.data.test_subset)
    if cfg.data.val_split is None:
        return data
    train, val = hold_out(data.train, cfg.data.val_split, cfg.data.val_seed)
    return dataclasses.replace(data, train=train, val=val)


def build_training(cfg: DictConfig, data: Cifar100, device: torch.device,
                   settings: speed.SpeedSettings) -> Training:
    batches = {name: build_batches(split, cfg, name == "train", device, settings) for name, split in
               (("train", data.train), ("test", data.test), ("val", data.val)) if split is not None}
    network = from_config(cfg.model).to(device, memory_format=settings.memory_format)
    optimizer = hydra.utils.instantiate(cfg.optimizer, params=network.parameters(), _convert_="all")
    scheduler = (build_scheduler(hydra.utils.instantiate(cfg.scheduler), optimizer,
                                 len(batches["train"]), cfg.epochs) if cfg.scheduler else None)
    state = checkpoint.TrainingState(network, optimizer, settings.grad_scaler(device),
                                     batches["train"], scheduler)
    return Training(batches["test"], batches.get("val"), state)


def _own_generators(device: torch.device) -> dict[str, torch.Generator]:
    """Copies of the global generators, so a fused run draws its dropout as it would alone."""
    found = {"torch": torch.Generator().set_state(torch.get_rng_state())}
    if device.type != "cpu":
        module = torch.get_device_module(device)
        found["device"] = torch.Generator(device).set_state(module.get_rng_state(device))
    return found


def group_model(members: Sequence[Member], settings: speed.SpeedSettings, batch_size: int) -> torch.nn.Module:
    """A run alone is compiled or CUDA-graphed when asked; the global generators take over its own."""
    networks = [m.parts.state.model for m in members]
    if len(members) > 1:
        if settings.compile or settings.cuda_graphs:
            log.warning("speed.compile and speed.cuda_graphs are not applied to fused runs")
        dropout = "device" if "device" in members[0].generators else "torch"
        return fuse(networks, [m.generators[dropout] for m in members])
    alone = members[0]
    if alone.grouped:  # the last of its group: its own weights, and the global generators go on from its own
        device = next(networks[0].parameters()).device
        torch.set_rng_state(alone.generators["torch"].get_state())
        if "device" in alone.generators:
            torch.get_device_module(device).set_rng_state(alone.generators["device"].get_state(), device)
        detach(networks[0])
        alone.grouped = False
    sample = speed.probe_batch(next(iter(alone.parts.test_batches))[0], batch_size)

    def probe(candidate: torch.nn.Module) -> None:
        with autocast(sample, settings.autocast_dtype):
            candidate(sample).float().logsumexp(1).mean().backward()

    return fuse([speed.prepare_model(networks[0], settings, probe, batch_size)], [])


def fit(members: Sequence[Member], stop: GracefulStop, placement: Placement) -> None:
    """Trains same-shaped members at one point of training to their ends; a stop signal saves, raises Stop."""
    cfg = members[0].cfg
    device, settings = take_device(placement, cfg.speed, [m.record for m in members])
    startup = (one_at_a_time(placement.startup_lock) if placement.startup_lock is not None
               else contextlib.nullcontext())
    with startup:  # parallel jobs load data and allocate one after the other
        sig = stop.requested()
        if sig is not None:  # stopped while waiting its turn: nothing to save
            raise by_signal(sig, "before it began training", saved=False)
        data = load_data(cfg)
        log.info("CIFAR-100: %d train / %s%d test images on %s, %s pipeline, %s", len(data.train),
                 f"{len(data.val)} validation / " if data.val is not None else "",
                 len(data.test), describe(device), cfg.data.pipeline, settings.describe())
        for m in members:
            try:
                torch.manual_seed(m.cfg.seed)
                m.parts = build_training(m.cfg, data, device, settings)
                epochs = None
                if m.saved is not None:
                    epochs, m.in_progress = checkpoint.restore(m.saved, m.parts.state, device)
                    log.info("resuming %s after epoch %d%s", m.record.run_dir, len(epochs),
                             f", {m.in_progress.images} images into the next" if m.in_progress else "")
            except (OutputError, MemoryError, torch.OutOfMemoryError):  # (the group's, not the run's)
                raise
            except Exception as err:  # (in a group: this run alone fails, as it would alone)
                if len(members) == 1:
                    raise
                m.status = Status.failed
                m.record.finish(Status.failed, err)
                log.error("run failed, its group goes on: %s: %s", type(err).__name__, err,
                          extra={"run_dir": str(m.record.run_dir)})
                continue
            m.record.resumed_from(epochs)  # (None: from the first epoch, an earlier try's rows go)
            m.generators, m.grouped = _own_generators(device), len(members) > 1
            m.tracking.start(m.record)
    _epochs(members, data, device, settings, stop)


def _epochs(members: Sequence[Member], data: Cifar100, device: torch.device,
            settings: speed.SpeedSettings, stop: GracefulStop) -> None:
    cfg = members[0].cfg
    fine_to_coarse = data.fine_to_coarse()
    position = this_job(members[0].hydra, cfg.epochs)  # the first run's place, for bars and log
    if len(members) > 1:  # (a fused group's runs train at once, besides the launcher's places)
        position = dataclasses.replace(position, at_once=position.at_once * len(members),  # (its siblings
                                       later_epochs=position.later_epochs[len(members) - 1:])  # are now)
    line = terminal_line(position, members[0].hydra) if cfg.progress else None
    model, training = None, []
    for m in members:  # (killed after its last epoch's checkpoint, before its ending was recorded)
        if m.status is None and len(m.record.epochs) >= m.cfg.epochs:
            _finish(m, Status.completed, data)
    while True:
        for m in _training(members):
            if scores.should_stop(m.record.epochs, m.cfg.early_stop, m.record.summary["config"]):
                log.info("early stop: %s has not improved for %d epochs", scores.watched(
                    m.cfg.early_stop, m.record.summary["config"])[0], m.cfg.early_stop.patience)
                _finish(m, Status.early_stopped, data)
        if not _training(members):
            return
        if _training(members) != training:  # (a run that ended leaves the fused network)
            training = _training(members)
            model = group_model(training, settings, cfg.batch_size)
        epoch = len(training[0].record.epochs) + 1
        states = [m.parts.state for m in training]
        left = run_progress.time_left(run_progress.measured(training[0].record.epochs),
                                      cfg.epochs - epoch + 1, position)
        shown = (run_progress.labelled(run_progress.bar_label(position, epoch, cfg.epochs, len(training)),
                               run_progress.bar_postfix(left, position), line)
                 if cfg.progress else False)

        def safe_point(progress: list[EpochProgress], epoch: int = epoch,
                       training: list[Member] = training) -> None:
            """On a stop request, saves where each run is and ends them."""
            sig = stop.requested()
            if sig is None:
                return
            mid_pass = training[0].parts.state.train_batches.resumes_mid_pass
            if mid_pass:
                for m, state in zip(training, progress, strict=True):
                    _save(m, m.record.epochs, device, state)
            raise by_signal(sig, f"in epoch {epoch}", saved=mid_pass or epoch > 1)

        trained = train_one_epoch(model, [s.train_batches for s in states], [s.optimizer for s in states],
                                  device, shown, settings.autocast_dtype, [s.scaler for s in states],
                                  resume=[m.in_progress for m in training], on_step=safe_point,
                                  schedulers=[s.scheduler for s in states],
                                  label_smoothing=[m.cfg.loss.label_smoothing for m in training])
        test_start = time.perf_counter()
        validated = (evaluate(model, [m.parts.val_batches for m in training], NUM_CLASSES, device,
                              shown, settings.autocast_dtype, split="val")
                     if data.val is not None else [({}, None)] * len(training))
        tested = evaluate(model, [m.parts.test_batches for m in training], NUM_CLASSES, device,
                          shown, settings.autocast_dtype, predictions=[m.last_test for m in training])
        seconds = time.perf_counter() - test_start
        for m, train_stats, (val_stats, _), (test_stats, confusion) in zip(
                training, trained, validated, tested, strict=True):
            m.in_progress = None
            row = {"epoch": epoch, **train_stats, **val_stats, **test_stats,
                   "epoch_time_s": train_stats["train_time_s"] + seconds}
            _record_epoch(m, row, position, device, data, fine_to_coarse, confusion)
        sig = stop.requested()
        if sig is not None and _training(members):
            raise by_signal(sig, f"after epoch {epoch}", saved=True)


def _training(members: Sequence[Member]) -> list[Member]:
    return [m for m in members if m.status is None and len(m.record.epochs) < m.cfg.epochs]


def _record_epoch(m: Member, row: dict[str, Any], position: run_progress.Position, device: torch.device,
                  data: Cifar100, fine_to_coarse: torch.Tensor, confusion: torch.Tensor) -> None:
    """Logs, checks, checkpoints and records one run's epoch; ends the run where it ends."""
    epoch, epochs = row["epoch"], m.cfg.epochs
    left = run_progress.time_left(run_progress.measured([*m.record.epochs, row]), epochs - epoch, position)
    log.info("%s  train_loss %.4f  %stest_loss %.4f  acc %.4f  top5 %.4f  F1 %.4f  %.0f img/s  %s",
             run_progress.where(this_job(m.hydra, epochs), epoch, epochs), row["train_loss"],
             f"val_acc {row['val_acc']:.4f}  " if "val_acc" in row else "", row["test_loss"],
             row["test_acc"], row["test_top5"], row["test_f1"], row["images_per_s"],
             run_progress.told(left, position), extra={"run_dir": str(m.record.run_dir)})
    if not math.isfinite(row["train_loss"]):
        log.error("training diverged (train loss %s) at epoch %d", row["train_loss"], epoch,
                  extra={"run_dir": str(m.record.run_dir)})
        m.record.add_epoch(row)  # the last good epoch's checkpoint stays for a post-mortem
        m.tracking.log_epoch(row)
        m.status = Status.diverged
        m.record.finish(Status.diverged, stopped_epoch=epoch)
        return
    _save(m, [*m.record.epochs, row], device)
    m.record.add_epoch(row)
    m.tracking.log_epoch(row)
    m.record.save_table(CONFUSION_FILE, pd.DataFrame(
        superclass_confusion(confusion, fine_to_coarse, NUM_SUPERCLASSES).numpy(),
        index=data.superclasses, columns=data.superclasses))
    objective = scores.selection_metric(m.record.summary["config"])
    if _pruned(row.get(objective), epoch, epoch == epochs, m.hydra):
        log.info("pruned after epoch %d by its search's pruner", epoch,
                 extra={"run_dir": str(m.record.run_dir)})
        _finish(m, Status.pruned, data)
    elif epoch == epochs:
        _finish(m, Status.completed, data)


def _save(m: Member, epochs: list[dict[str, Any]], device: torch.device,
          in_progress: EpochProgress | None = None) -> None:
    """In a fused group the run's own generators stand for the global ones."""
    rng = {name: g.get_state() for name, g in m.generators.items()} if m.grouped else None
    checkpoint.save(m.record.run_dir / checkpoint.CHECKPOINT_FILE, m.parts.state,
                    m.record.summary["config"], epochs, device, in_progress, rng=rng)


def _finish(m: Member, status: Status, data: Cifar100) -> None:
    """Saves weights and pictures, closes the record, removes checkpoints."""
    m.status = status
    if m.cfg.checkpoint.keep in ("weights", "best"):  # (best: the sweep's end removes the others')
        checkpoint.save_weights(m.record.run_dir / checkpoint.MODEL_FILE, m.parts.state.model)
    from alexnet.results.learned import save_learned  # (matplotlib: only once a run has ended)

    try:  # what it learned: first-layer filters, mistakes (pictures: never worth a trained run)
        save_learned(m.record.run_dir, m.parts.state.model, data.test, data.classes, m.last_test,
                     m.record.summary["overrides"])
    except OutputError:
        raise  # (a full disk stops the sweep, naming the file, as for every other file)
    except Exception as err:  # (MemoryError too: the run is trained, its pictures can be redrawn)
        log.warning("what the network learned was not drawn (%s: %s); rerunning the same command "
                    "draws it from the saved weights", type(err).__name__, err,
                    extra={"run_dir": str(m.record.run_dir)})
    stopped_early = status in (Status.early_stopped, Status.pruned)
    m.record.finish(status, stopped_epoch=len(m.record.epochs) if stopped_early else None)
    checkpoint.remove(m.record.run_dir, keep_newest=m.cfg.checkpoint.keep == "full")


def _pruned(value: float | None, epoch: int, last: bool, hydra_cfg: DictConfig | None) -> bool:
    """Reports to the run's optuna trial; True when its pruner says stop (never at the last epoch)."""
    if value is None or hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN:
        return False
    from alexnet.search.trial import report  # (optuna only where a search runs)

    return report(float(value), epoch, last=last, job=(str(hydra_cfg.sweep.dir), int(hydra_cfg.job.num)))
