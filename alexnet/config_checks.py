"""Reject bad settings before any data is read or any step is trained, saying what is allowed."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from alexnet import config_schema  # noqa: F401 - registers the schemas before any composition
from alexnet.data.pipelines import PIPELINES
from alexnet.models import MODELS
from alexnet.speed import DTYPES


class ConfigError(ValueError):
    """A setting is out of range; the message names the key, the value and what is allowed."""


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_positive_int(key: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not _positive_int(value):
        allowed = "a positive integer" + (" or null (all)" if allow_none else "")
        raise ConfigError(f"{key}={value!r} is not allowed: it must be {allowed}, e.g. {key}=32")


def resolve_device(name: str) -> torch.device:
    """`auto` means CUDA when available, else the CPU; an unusable explicit device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(
            f"device={name!r} is not a device: use auto, cpu, cuda, cuda:N or mps"
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here: use device=auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name!r} but MPS is not available here: use device=auto or cpu")
    return device


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first setting no run could use."""
    _check_positive_int("batch_size", cfg.batch_size)
    _check_positive_int("epochs", cfg.epochs)
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed!r} is not allowed: it must be an integer >= 0")
    resolve_device(cfg.device)
    _check_positive_int("data.train_subset", cfg.data.train_subset, allow_none=True)
    _check_positive_int("data.test_subset", cfg.data.test_subset, allow_none=True)
    if not isinstance(cfg.data.num_workers, int) or cfg.data.num_workers < 0:
        raise ConfigError(f"data.num_workers={cfg.data.num_workers!r}: must be an integer >= 0")
    if cfg.data.pipeline not in PIPELINES:
        raise ConfigError(f"data.pipeline={cfg.data.pipeline!r}: choose one of {list(PIPELINES)}")
    _check_speed(cfg.speed)
    if cfg.model.name not in MODELS:
        raise ConfigError(f"model.name={cfg.model.name!r}: choose one of {sorted(MODELS)}")
    _check_positive_int("model.input_size", cfg.model.input_size)
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise ConfigError(f"model.dropout={cfg.model.dropout!r}: must be in [0, 1)")
    lr = cfg.optimizer.get("lr")
    if not isinstance(lr, int | float) or isinstance(lr, bool) or lr <= 0:
        raise ConfigError(f"optimizer.lr={lr!r} is not allowed: it must be a number > 0")
    _check_augmentation(cfg.augmentation, cfg.model.input_size)
    _check_resume(cfg)
    _check_launch(cfg)


def _check_launch(cfg: DictConfig) -> None:
    _check_positive_int("torch_threads", cfg.torch_threads, allow_none=True)
    _check_positive_int("launch.jobs_per_gpu", cfg.launch.jobs_per_gpu)


def _check_resume(cfg: DictConfig) -> None:
    """Ranges only: types and choices of these blocks are checked by their schemas
    (alexnet/config_schema.py) when Hydra composes the config."""
    if not isinstance(cfg.heartbeat_s, int | float) or cfg.heartbeat_s <= 0:
        raise ConfigError(f"heartbeat_s={cfg.heartbeat_s!r}: must be a number of seconds > 0")
    _check_positive_int("early_stop.patience", cfg.early_stop.patience, allow_none=True)
    if cfg.early_stop.min_delta < 0:
        raise ConfigError(f"early_stop.min_delta={cfg.early_stop.min_delta!r}: must be >= 0")


def _check_augmentation(aug: DictConfig, input_size: int) -> None:
    for switch in ("crop", "flip", "normalize"):
        if not isinstance(aug[switch], bool):
            raise ConfigError(f"augmentation.{switch}={aug[switch]!r}: must be true or false")
    if aug.crop and (not _positive_int(aug.resize) or aug.resize < input_size):
        raise ConfigError(
            f"augmentation.resize={aug.resize!r} with crop=true: must be an integer >= "
            f"model.input_size ({input_size}), e.g. augmentation.resize={input_size + 3}"
        )
    for key in ("mean", "std"):
        if len(aug[key]) != 3:
            raise ConfigError(f"augmentation.{key} must hold 3 values (R, G, B), got {list(aug[key])}")
    if any(s <= 0 for s in aug.std):
        raise ConfigError(f"augmentation.std={list(aug.std)}: every value must be > 0")


def _check_speed(speed: DictConfig) -> None:
    if speed.autocast not in ("auto", *DTYPES):
        raise ConfigError(f"speed.autocast={speed.autocast!r}: choose auto, {', '.join(DTYPES)}")
    for key in ("channels_last", "compile", "cuda_graphs", "cudnn_benchmark", "keep_freed_memory"):
        if speed[key] not in ("auto", True, False):
            raise ConfigError(f"speed.{key}={speed[key]!r}: choose auto, true or false")
