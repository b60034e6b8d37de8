"""checkpoint.pt: everything a run needs to go on exactly where it stopped.

Model, optimizer and grad-scaler state, the epochs' metrics, the input pipeline's position, and
every random generator the rest of the run draws from (torch's CPU and CUDA generators, the
pipeline's own; the code draws from no Python or NumPy generator). Written atomically; read with
`torch.load(weights_only=True)`, so a checkpoint can hold tensors and plain data but no code."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from alexnet.data.pipelines import Batches
from alexnet.engine import EpochProgress
from alexnet.files import write_atomic

CHECKPOINT_FILE = "checkpoint.pt"
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


def save(path: Path, state: TrainingState, overrides: list[str], epochs: list[dict[str, Any]],
         in_progress: EpochProgress | None = None) -> None:
    """Write checkpoint.pt after `epochs`, or mid-epoch with `in_progress` (a safe point)."""
    payload = {
        "format": FORMAT,
        "overrides": list(overrides),
        "epochs": list(epochs),
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scaler": state.scaler.state_dict(),
        "train_batches": state.train_batches.state_dict(),
        "rng": _rng_states(),
        "in_progress": None if in_progress is None else {
            "loss_sum": in_progress.loss_sum.detach().cpu(), "images": in_progress.images,
            "seconds": in_progress.seconds},
    }
    write_atomic(path, lambda f: torch.save(payload, f))


def load(path: Path) -> dict[str, Any]:
    """Read checkpoint.pt safely (weights_only: tensors and plain data, never code)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as err:
        raise CheckpointError(
            f"{path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0]}). Delete it "
            "to train this run from its first epoch, or restore a good copy.") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an alexnet-sweeps checkpoint (format {FORMAT}); "
                              "delete it to train this run from its first epoch.")
    return payload


def restore(payload: dict[str, Any], state: TrainingState,
            device: torch.device) -> tuple[list[dict[str, Any]], EpochProgress | None]:
    """Put the checkpoint back into the live objects; returns the finished epochs' metrics and,
    for a mid-epoch checkpoint, how far that epoch had got."""
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.scaler.load_state_dict(payload["scaler"])
    state.train_batches.load_state_dict(payload["train_batches"])
    _set_rng_states(payload["rng"])
    progress = payload.get("in_progress")
    if progress is not None:
        progress = EpochProgress(progress["loss_sum"].to(device), progress["images"],
                                 progress["seconds"])
    return list(payload["epochs"]), progress


def save_weights(path: Path, model: nn.Module) -> None:
    """model.pt: the trained weights alone (load with torch.load(path, weights_only=True))."""
    weights = model.state_dict()
    write_atomic(path, lambda f: torch.save(weights, f))


def _rng_states() -> dict[str, Tensor | list[Tensor]]:
    states: dict[str, Tensor | list[Tensor]] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
