"""Reject bad settings before any data is read, saying what is allowed: ranges and cross-key
rules that the schema's types (alexnet/config_schema.py) cannot say."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import DictConfig

from alexnet import (
    config_schema,  # noqa: F401 - registers the schemas before any composition
    scores,
)
from alexnet.data.cifar import NUM_CLASSES, TRAIN_IMAGES
from alexnet.models import MODELS


class ConfigError(ValueError):
    """A setting is out of range; the message names key, value and what is allowed."""


def _check_positive_int(key: str, value: Any, example: int, allow_none: bool = False) -> None:
    if not (value is None and allow_none) and value <= 0:
        allowed = "a positive integer" + (" or null" if allow_none else "")
        raise ConfigError(f"{key}={value!r} is not allowed: it must be {allowed}, e.g. {key}={example}")


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else CPU; MPS is refused (no float64 for the metric sums, untested)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device={name!r} is not a device: use auto, cpu, cuda or cuda:N") from err
    if device.type == "mps":
        raise ConfigError(f"device={name!r} is not supported (MPS has no float64, which the loss and "
                          "metric sums need, and is untested here): use device=cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={name!r} is not supported: use device=auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here: use device=auto or cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r} but this machine has {torch.cuda.device_count()} "
                          "GPU(s), cuda:0 and up: use device=auto or one of those")
    return device


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first setting no run could use."""
    _check_known_keys(cfg)
    _check_positive_int("batch_size", cfg.batch_size, 32)
    _check_positive_int("epochs", cfg.epochs, 10)
    if cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed!r} is not allowed: it must be an integer >= 0, e.g. seed=0")
    resolve_device(cfg.device)
    _check_positive_int("data.train_subset", cfg.data.train_subset, 5000, allow_none=True)
    _check_positive_int("data.test_subset", cfg.data.test_subset, 1000, allow_none=True)
    _check_positive_int("data.val_split", cfg.data.val_split, 500, allow_none=True)
    if cfg.data.val_split is not None and cfg.data.val_split < NUM_CLASSES:
        raise ConfigError(f"data.val_split={cfg.data.val_split} is fewer than the {NUM_CLASSES} "
                          "classes, and a stratified hold-out takes at least one of each: hold out "
                          f"more, e.g. data.val_split={NUM_CLASSES * 5}")
    training = min(cfg.data.train_subset or TRAIN_IMAGES, TRAIN_IMAGES)
    if cfg.data.val_split is not None and cfg.data.val_split >= training:
        raise ConfigError(f"data.val_split={cfg.data.val_split} holds out all of the {training} "
                          "training images (data.train_subset selects them): hold out fewer, e.g. "
                          f"data.val_split={max(1, training // 10)}")
    _check_scheduler(cfg.scheduler)
    if cfg.data.num_workers < 0:
        raise ConfigError(f"data.num_workers={cfg.data.num_workers!r}: must be >= 0, e.g. data.num_workers=0")
    _check_speed(cfg.speed)
    if cfg.model.name not in MODELS:
        raise ConfigError(f"model.name={cfg.model.name!r}: choose one of {sorted(MODELS)}")
    _check_positive_int("model.input_size", cfg.model.input_size, 227)
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise ConfigError(f"model.dropout={cfg.model.dropout!r}: must be in [0, 1), e.g. model.dropout=0.5")
    if cfg.optimizer.lr <= 0:
        raise ConfigError(f"optimizer.lr={cfg.optimizer.lr!r} is not allowed: it must be > 0, "
                          "e.g. optimizer.lr=0.01")
    if not 0.0 <= cfg.loss.label_smoothing < 1.0:
        raise ConfigError(f"loss.label_smoothing={cfg.loss.label_smoothing!r}: must be in [0, 1), "
                          "e.g. loss.label_smoothing=0.1")
    _check_augmentation(cfg.augmentation, cfg.model.input_size)
    _check_resume(cfg)
    _check_objective(cfg)
    _check_positive_int("torch_threads", cfg.torch_threads, 2, allow_none=True)


