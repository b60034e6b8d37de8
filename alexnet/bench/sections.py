"""The benchmark: fair timing (sides warmed up, then alternated) and its comparisons."""

from __future__ import annotations

import dataclasses
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from PIL import Image
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms as T

from alexnet import speed
from alexnet.configs import compose_config
from alexnet.data.cifar import NUM_CLASSES, Cifar100, Split
from alexnet.data.pipelines import build_batches
from alexnet.data.torchvision_pipeline import SplitDataset
from alexnet.engine import evaluate, train_one_epoch, train_step
from alexnet.fused import fuse
from alexnet.launch.placement import cores
from alexnet.models import build_model
from alexnet.speed import keep_freed_memory

SECTIONS = ("pipeline", "train", "epoch", "fused")


def training_config(*overrides: str) -> DictConfig:
    return compose_config(*overrides)


def workers_config(*overrides: str) -> DictConfig:
    """The peer a user would pick instead of the notebook's loader: a DataLoader, a worker per core."""
    return training_config(*overrides, "data.pipeline=torchvision", f"data.num_workers={cores()}")


def model_pair(name: str, device: torch.device, settings: speed.SpeedSettings, batch_size: int,
               ) -> tuple[tuple[nn.Module, torch.optim.Optimizer], ...]:
    """The same network twice, with SGD: as the notebook ran it, and with our speed settings."""
    torch.manual_seed(0)
    plain = build_model(name).to(device)
    fast = speed.prepare_model(build_model(name).to(device), settings, lambda m: None, batch_size)
    return tuple((m, torch.optim.SGD(m.parameters(), lr=0.005)) for m in (plain, fast))


def bf16_worth_measuring(device: torch.device, settings: speed.SpeedSettings) -> bool:
    """A CPU with bf16 instructions that trains in fp32 by default: is bf16 worth it there?"""
    return device.type == "cpu" and settings.autocast_dtype is None \
        and speed.supported(torch.bfloat16, device)


def images_per_s(device: torch.device, batches: Iterable, count: int) -> Callable[[], float]:
    """A side that draws `count` batches and moves them to the device."""
    def run() -> float:
        def consume() -> int:
            seen = 0
            for i, (x, _) in enumerate(batches):
                if i == count:
                    break
                x.to(device, non_blocking=True)
                seen += len(x)
            return seen
        seconds, seen = timed(device, consume)
        return seen / seconds
    return run


def bench_pipeline(split: Split, device: torch.device, settings: speed.SpeedSettings,
                   batches: int, rounds: int) -> dict[str, float]:
    """Images/s of the input pipelines alone at 227x227, batch 128, over one pass of `batches`."""
    overrides = ("batch_size=128", "augmentation=crop_flip_normalize")
    split = split.head(batches * 128)  # a side's call is one whole pass: per-pass work counts
    ours = build_batches(split, training_config(*overrides), True, device, settings)
    peer = build_batches(split, workers_config(*overrides), True, device, settings)
    result = alternate(rounds, {
        "notebook": images_per_s(device, notebook_loader(split, 128), batches),
        "workers": images_per_s(device, peer, batches),
        "ours": images_per_s(device, ours, batches),
        "default_allocator": images_per_s(device, ours, batches)}).median
    return {"pipeline_notebook_227_img_s": result["notebook"],
            "pipeline_workers_227_img_s": result["workers"],
            "pipeline_ours_227_img_s": result["ours"],
            "pipeline_speedup_227": result["ours"] / result["notebook"],
            "pipeline_speedup_vs_workers_227": result["ours"] / result["workers"],
            "pipeline_ours_227_default_allocator_img_s": result["default_allocator"],
            "pipeline_allocator_speedup_227": result["ours"] / result["default_allocator"]}


