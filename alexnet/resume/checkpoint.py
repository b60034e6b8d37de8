"""checkpoint.pt: everything a run needs to go on exactly where it stopped, its RNG states included.
Written atomically, read with weights_only=True (data, never code); the one before is kept as
checkpoint.prev.pt, so a torn newest one falls back to it."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from alexnet.data.pipelines import Batches
from alexnet.engine import EpochProgress
from alexnet.files import OutputError, write_atomic
from alexnet.hyperparameters import hyperparameters

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
PREVIOUS_FILE = "checkpoint.prev.pt"
TORN_FILE = "checkpoint.torn.pt"  # an unreadable newest checkpoint, moved aside
MODEL_FILE = "model.pt"
FORMAT = 1


class CheckpointError(RuntimeError):
    """checkpoint.pt is unreadable or from another run; the message says what to do."""


@dataclass
class TrainingState:
    """The live objects a checkpoint is taken from and restored into."""

    model: nn.Module  # the eager module (not a torch.compile wrapper): its keys are stable
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    train_batches: Batches
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # (scheduler=none: none)


def save(path: Path, state: TrainingState, config: dict[str, Any], epochs: list[dict[str, Any]],
         device: torch.device, in_progress: EpochProgress | None = None,
         rng: dict[str, Tensor] | None = None) -> None:
    """Write checkpoint.pt after `epochs` (mid-epoch: `in_progress`); `rng`: a fused run's own states."""
    payload = {
        "format": FORMAT,
        "hyperparameters": hyperparameters(config),  # what makes it this run (resume/run_dir.py)
        "epochs": list(epochs),
        "model": own(state.model.state_dict()),
        "optimizer": state.optimizer.state_dict(),
        "scaler": state.scaler.state_dict(),
        "train_batches": state.train_batches.state_dict(),
        "scheduler": None if state.scheduler is None else state.scheduler.state_dict(),
        "rng": rng or _rng_states(device),
        "in_progress": None if in_progress is None else {
            "loss_sum": in_progress.loss_sum.detach().cpu(), "images": in_progress.images,
            "seconds": in_progress.seconds},
    }
    _keep_as_previous(path)
    write_atomic(path, lambda f: torch.save(payload, f))


def _keep_as_previous(path: Path) -> None:
    """Hard-link the current checkpoint as the previous, so it stays whole until replaced (else rename)."""
    if not path.is_file():
        return
    previous = path.with_name(PREVIOUS_FILE)
    try:
        previous.unlink(missing_ok=True)
        try:
            os.link(path, previous)
        except OSError:
            os.replace(path, previous)
    except OSError as err:
        raise OutputError(previous, err) from err


def remove(run_dir: Path, keep_newest: bool = False) -> None:
    """Delete a finished run's checkpoints (model.pt stays), or with `keep_newest` all but the newest."""
    for name in (PREVIOUS_FILE, TORN_FILE) if keep_newest else (CHECKPOINT_FILE, PREVIOUS_FILE, TORN_FILE):
        (Path(run_dir) / name).unlink(missing_ok=True)


def load_latest(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint, else checkpoint.prev.pt (the torn one moved aside); None if none."""
    newest, previous = Path(run_dir) / CHECKPOINT_FILE, Path(run_dir) / PREVIOUS_FILE
    if not newest.is_file():  # a kill between the two steps of save() leaves only the previous
        return load(previous) if previous.is_file() else None
    try:
        return load(newest)
    except CheckpointError as err:
        if not previous.is_file():
            raise
        try:
            payload = load(previous)
        except CheckpointError as also:
            raise CheckpointError(f"{err} The previous one cannot be read either: {also}") from also
        try:
            os.replace(newest, newest.with_name(TORN_FILE))
        except OSError as move:
            raise OutputError(newest, move) from move
        log.warning("%s; resuming from the checkpoint before it, %s (after %d epochs); the "
                    "unreadable one is now %s", str(err).split(". Delete")[0], previous,
                    len(payload["epochs"]), TORN_FILE)
        return payload


def load(path: Path) -> dict[str, Any]:
    """Read checkpoint.pt safely (weights_only: tensors and plain data, never code)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError,
            OSError) as err:  # OSError: a disk fault reading it
        raise CheckpointError(
            f"{path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0]}). Delete it "
            "to train this run from its first epoch, or restore a good copy.") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an alexnet-sweeps checkpoint (format {FORMAT}); "
                              "delete it to train this run from its first epoch.")
    return payload


