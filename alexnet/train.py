"""Train AlexNet on CIFAR-100 once (`python -m alexnet.train`) or sweep (`... -m a=1,2 b=x,y`).

Rerunning a command with the same `hydra.sweep.dir` (or `hydra.run.dir`) continues it: finished
runs are left alone, interrupted ones go on from their last checkpoint."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from alexnet import early_stop, speed
from alexnet.allocator import keep_freed_memory
from alexnet.config_checks import ConfigError, Refused, resolve_device, validate
from alexnet.configs import CONFIG_PATH, config_label
from alexnet.data.cifar import NUM_CLASSES, NUM_SUPERCLASSES, Cifar100, load_cifar100
from alexnet.data.pipelines import Batches, build_batches
from alexnet.data.validation import hold_out
from alexnet.engine import EpochProgress, autocast, evaluate, train_one_epoch
from alexnet.files import OutputError
from alexnet.launch.placement import Placement, placed
from alexnet.launch.slots import SlotWaitStopped, one_at_a_time
from alexnet.metrics import superclass_confusion
from alexnet.models import build_model
from alexnet.resume import checkpoint
from alexnet.resume.run_dir import Plan, RunDirConflict, plan
from alexnet.resume.stop import GracefulStop, SweepStopped
from alexnet.run.record import CONFUSION_FILE, RunRecord
from alexnet.run.status import Status
from alexnet.schedules import build_scheduler
from alexnet.tracking.guard import Tracking, build_tracking

log = logging.getLogger(__name__)


class Interrupted(Exception):  # noqa: N818 - a state, as in the run's status
    """A stop signal reached the run's safe point; its checkpoint is saved."""


class NotStarted(Exception):  # noqa: N818 - a state: the run stopped before its first step
    """A stop came while the run waited for its turn to start; there is nothing to save."""


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


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
             describe(device), cfg.data.pipeline, settings)
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
        tracking: Tracking | None = None) -> str:
    """Train up to cfg.epochs, from scratch or from the checkpoint `saved`, recording and
    checkpointing every epoch; returns the final status. `placement` (a sweep job's device and
    threads) defaults to cfg.device and cfg.torch_threads; `tracking` mirrors every epoch."""
    stop = stop or GracefulStop()
    placement = placement or Placement(str(cfg.device), cfg.torch_threads)
    tracking = tracking or Tracking()
    device, settings = take_device(placement, cfg.speed, record)
    torch.manual_seed(cfg.seed)
    startup = (one_at_a_time(placement.startup_lock) if placement.startup_lock is not None
               else contextlib.nullcontext())
    with startup:  # parallel jobs load data and allocate one after the other
        reason = stop.reason()
        if reason is not None:  # stopped while waiting its turn: nothing to save
            raise NotStarted(f"stopped by {reason} before it began training")
        parts = build_training(cfg, device, settings)
    data, test_batches, model, state = parts.data, parts.test_batches, parts.model, parts.state
    val_batches = parts.val_batches
    train_batches, optimizer, scaler = state.train_batches, state.optimizer, state.scaler
    checkpoint_path = record.run_dir / checkpoint.CHECKPOINT_FILE
    overrides = record.summary["overrides"]
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
        reason = stop.reason()
        if reason is None:
            return
        if train_batches.resumes_mid_pass:
            checkpoint.save(checkpoint_path, state, overrides, record.epochs, device, progress)
        raise Interrupted(f"stopped by {reason} in epoch {len(record.epochs) + 1}")

    fine_to_coarse = data.fine_to_coarse()
    status = Status.completed
    while len(record.epochs) < cfg.epochs:
        if early_stop.should_stop(record.epochs, cfg.early_stop):
            status = Status.early_stopped
            log.info("early stop: %s has not improved for %d epochs",
                     cfg.early_stop.monitor.value, cfg.early_stop.patience)
            break
        epoch = len(record.epochs) + 1
        train_stats = train_one_epoch(model, train_batches, optimizer, device, cfg.progress,
                                      settings.autocast_dtype, scaler, resume=in_progress,
                                      on_step=safe_point, scheduler=state.scheduler,
                                      label_smoothing=cfg.loss.label_smoothing)
        in_progress = None
        test_start = time.perf_counter()
        val_stats = (evaluate(model, val_batches, NUM_CLASSES, device, cfg.progress,
                              settings.autocast_dtype, split="val")[0]
                     if val_batches is not None else {})
        test_stats, confusion = evaluate(model, test_batches, NUM_CLASSES, device, cfg.progress,
                                         settings.autocast_dtype)
        row = {"epoch": epoch, **train_stats, **val_stats, **test_stats,
               "epoch_time_s": train_stats["train_time_s"] + time.perf_counter() - test_start}
        log.info("epoch %d/%d  train_loss %.4f  %stest_loss %.4f  acc %.4f  top5 %.4f  F1 %.4f  "
                 "%.0f img/s", epoch, cfg.epochs, row["train_loss"],
                 f"val_acc {row['val_acc']:.4f}  " if "val_acc" in row else "", row["test_loss"],
                 row["test_acc"], row["test_top5"], row["test_f1"], row["images_per_s"])
        if not math.isfinite(row["train_loss"]):
            log.error("training diverged (train loss %s) at epoch %d", row["train_loss"], epoch)
            record.add_epoch(row)  # the last good epoch's checkpoint stays for a post-mortem
            tracking.log_epoch(row)
            record.finish(Status.diverged, stopped_epoch=epoch)
            return Status.diverged
        checkpoint.save(checkpoint_path, state, overrides, [*record.epochs, row], device)
        record.add_epoch(row)
        tracking.log_epoch(row)
        record.save_table(CONFUSION_FILE, pd.DataFrame(
            superclass_confusion(confusion, fine_to_coarse, NUM_SUPERCLASSES).numpy(),
            index=data.superclasses, columns=data.superclasses))
        if cfg.search.trial_id is not None and _pruned(cfg.search, epoch, row, last=epoch == cfg.epochs):
            log.info("pruned after epoch %d by its search's pruner", epoch)
            status = Status.pruned
            break
        reason = stop.reason()
        if reason is not None:
            raise Interrupted(f"stopped by {reason} after epoch {epoch}")
    if cfg.checkpoint.keep == "weights":
        checkpoint.save_weights(record.run_dir / checkpoint.MODEL_FILE, state.model)
    stopped_early = status in (Status.early_stopped, Status.pruned)
    record.finish(status, stopped_epoch=len(record.epochs) if stopped_early else None)
    checkpoint.remove(record.run_dir, keep_newest=cfg.checkpoint.keep == "full")
    return status


