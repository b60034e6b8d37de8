"""Several runs' networks trained as one (hydra/launcher=fused), HFTA's way: on a GPU a grouped
convolution and BatchNorm over the runs' stacked channels, a batched matmul per linear layer, each
run's dropout from its own generator. On the CPU convolutions run per run (oneDNN's grouped ones
measured 20% slower). Each run's network holds views of the fused weights, so its optimizer,
schedule and checkpoint are exactly those of training alone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

FUSABLE = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Dropout, nn.Linear, nn.Flatten)


def layers(network: nn.Module) -> list[nn.Module]:
    """Nested nn.Sequentials flattened."""
    if not isinstance(network, nn.Sequential):
        raise TypeError(f"only an nn.Sequential can be fused, not {type(network).__name__}")
    found = []
    for child in network:
        found += layers(child) if isinstance(child, nn.Sequential) else [child]
    return found


class Single(nn.Module):
    """A group of one: the run's own network (compiled or not) on the group interface."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        return [self.network(inputs[0])]

    def share_grads(self) -> None:
        """Its parameters hold their own gradients."""


class Fused(nn.Module):
    """K same-shaped networks as one; a trailing ReLU only some have (model.logit_relu) applies to those."""

    def __init__(self, networks: Sequence[nn.Module], generators: Sequence[torch.Generator],
                 grouped: bool = True) -> None:
        super().__init__()
        runs = [layers(network) for network in networks]
        self.k, self.generators, self.grouped = len(runs), list(generators), grouped
        shortest = min(len(run) for run in runs)
        self.relu_last = [len(run) > shortest for run in runs]  # model.logit_relu, per run
        if any(len(run) > shortest + 1 or (len(run) > shortest and not isinstance(run[-1], nn.ReLU))
               for run in runs):
            raise ValueError("networks of different shapes cannot be fused")
        self.runs = [run[:shortest] for run in runs]  # (a plain list: their weights are views)
        self.steps = nn.ModuleList()
        for position, group in enumerate(zip(*self.runs, strict=True)):
            kinds = {(type(layer), _shape(layer)) for layer in group}
            if len(kinds) != 1 or not isinstance(group[0], FUSABLE):
                raise ValueError(f"layer {position} differs between the runs or cannot be fused: "
                                 f"{sorted(map(str, kinds))}")
            self.steps.append(_fuse(list(group)))

    def forward(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        # (batch, runs x channels, h, w), or each run's (batch, channels, h, w) until Flatten
        x: Tensor | list[Tensor] = torch.cat(list(inputs), dim=1) if self.grouped else list(inputs)
        for step, group in zip(self.steps, zip(*self.runs, strict=True), strict=True):
            if isinstance(x, list) and not isinstance(group[0], nn.Flatten):
                x = [self._one(step, group[k], k, part) for k, part in enumerate(x)]
            else:
                x = self._apply(step, list(group), x)
        if any(self.relu_last):
            chosen = torch.tensor(self.relu_last, device=x.device).view(-1, 1, 1)
            x = torch.where(chosen, x.clamp_min(0), x)
        return list(x.unbind(0))

    def _one(self, step: nn.Module, layer: nn.Module, k: int, x: Tensor) -> Tensor:
        """Run k's part of a convolutional layer on its slice of the fused weights."""
        if isinstance(layer, nn.Conv2d):
            return F.conv2d(x, _part(step.weight, k, self.k), _part(step.bias, k, self.k),
                            layer.stride, layer.padding, layer.dilation, layer.groups)
        if isinstance(layer, nn.BatchNorm2d):
            if self.training:
                layer.num_batches_tracked.add_(1)
            return F.batch_norm(x, _part(step.running_mean, k, self.k), _part(step.running_var, k, self.k),
                                _part(step.weight, k, self.k), _part(step.bias, k, self.k), self.training,
                                layer.momentum, layer.eps)
        return layer(x)  # ReLU, MaxPool2d

    def _apply(self, step: nn.Module, group: list[nn.Module], x: Tensor | list[Tensor]) -> Tensor:
        first = group[0]
        if isinstance(x, list):  # (Flatten after per-run convolutions)
            return torch.stack([part.flatten(1) for part in x])
        if isinstance(first, nn.Conv2d):
            return F.conv2d(x, step.weight, step.bias, first.stride, first.padding, first.dilation,
                            first.groups * self.k)
        if isinstance(first, nn.BatchNorm2d):
            if self.training:
                for layer in group:
                    layer.num_batches_tracked.add_(1)
            return F.batch_norm(x, step.running_mean, step.running_var, step.weight, step.bias,
                                self.training, first.momentum, first.eps)
        if isinstance(first, nn.Linear):  # (runs, batch, features) @ (runs, in, out)
            return torch.baddbmm(step.bias.unsqueeze(1), x, step.weight)
        if isinstance(first, nn.Flatten):  # each run's (channels, h, w) in a row of its own
            return x.reshape(x.shape[0], self.k, -1).transpose(0, 1)
        if isinstance(first, nn.Dropout):
            return self._dropout(x, [layer.p for layer in group])
        return first(x)  # ReLU, MaxPool2d: each channel alone

    def _dropout(self, x: Tensor, p: list[float]) -> Tensor:
        """Each run's mask from its own generator, as nn.Dropout draws it on the CPU."""
        if not self.training:
            return x
        shape = dict(size=x.shape[1:], dtype=x.dtype, device=x.device)  # (in the logical order)
        masks = [torch.ones(**shape) if p[k] == 0 else
                 torch.empty(**shape).bernoulli_(1 - p[k], generator=self.generators[k])
                 .div_(1 - p[k]) for k in range(self.k)]
        return x * torch.stack(masks)

    def share_grads(self) -> None:
        """Gives each run's parameters their slice of the fused gradients, for its optimizer."""
        for step, group in zip(self.steps, zip(*self.runs, strict=True), strict=True):
            for name, fused in step.named_parameters():
                for k, layer in enumerate(group):
                    getattr(layer, name).grad = None if fused.grad is None else _part(
                        fused.grad, k, self.k, _transposed(layer, name))


def _shape(layer: nn.Module) -> tuple:
    """What must match for layers to fuse."""
    settings = {name: value for name, value in vars(layer).items()
                if not name.startswith("_") and name not in ("training", "p", "inplace")}
    return (tuple(tuple(p.shape) for p in layer.parameters()), repr(sorted(settings.items())))


def _transposed(layer: nn.Module, name: str) -> bool:
    """Fused linear weights are (runs, in, out): as fast, and x W^T's gradient would be copied."""
    return isinstance(layer, nn.Linear) and name == "weight"


def _part(fused: Tensor, k: int, runs: int, transposed: bool = False) -> Tensor:
    """Run k's index in a stacked tensor (runs first), else its block of a concatenated one."""
    if transposed:
        return fused[k].t()
    if fused.dim() == 2 and fused.shape[0] == runs:
        return fused[k]
    size = fused.shape[0] // runs
    return fused[k * size:(k + 1) * size]


def _fuse(group: list[nn.Module]) -> nn.Module:
    """Joins the group's parameters and buffers; each run's layer then holds views of them."""
    step = nn.Module()
    linear = isinstance(group[0], nn.Linear)
    for name, _ in group[0].named_parameters(recurse=False):
        parts = [getattr(m, name).detach() for m in group]
        joined = (torch.stack([p.t() for p in parts]) if _transposed(group[0], name) else
                  torch.stack(parts) if linear else torch.cat(parts))
        step.register_parameter(name, nn.Parameter(joined))
    for name in ("running_mean", "running_var"):
        if getattr(group[0], name, None) is not None:
            step.register_buffer(name, torch.cat([getattr(m, name) for m in group]))
    for k, layer in enumerate(group):
        for name, fused in [*step.named_parameters(), *step.named_buffers()]:
            getattr(layer, name).data = _part(fused.data, k, len(group), _transposed(layer, name))
    return step


def detach(network: nn.Module) -> None:
    """A run leaving its group gets its own copy of its weights."""
    for tensor in [*network.parameters(), *network.buffers()]:
        tensor.data = tensor.data.clone(memory_format=torch.contiguous_format)


def fuse(networks: Sequence[nn.Module], generators: Sequence[torch.Generator]) -> nn.Module:
    """Single for one run, else Fused (grouped convolutions off the CPU)."""
    if len(networks) == 1:
        return Single(networks[0])
    return Fused(networks, generators, grouped=next(networks[0].parameters()).device.type != "cpu")
