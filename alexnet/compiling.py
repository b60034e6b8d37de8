"""The network as the speed settings want it run: channels_last, and torch.compile or CUDA graphs
when asked, each tried with one throwaway step first so that a compiler that fails falls back to
eager mode with one warning instead of stopping the run (alexnet/speed.py decides the settings)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn

from alexnet.speed import SpeedSettings

log = logging.getLogger(__name__)


class FullBatchGraphs(nn.Module):
    """A CUDA-graphed network (torch.compile mode="reduce-overhead": forward and backward captured
    once for the fixed batch shape, then replayed) that runs the last, smaller batch of an epoch
    eagerly: every image still trains, and no second graph is captured for the odd shape."""

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
    """A full batch of `batch_size` from any sample (its rows repeated when it is smaller), so the
    probe takes the path every full training batch takes (CUDA graphs only capture that shape)."""
    return images[torch.arange(batch_size, device=images.device) % len(images)]


def prepare_model(model: nn.Module, settings: SpeedSettings, probe: Callable[[nn.Module], None],
                  batch_size: int | None = None) -> nn.Module:
    """Apply channels_last, then compile or CUDA-graph if asked: `probe` runs one throwaway
    training step so a compiler failure shows now (torch.compile is lazy) and the run falls back
    to eager. `batch_size` is the full batch shape CUDA graphs are captured for. The probe leaves
    no trace: weights, BatchNorm statistics and the random generators (dropout) are put back."""
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
                    model, backend=settings.compile_backend, mode="reduce-overhead"), model,
                    batch_size or 0)
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