def _known(node: Any) -> set[str] | None:
    """A block's schema keys; None where any key may be added (an Any-typed block)."""
    return {f.name for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else None


def _unknown(key: str, known: set[str], prefix: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    guess = f"; did you mean {prefix}{close[0]}?" if close else ""
    return ConfigError(f"{prefix}{key} is not a setting of this app{guess} (python -m alexnet.train "
                       "--help lists them)")


def _check_known_keys(cfg: DictConfig) -> None:
    """Refuse unknown keys (`+epoch=1`), naming the nearest; Any-typed blocks take any key."""
    known = _known(config_schema.ConfigSchema)
    for key in cfg:
        if key == "hydra":
            continue
        if key not in known:
            raise _unknown(str(key), known)
        block = _known(config_schema.ConfigSchema.__dataclass_fields__[str(key)].default_factory)
        if block is not None and isinstance(cfg[key], DictConfig):
            for inner in cfg[key]:
                if inner not in block:
                    raise _unknown(str(inner), block, f"{key}.")


def check_swept_keys(cfg: DictConfig, overrides: Sequence[Any]) -> None:
    """Refuse a typo in a swept key once for the sweep instead of failing every job."""
    known = {*_known(config_schema.ConfigSchema), "experiment", "sweep"}  # (the last two: groups)
    for override in overrides:
        key = override.get_key_element().lstrip("+~")
        top = key.split(".")[0].split("/")[0]
        if override.is_sweep_override() and top not in known and top != "hydra":
            raise _unknown(top, known)


def _check_scheduler(scheduler: DictConfig | None) -> None:
    if not scheduler:
        return
    for key, low, high in (("warmup_start", 0.0, 1.0), ("min_factor", 0.0, 1.0),
                           ("warmup_fraction", 0.0, 1.0), ("gamma", 0.0, 1.0)):
        value = scheduler.get(key)
        if value is not None and not low <= value <= high:
            raise ConfigError(f"scheduler.{key}={value!r}: must be in [{low}, {high}], e.g. "
                              f"scheduler.{key}={0.1 if key != 'warmup_fraction' else 0.3}")
    if scheduler.get("warmup_epochs", 0) < 0:
        raise ConfigError(f"scheduler.warmup_epochs={scheduler.warmup_epochs!r}: must be >= 0, "
                          "e.g. scheduler.warmup_epochs=1")
    if scheduler.get("every_epochs") is not None:
        _check_positive_int("scheduler.every_epochs", scheduler.every_epochs, 5)


def _check_objective(cfg: DictConfig) -> None:
    known = (*scores.EPOCH_METRICS, *scores.RECORD_METRICS)
    for name in scores.objectives(cfg):
        if name not in known:
            raise ConfigError(f"objective={name} is not a score a run records: use auto (val_acc "
                              f"with data.val_split, else test_acc) or one of {', '.join(known)}")
        _check_split_for("objective", name, cfg, ", or use objective=auto")


def _check_split_for(key: str, metric: str, cfg: DictConfig, or_else: str = "") -> None:
    if metric.startswith("val_") and cfg.data.val_split is None:
        raise ConfigError(f"{key}={metric} needs a validation split: add data.val_split=N "
                          f"(e.g. data.val_split=500){or_else}")


def _check_resume(cfg: DictConfig) -> None:
    if cfg.heartbeat_s <= 0:
        raise ConfigError(f"heartbeat_s={cfg.heartbeat_s!r}: must be a number of seconds > 0, "
                          "e.g. heartbeat_s=30")
    _check_positive_int("early_stop.patience", cfg.early_stop.patience, 3, allow_none=True)
    _check_split_for("early_stop.monitor", str(cfg.early_stop.monitor), cfg)
    if cfg.early_stop.min_delta < 0:
        raise ConfigError(f"early_stop.min_delta={cfg.early_stop.min_delta!r}: must be >= 0, e.g. "
                          "early_stop.min_delta=0.001")


def _check_augmentation(aug: DictConfig, input_size: int) -> None:
    if aug.crop and aug.resize < input_size:
        raise ConfigError(f"augmentation.resize={aug.resize!r} with crop=true: must be an integer >= "
                          f"model.input_size ({input_size}), e.g. augmentation.resize={input_size + 3}")
    for key in ("mean", "std"):
        if len(aug[key]) != 3:
            raise ConfigError(f"augmentation.{key} must hold 3 values (R, G, B), got {list(aug[key])}")
    if any(s <= 0 for s in aug.std):
        raise ConfigError(f"augmentation.std={list(aug.std)}: every value must be > 0")


def _check_speed(speed: DictConfig) -> None:
    for key in ("channels_last", "compile", "cuda_graphs", "cudnn_benchmark", "keep_freed_memory"):
        if speed[key] not in ("auto", True, False):
            raise ConfigError(f"speed.{key}={speed[key]!r}: choose auto, true or false")