def bench_train_227(split: Split, device: torch.device, settings: speed.SpeedSettings,
                    batch_size: int, steps: int, rounds: int) -> dict[str, float]:
    """Training images/s of AlexNet at 227, notebook vs ours (and bf16), with our one-time cost."""
    cfg = training_config(f"batch_size={batch_size}", "augmentation=crop_flip_normalize")
    split = split.head(steps * batch_size)  # a side's call is one whole pass
    (plain, plain_opt), (fast, fast_opt) = model_pair("alexnet", device, settings, batch_size)
    fused = fuse([fast], [])
    scaler = settings.grad_scaler(device)
    ours = build_batches(split, cfg, True, device, settings)
    theirs = notebook_loader(split, batch_size)

    def notebook_side() -> float:
        seconds, seen = timed(device, lambda: notebook_train(theirs, plain, plain_opt, device, steps))
        return seen / seconds

    def our_side(dtype: torch.dtype | None) -> Callable[[], float]:
        def run() -> float:
            def work() -> int:
                seen = 0
                fast.train()
                for i, (x, y) in enumerate(ours):
                    if i == steps:
                        break
                    train_step(fused, [x], [y], [fast_opt], dtype, [scaler])
                    seen += len(y)
                return seen
            seconds, seen = timed(device, work)
            return seen / seconds
        return run

    sides = {"notebook": notebook_side, "ours": our_side(settings.autocast_dtype)}
    bf16_cpu = bf16_worth_measuring(device, settings)
    if bf16_cpu:
        sides["ours_bf16"] = our_side(torch.bfloat16)
    timed_rounds = alternate(rounds, sides)
    result, first = timed_rounds.median, timed_rounds.first
    images = steps * batch_size
    key = f"227_b{batch_size}"
    figures = {f"train_notebook_{key}_img_s": result["notebook"],
               f"train_ours_{key}_img_s": result["ours"],
               f"train_speedup_{key}": result["ours"] / result["notebook"],
               f"train_ours_{key}_one_time_s": images / first["ours"] - images / result["ours"]}
    if bf16_cpu:
        figures[f"train_ours_bf16_{key}_img_s"] = result["ours_bf16"]
        figures[f"train_bf16_speedup_{key}"] = result["ours_bf16"] / result["ours"]
    return figures


def bench_epoch(data: Cifar100, device: torch.device, settings: speed.SpeedSettings,
                train_images: int, test_images: int, rounds: int) -> dict[str, float]:
    """One small epoch (train + test) end to end, and its time outside the model."""
    small = ("model=alexnet_cifar", "batch_size=128", "augmentation=crop_flip_normalize")
    train, test = data.train.head(train_images), data.test.head(test_images)
    (plain, plain_opt), (fast, fast_opt) = model_pair("alexnet_cifar", device, settings, 128)
    scaler = settings.grad_scaler(device)
    inputs = {}
    for name, cfg in (("notebook", training_config(*small, "data.pipeline=torchvision")),
                      ("workers", workers_config(*small)), ("ours", training_config(*small))):
        inputs[name] = (build_batches(train, cfg, True, device, settings),
                        build_batches(test, cfg, False, device, settings))

    def notebook_epoch() -> float:
        their_train, their_test = inputs["notebook"]
        return timed(device, lambda: (notebook_train(their_train, plain, plain_opt, device),
                                      notebook_test(their_test, plain, device)))[0]

    def our_epoch(name: str, dtype: torch.dtype | None = settings.autocast_dtype) -> Callable[[], float]:
        train_batches, test_batches = inputs[name]
        return lambda: timed(device, lambda: (
            train_one_epoch(fuse([fast], []), [train_batches], [fast_opt], device, False, dtype, [scaler]),
            evaluate(fuse([fast], []), [test_batches], NUM_CLASSES, device, False, dtype)))[0]

    def input_only(name: str) -> Callable[[], float]:
        return lambda: timed(device, lambda: [x for batches in inputs[name] for x, _ in batches])[0]

    sides = {"notebook": notebook_epoch, "workers": our_epoch("workers"), "ours": our_epoch("ours"),
             "notebook_input": input_only("notebook"), "ours_input": input_only("ours")}
    if bf16_worth_measuring(device, settings):
        sides["ours_bf16"] = our_epoch("ours", torch.bfloat16)
    result = alternate(rounds, sides).median
    bf16 = {"epoch_small_ours_bf16_s": result["ours_bf16"],
            "epoch_small_bf16_speedup": result["ours"] / result["ours_bf16"]} if "ours_bf16" in result else {}
    return bf16 | {"epoch_small_notebook_s": result["notebook"], "epoch_small_workers_s": result["workers"],
                   "epoch_small_ours_s": result["ours"],
                   "epoch_small_speedup": result["notebook"] / result["ours"],
                   "epoch_small_speedup_vs_workers": result["workers"] / result["ours"],
                   "epoch_small_train_images": train_images, "epoch_small_test_images": test_images,
                   "epoch_small_notebook_input_share": result["notebook_input"] / result["notebook"],
                   "epoch_small_ours_input_share": result["ours_input"] / result["ours"]}