def _pruned(search: DictConfig, epoch: int, row: dict[str, Any], last: bool) -> bool:
    """Report the epoch to the run's trial (hydra/sweeper=optuna); True when it is pruned (never
    at the last epoch). A storage that fails (a locked database) costs the pruning, not the run."""
    from alexnet.search.study import report  # (optuna: the `search` extra, needed only here)

    try:
        return report(search, epoch, row, ask=search.prune and not last)
    except Exception as err:  # the run's own record stays whole; the sweeper reads that
        log.warning("could not report epoch %d to trial %s (%s: %s); the run goes on unpruned",
                    epoch, search.trial_id, type(err).__name__, err)
        return False


@contextlib.contextmanager
def finally_call(function: Callable[..., Any], *args: Any) -> Iterator[None]:
    """Call function(*args) when the block ends, however it ends (the trackers' last word, the run
    dir's lock released)."""
    try:
        yield
    finally:
        function(*args)


def _final_acc(summary: dict[str, Any]) -> float:
    """What the run returns to a sweeper: its final accuracy on the validation split when it has
    one (selecting on the test set would select on the test set), else on the test set."""
    final = summary.get("final") or {}
    return float(final.get("val_acc", final.get("test_acc", float("nan"))))


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the final validation (else test) accuracy for sweepers."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    sweep_dir = str(hydra_cfg.sweep.dir) if multirun else None
    if not multirun:  # a sweep records a refused job as failed and goes on; a single run just says no
        try:
            validate(cfg)
        except ConfigError as err:
            raise Refused(str(err)) from None
    try:
        decision = plan(run_dir, overrides)
    except RunDirConflict as err:
        raise SweepStopped(str(err), sweep_dir=sweep_dir) from None
    if decision.action == "skip" and decision.previous is not None:
        log.info("%s is already %s: not trained again", run_dir, decision.previous["status"])
        return _final_acc(decision.previous)
    with finally_call(decision.release):  # the run dir stays ours until its run has ended
        return _run(cfg, hydra_cfg, decision, run_dir, overrides, sweep_dir)


