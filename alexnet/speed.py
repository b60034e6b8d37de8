"""Speed switches (channels_last, autocast, torch.compile, cudnn.benchmark) resolved for the
device at hand: `auto` picks what is fast and safe there, and a switch the device cannot honour
falls back with one warning instead of stopping the run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


@dataclass(frozen=True)
class SpeedSettings:
    channels_last: bool
    autocast_dtype: torch.dtype | None  # None: plain fp32
    compile: bool
    compile_backend: str

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def input_dtype(self) -> torch.dtype:
        """What the input pipeline should emit: the autocast dtype halves its memory traffic."""
        return self.autocast_dtype or torch.float32

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none (disabled)."""
        return torch.amp.GradScaler(device.type, enabled=self.autocast_dtype == torch.float16)


def _supported(dtype: torch.dtype, device: torch.device) -> bool:
    if device.type == "cuda":
        return dtype == torch.float16 or torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # oneDNN knows whether this CPU has bf16 / fp16 instructions
        name = "_is_mkldnn_bf16_supported" if dtype == torch.bfloat16 else "_is_mkldnn_fp16_supported"
        try:
            return bool(getattr(torch.ops.mkldnn, name)())
        except (AttributeError, RuntimeError):  # a build without oneDNN: assume not
            return False
    return False


def resolve(speed: DictConfig, device: torch.device) -> SpeedSettings:
    """Turn `auto` into a choice for this device, and unusable requests into fp32 with a warning."""
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = bool(speed.cudnn_benchmark)
    channels_last = device.type in ("cuda", "cpu") if speed.channels_last == "auto" \
        else bool(speed.channels_last)
    requested = speed.autocast
    if requested == "auto":
        requested = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    dtype = DTYPES[requested]
    if dtype is not None and not _supported(dtype, device):
        log.warning("speed.autocast=%s is not supported on %s; training in fp32 instead",
                    requested, device)
        dtype = None
    compile_model = cuda if speed.compile == "auto" else bool(speed.compile)
    return SpeedSettings(channels_last, dtype, compile_model, str(speed.compile_backend))


def prepare_model(model: nn.Module, settings: SpeedSettings,
                  probe: Callable[[nn.Module], None]) -> nn.Module:
    """Apply channels_last, then compile if asked: `probe` runs one throwaway training step so a
    compiler failure shows now (torch.compile is lazy) and the run falls back to eager."""
    model = model.to(memory_format=settings.memory_format)
    if not settings.compile:
        return model
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        compiled = torch.compile(model, backend=settings.compile_backend)
        probe(compiled)
    except Exception as err:  # any compiler or backend error: eager mode still trains
        log.warning("torch.compile failed (%s: %s); training without it",
                    type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        compiled = model
    finally:  # the probe step must not count: restore weights and BatchNorm statistics
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
    return compiled