def _group(name: str, runs: int, data: Cifar100, device: torch.device,
           settings: speed.SpeedSettings) -> list[Any]:
    """`runs` runs at batch 32, each its own seed and learning rate, built as a sweep builds them."""
    from alexnet.fit import build_training

    built = []
    for index in range(runs):
        cfg = training_config(f"model={name}", "batch_size=32", f"seed={index}",
                              f"optimizer.lr={0.005 * (index + 1)}")
        torch.manual_seed(index)
        built.append(build_training(cfg, data, device, settings))
    return built


def _pass(model: nn.Module, parts: list[Any], device: torch.device, settings: speed.SpeedSettings) -> None:
    train_one_epoch(model, [p.state.train_batches for p in parts], [p.state.optimizer for p in parts], device,
                    False, settings.autocast_dtype, [p.state.scaler for p in parts])


def _packed_run(name: str, index: int, data: Cifar100, threads: int, ready: Any, done: Any) -> None:
    """One packed run in its own process, warmed up, timed from when every process is ready."""
    torch.set_num_threads(threads)
    device = torch.device("cpu") if not torch.cuda.is_available() else torch.device("cuda")
    settings = speed.resolve(training_config().speed, device)
    (part,) = _group(name, index + 1, data, device, settings)[index:]
    model = fuse([part.state.model], [])
    _pass(model, [part], device, settings)  # (warmed up, as the other sides are)
    ready.wait()
    start = time.time()
    _pass(model, [part], device, settings)
    sync(device)
    done.put((start, time.time()))