def _run(cfg: DictConfig, hydra_cfg: DictConfig, decision: Plan, run_dir: Path,
         overrides: list[str], sweep_dir: str | None) -> float:
    """Train the run the plan decided on, and end its record however the run ends."""
    record = RunRecord(run_dir, OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), overrides,
                       cfg.heartbeat_s, previous=decision.previous)
    tracking = Tracking()
    with GracefulStop(Path(sweep_dir) if sweep_dir else None) as stop, \
            finally_call(lambda: tracking.finish(record)):
        try:
            if decision.unreadable is not None:
                raise decision.unreadable
            tracking = build_tracking(cfg.get("logger"), config_label(hydra_cfg),
                                      Path(sweep_dir) if sweep_dir else None)
            validate(cfg)
            with placed(cfg, hydra_cfg.launcher, sweep_dir,
                        stopped=lambda: stop.reason() is not None) as placement:
                status = fit(cfg, record, stop, decision.checkpoint, placement, tracking)
        except (Interrupted, NotStarted, SlotWaitStopped) as err:
            record.finish(Status.interrupted, err)
            try:
                stop.hand_over()  # under submitit: it requeues the job, which resumes from here
            except Exception as refused:  # e.g. requeued max_num_timeout times already
                raise SweepStopped(f"{run_dir}: {err}; its checkpoint is saved, but the job was "
                                   f"not requeued ({refused}). Rerun the same command to resume.",
                                   stop.exit_code, sweep_dir) from None
            saved = "its checkpoint is saved" if isinstance(err, Interrupted) else "it had not started"
            raise SweepStopped(f"{run_dir}: {err}; {saved}. Rerun the same command to resume.",
                               stop.exit_code, sweep_dir) from None
        except KeyboardInterrupt as err:
            record.finish(Status.interrupted, err)
            raise
        except OutputError as err:  # the disk refuses: every later run would fail the same way
            with contextlib.suppress(OutputError):
                record.finish(Status.failed, err)
            raise SweepStopped(str(err), sweep_dir=sweep_dir) from None
        except Exception as err:
            record.finish(Status.failed, err)
            if sweep_dir is None:
                raise
            # In a sweep one bad run must not stop the others: it is on record, move on.
            log.error("run failed, sweep goes on: %s: %s", type(err).__name__, err)
            return float("nan")
    if status == Status.diverged and sweep_dir is None:
        raise SweepStopped(f"the run diverged; its record is in {run_dir}")
    return _final_acc(record.summary)


def _multirun_config_request(argv: list[str]) -> list[str]:
    """Hydra refuses `-m` beside `--cfg`/`--info` ("Only one of --run, --multirun, --cfg ..."), yet
    adding --cfg to a sweep's command is how one asks what the sweep will run: show it as the
    multirun's config (hydra.mode=MULTIRUN, its sweeper's params), without the `-m`."""
    multirun = {"-m", "--multirun"}
    showing = any(a in ("-c", "--cfg", "-i", "--info") or a.startswith(("--cfg=", "--info="))
                  for a in argv)
    if not (showing and multirun & set(argv)):
        return argv
    if _sweeps_values(argv):
        raise Refused("--cfg shows one config, and this command sweeps over values: give one "
                      "value of each (or a sweep= preset) to see its config, or drop --cfg")
    return ["hydra.mode=MULTIRUN", *(a for a in argv if a not in multirun)]


def _sweeps_values(argv: list[str]) -> bool:
    """Whether the command line holds a sweep (`a=1,2`, `glob(...)`, `range(...)`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # Hydra will say what is wrong with it
        return False
    return any(o.is_sweep_override() for o in parsed)


def cli() -> None:
    """`python -m alexnet.train`: a run or sweep stopped on purpose ends with a message, its table
    brought up to date, and a non-zero exit status, not a traceback (a Ctrl-C at any moment
    included); a refused setting with one `error:` line and exit status 2."""
    try:
        sys.argv[1:] = _multirun_config_request(sys.argv[1:])
        main()
    except Refused as refused:
        print(f"error: {refused}", file=sys.stderr)
        sys.exit(2)
    except SweepStopped as stopped:
        if stopped.sweep_dir is not None:
            from alexnet.callbacks import report_sweep

            report_sweep(Path(stopped.sweep_dir))
        print(f"stopped: {stopped}", file=sys.stderr)
        sys.exit(stopped.exit_code)
    except KeyboardInterrupt:  # a Ctrl-C outside any run's safe point (a second one, or while
        # the table is written): every run keeps what it saved; the same command resumes and
        # writes the table
        print("stopped: interrupted (Ctrl-C). Finished runs and checkpoints are kept: rerun the "
              "same command to resume and write the table.", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)


if __name__ == "__main__":
    cli()