def restore(payload: dict[str, Any], state: TrainingState,
            device: torch.device) -> tuple[list[dict[str, Any]], EpochProgress | None]:
    """Load the checkpoint into the live objects; returns the finished epochs and a mid-epoch's progress."""
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    _load_scaler(state.scaler, payload["scaler"])
    state.train_batches.load_state_dict(payload["train_batches"])
    if (state.scheduler is None) != (payload.get("scheduler") is None):
        raise CheckpointError("the checkpoint was taken with a different learning-rate schedule "
                              "setting (scheduler=...) than this run has: resume it with the "
                              "scheduler it was started with")
    if state.scheduler is not None:
        state.scheduler.load_state_dict(payload["scheduler"])
    _set_rng_states(payload["rng"], device)
    progress = payload.get("in_progress")
    if progress is not None:
        progress = EpochProgress(progress["loss_sum"].to(device), progress["images"], progress["seconds"])
    return list(payload["epochs"]), progress


def _load_scaler(scaler: torch.amp.GradScaler, saved: dict[str, Any]) -> None:
    """Carry over the fp16 loss scale; where none was saved (fp32 or bf16) it starts afresh, as a new run."""
    if scaler.is_enabled() and not saved:
        log.warning("the checkpoint was taken without fp16 loss scaling (trained in fp32 or bf16) "
                    "and this device trains in fp16: loss scaling starts afresh, as in a new fp16 "
                    "run (its first steps may be skipped while the scale settles)")
        return
    if saved and not scaler.is_enabled():
        log.info("the checkpoint's fp16 loss scale is not needed here (no fp16 on this device): dropped")
    scaler.load_state_dict(saved)


def save_weights(path: Path, model: nn.Module) -> None:
    """model.pt: the trained weights alone (load with torch.load(path, weights_only=True))."""
    weights = own(model.state_dict())
    write_atomic(path, lambda f: torch.save(weights, f))


def own(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Copy out views of larger tensors (a fused group's): torch.save would write all they view."""
    return {name: tensor.clone() if tensor.untyped_storage().nbytes()
            > tensor.numel() * tensor.element_size() else tensor for name, tensor in tensors.items()}


def _rng_states(device: torch.device) -> dict[str, Tensor]:
    """The CPU generator's state and the run's own device's (not every GPU's: it may resume elsewhere)."""
    states = {"torch": torch.get_rng_state()}
    if device.type != "cpu":
        states["device"] = torch.get_device_module(device).get_rng_state(device)
    return states


def _set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    """Restore the saved generators; on another kind of device only the CPU's (the GPU keeps the seed)."""
    torch.set_rng_state(states["torch"])
    state = states.get("device")
    legacy = states.get("cuda")  # before: every visible GPU's, by index
    if device.type == "cpu":
        if state is not None or legacy:
            log.info("the checkpoint was taken on a GPU and resumes on the CPU: the run continues "
                     "(not bit for bit: other kernels, dropout drawn from the CPU's generator)")
        return
    if state is None and legacy and device.type == "cuda" and (device.index or 0) < len(legacy):
        state = legacy[device.index or 0]
    if state is None:
        log.info("the checkpoint holds no %s generator state (taken on the CPU): the run continues "
                 "on %s, its dropout drawn from the run's seed (not bit for bit)", device.type, device)
        return
    torch.get_device_module(device).set_rng_state(state, device)