def bench_fused(data: Cifar100, device: torch.device, settings: speed.SpeedSettings,
                steps: int, rounds: int, runs: Sequence[int] = (1, 2, 4, 8),
                networks: Sequence[str] = ("alexnet_cifar", "alexnet")) -> dict[str, float]:
    """Training images/s of K runs at batch 32: fused, one after another, and K packed processes."""
    import multiprocessing

    figures: dict[str, float] = {"fused_steps": steps}
    train = dataclasses.replace(data, train=data.train.head(32 * steps))
    context = multiprocessing.get_context("spawn")
    for name in networks:
        for k in runs:
            images = 32 * steps * k

            def fused(k: int = k, name: str = name, images: int = images) -> float:
                parts = _group(name, k, train, device, settings)
                model = fuse([p.state.model for p in parts],
                             [torch.Generator(device).manual_seed(i) for i in range(k)])
                return images / timed(device, lambda: _pass(model, parts, device, settings))[0]

            def sequential(k: int = k, name: str = name, images: int = images) -> float:
                parts = _group(name, k, train, device, settings)
                return images / timed(device, lambda: [_pass(fuse([p.state.model], []), [p], device,
                                                             settings) for p in parts])[0]

            def packed(k: int = k, name: str = name, images: int = images) -> float:
                ready, done = context.Barrier(k), context.Queue()
                threads = max(1, cores() // k)
                workers = [context.Process(target=_packed_run, args=(name, i, train, threads, ready, done))
                           for i in range(k)]
                for worker in workers:
                    worker.start()
                spans = [done.get() for _ in workers]
                for worker in workers:
                    worker.join()
                return images / (max(end for _, end in spans) - min(begin for begin, _ in spans))

            result = alternate(rounds, {"fused": fused, "sequential": sequential, "packed": packed}).median
            for side, value in result.items():
                figures[f"fused_{name}_k{k}_{side}_img_s"] = value
            figures[f"fused_{name}_k{k}_vs_sequential"] = result["fused"] / result["sequential"]
            figures[f"fused_{name}_k{k}_vs_packed"] = result["fused"] / result["packed"]
    return figures


def memory(device: torch.device, train_images: int) -> dict[str, float]:
    """Peak memory of this process, and what the resident uint8 data costs by design."""
    figures = {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "train_set_uint8_mb": train_images * 3 * 32 * 32 / 1e6,
        "train_set_float32_227_gb": train_images * 3 * 227 * 227 * 4 / 1e9,
    }
    if device.type == "cuda":
        figures["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return figures


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], Any]) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    result = work()
    sync(device)
    return time.perf_counter() - start, result


@dataclass
class Alternated:
    median: dict[str, float]  # each side's median over the timed rounds
    first: dict[str, float]  # each side's cold first call (the warm-up)


def alternate(rounds: int, sides: dict[str, Callable[[], float]], warmup: bool = True) -> Alternated:
    """Each side's median over `rounds` alternated rounds after a warm-up (none for fresh processes).
    `notebook...` and `default_allocator` sides run with glibc's default allocator, as the notebook did."""
    figures: dict[str, list[float]] = {name: [] for name in sides}
    first: dict[str, float] = {}
    for round_ in range(rounds + 1 if warmup else rounds):
        for name, side in sides.items():
            keep_freed_memory(not name.startswith(("notebook", "default_allocator")))
            figure = side()
            if warmup and round_ == 0:
                first[name] = figure
            else:
                figures[name].append(figure)
    keep_freed_memory(True)
    return Alternated({name: statistics.median(v) for name, v in figures.items()}, first)


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


class NotebookDataset(SplitDataset):
    """torchvision's CIFAR100 as the notebook used it: transforms draw from the global generator."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [self[index] for index in indices]


def notebook_loader(split: Split, batch_size: int, input_size: int = 227) -> DataLoader:
    """The notebook's training input, verbatim: per-image PIL transforms, one process, no shuffling."""
    transform = T.Compose([T.Resize(230), T.RandomHorizontalFlip(), T.Resize(input_size), T.ToTensor(),
                           T.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))])
    return DataLoader(NotebookDataset(split, transform), batch_size=batch_size)


def notebook_train(loader: Iterable, model: nn.Module, optimizer: torch.optim.Optimizer,
                   device: torch.device, steps: int | None = None) -> int:
    """The notebook's train(); returns the images seen."""
    model.train()
    seen = 0
    for step, (x, y) in enumerate(loader):
        if steps is not None and step == steps:
            break
        x, y = x.to(device), y.to(device)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            loss.item()  # the notebook printed the loss here
        seen += len(y)
    return seen


def notebook_test(loader: Iterable, model: nn.Module, device: torch.device) -> float:
    """The notebook's test() with its per-batch host syncs, accuracy over the true image count."""
    model.eval()
    y_true, y_pred, correct, total = [], [], 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            pred = model(x)
            nn.functional.cross_entropy(pred, y).item()
            y_true.extend(y.cpu().numpy())
            y_pred.extend(pred.argmax(1).cpu().numpy())
            correct += (pred.argmax(1) == y).float().sum().item()
            total += len(y)
    f1_score(y_true, y_pred, average="macro")
    return correct / total
