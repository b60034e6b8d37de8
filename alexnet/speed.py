"""Speed switches decided for the device at hand: `auto` picks what benchmarks/RESULTS.md measured
fastest there; a switch the device cannot honour falls back with one warning, not a stopped run."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

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
        """The input pipeline emits the autocast dtype: half the memory traffic."""
        return self.autocast_dtype or torch.float32

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none (disabled)."""
        return torch.amp.GradScaler(device.type, enabled=self.autocast_dtype == torch.float16)


def native_bf16(capability: tuple[int, int]) -> bool:
    """Ampere (8.0) on; torch.cuda.is_bf16_supported() also says yes where bf16 is emulated (V100, T4)."""
    return tuple(capability) >= (8, 0)


def supported(dtype: torch.dtype, device: torch.device) -> bool:
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
    """speed.autocast=auto: bf16 where native, else fp16 on CUDA; fp32 off CUDA (capability None)."""
    return "fp32" if capability is None else "bf16" if native_bf16(capability) else "fp16"


def resolve(speed: DictConfig, device: torch.device) -> SpeedSettings:
    """`auto` as measured (benchmarks/RESULTS.md): compile off (nothing gained, ~20 s a run), CUDA graphs
    off (unmeasured), freed memory kept on the CPU only (1.05-1.26x; 0.84x on GPU), CPU autocast fp32."""
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
        log.warning("speed.autocast=%s is not supported on %s; training in fp32 instead", requested, device)
        dtype = None
    compile_model = False if speed.compile == "auto" else bool(speed.compile)
    graphs = False if speed.cuda_graphs == "auto" else bool(speed.cuda_graphs)
    if graphs and not cuda:
        log.warning("speed.cuda_graphs=true needs a CUDA device, not %s; running without", device)
        graphs = False
    keep = not cuda if speed.keep_freed_memory == "auto" else bool(speed.keep_freed_memory)
    return SpeedSettings(channels_last, dtype, compile_model, str(speed.compile_backend), graphs, keep)


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


def keep_freed_memory(enabled: bool = True) -> bool:
    """Asks glibc to keep (or return, its default) large freed buffers; False where it is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "mallopt"):  # musl and others: no mallopt
        return False
    mmap_max, trim = (0, 2**31 - 1) if enabled else (_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD)
    return bool(libc.mallopt(_M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim))


class FullBatchGraphs(nn.Module):
    """CUDA graphs for full batches; an epoch's smaller last batch runs eagerly, not captured again."""

    def __init__(self, graphed: nn.Module, eager: nn.Module, batch_size: int) -> None:
        super().__init__()
        self.graphed, self.eager = graphed, eager  # (the same weights, two ways to run them)
        self.batch_size = batch_size

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] != self.batch_size:
            return self.eager(x)
        torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are consumed
        return self.graphed(x)


def probe_batch(images: Tensor, batch_size: int) -> Tensor:
    """A full batch (rows repeated), the only shape CUDA graphs capture."""
    return images[torch.arange(batch_size, device=images.device) % len(images)]


def prepare_model(model: nn.Module, settings: SpeedSettings, probe: Callable[[nn.Module], None],
                  batch_size: int | None = None) -> nn.Module:
    """`probe` runs a throwaway step so a lazy compiler's failure falls back to eager now; weights,
    BatchNorm statistics and random generators are put back after it."""
    model = model.to(memory_format=settings.memory_format)
    if not (settings.compile or settings.cuda_graphs):
        return model
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    device = next(model.parameters()).device
    accelerator = [device] if device.type != "cpu" else []
    with torch.random.fork_rng(devices=accelerator, device_type=device.type if accelerator else "cuda"):
        try:
            if settings.cuda_graphs:
                compiled: nn.Module = FullBatchGraphs(torch.compile(
                    model, backend=settings.compile_backend, mode="reduce-overhead"), model, batch_size or 0)
            else:
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
