"""Speed switches (channels_last, autocast, torch.compile, CUDA graphs, cudnn.benchmark, keeping
freed memory) decided for the device at hand: `auto` picks what benchmarks/RESULTS.md measured
fastest there, and a switch the device cannot honour falls back with one warning instead of
stopping the run. Applying them to the network is alexnet/compiling.py's job."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


@dataclass(frozen=True)
class SpeedSettings:
    channels_last: bool
    autocast_dtype: torch.dtype | None  # None: plain fp32
    compile: bool
    compile_backend: str
    cuda_graphs: bool = False
    keep_freed_memory: bool = False

    def describe(self) -> str:
        """For the log, e.g. `fp32, channels_last, eager`."""
        precision = {None: "fp32", torch.bfloat16: "bf16 autocast",
                     torch.float16: "fp16 autocast"}[self.autocast_dtype]
        mode = ("CUDA graphs" if self.cuda_graphs else
                f"torch.compile ({self.compile_backend})" if self.compile else "eager")
        return ", ".join([precision, *(["channels_last"] if self.channels_last else []), mode])

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


def native_bf16(capability: tuple[int, int]) -> bool:
    """Whether a CUDA GPU of this compute capability has bf16 arithmetic (Ampere, 8.0, and later).
    torch.cuda.is_bf16_supported() also says yes where bf16 is only emulated (V100, T4), slowly."""
    return tuple(capability) >= (8, 0)


def supported(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether autocast in `dtype` runs natively on `device`."""
    if device.type == "cuda":
        return dtype == torch.float16 or native_bf16(torch.cuda.get_device_capability(device))
    if device.type == "cpu":  # oneDNN knows whether this CPU has bf16 / fp16 instructions
        name = "_is_mkldnn_bf16_supported" if dtype == torch.bfloat16 else "_is_mkldnn_fp16_supported"
        try:
            return bool(getattr(torch.ops.mkldnn, name)())
        except (AttributeError, RuntimeError):  # a build without oneDNN: assume not
            return False
    return False


def auto_autocast(capability: tuple[int, int] | None) -> str:
    """What speed.autocast=auto means: on a CUDA GPU of `capability`, bf16 where it is native,
    else fp16 (with loss scaling); fp32 off CUDA (capability None)."""
    if capability is None:
        return "fp32"
    return "bf16" if native_bf16(capability) else "fp16"


def resolve(speed: DictConfig, device: torch.device) -> SpeedSettings:
    """Turn `auto` into a choice for this device, and unusable requests into a fallback with a
    warning. What `auto` means comes from measurements (benchmarks/RESULTS.md): torch.compile's
    default mode gained nothing for AlexNet at batch 32 on an H200 and cost ~20 s per run, so it is
    off everywhere; CUDA graphs stay off until measured on a GPU through this code; keeping freed
    memory is worth 1.05-1.26x on the CPU pipeline and cost 0.84x on the GPU one; bf16 autocast on
    a CPU slows the small network CPU runs use (0.6x), so CPU autocast stays fp32."""
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = bool(speed.cudnn_benchmark)
    channels_last = device.type in ("cuda", "cpu") if speed.channels_last == "auto" \
        else bool(speed.channels_last)
    requested = speed.autocast
    if requested == "auto":
        requested = auto_autocast(torch.cuda.get_device_capability(device) if cuda else None)
    dtype = DTYPES[requested]
    if dtype is not None and not supported(dtype, device):
        log.warning("speed.autocast=%s is not supported on %s; training in fp32 instead",
                    requested, device)
        dtype = None
    compile_model = False if speed.compile == "auto" else bool(speed.compile)
    graphs = False if speed.cuda_graphs == "auto" else bool(speed.cuda_graphs)
    if graphs and not cuda:
        log.warning("speed.cuda_graphs=true needs a CUDA device, not %s; running without", device)
        graphs = False
    keep = not cuda if speed.keep_freed_memory == "auto" else bool(speed.keep_freed_memory)
    return SpeedSettings(channels_last, dtype, compile_model, str(speed.compile_backend), graphs,
                         keep)
