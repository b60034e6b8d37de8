"""Benchmark: the notebook's input pipeline and training loop against ours, in one process.

    python -m alexnet.bench --data-root ../shared/data [--quick] [--json PATH]

Each comparison alternates its two sides round by round and reports medians and their ratio,
so machine noise hits both sides alike. Figures: input pipeline images/s at 227x227 output;
training images/s at 227x227 for batch 32 and 128; one epoch (train + test) of a small config
(`alexnet_cifar` on real data) end to end, with the share of it spent outside the model."""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms as T

from alexnet import speed
from alexnet.allocator import keep_freed_memory
from alexnet.config_checks import resolve_device
from alexnet.data.cifar import NUM_CLASSES, Cifar100, Split, load_cifar100
from alexnet.data.pipelines import build_batches
from alexnet.data.torchvision_pipeline import SplitDataset
from alexnet.engine import evaluate, train_one_epoch, train_step
from alexnet.models import build_model

CONF = Path(__file__).resolve().parents[1] / "conf"
SECTIONS = ("pipeline", "train", "epoch", "sweep")


def notebook_loader(split: Split, batch_size: int, input_size: int = 227) -> DataLoader:
    """The notebook's training input, verbatim: two resizes, flip, ToTensor, Normalize, per PIL
    image, in a single-process DataLoader without shuffling."""
    transform = T.Compose([
        T.Resize(230), T.RandomHorizontalFlip(), T.Resize(input_size), T.ToTensor(),
        T.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    ])
    return DataLoader(SplitDataset(split, transform), batch_size=batch_size)


def notebook_train(loader: Iterable, model: nn.Module, optimizer: torch.optim.Optimizer,
                   device: torch.device, steps: int | None = None) -> int:
    """The notebook's train(): move each batch, forward, backward, step; returns images seen."""
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
    """The notebook's test(): per-batch host copies and .item() calls, sklearn F1 at the end
    (with the accuracy divided by the true image count)."""
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], Any]) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    result = work()
    sync(device)
    return time.perf_counter() - start, result


def alternate(rounds: int, sides: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Run the sides in turn `rounds` times; the median of each side's figure. A side named
    `notebook...` runs with glibc's default allocator settings, as the notebook did; the others
    keep freed memory, as our training does (alexnet/allocator.py)."""
    figures: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, side in sides.items():
            keep_freed_memory(not name.startswith(("notebook", "default_allocator")))
            figures[name].append(side())
    keep_freed_memory(True)
    return {name: statistics.median(values) for name, values in figures.items()}


def training_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def model_pair(name: str, device: torch.device, settings: speed.SpeedSettings,
               ) -> tuple[tuple[nn.Module, torch.optim.Optimizer], ...]:
    """The same network twice, with SGD: as the notebook ran it, and with our speed settings."""
    torch.manual_seed(0)
    plain = build_model(name).to(device)
    fast = speed.prepare_model(build_model(name).to(device), settings, lambda m: None)
    return tuple((m, torch.optim.SGD(m.parameters(), lr=0.005)) for m in (plain, fast))


def bench_pipeline(split: Split, device: torch.device, settings: speed.SpeedSettings,
                   batches: int, rounds: int) -> dict[str, float]:
    """Images/s of the input pipelines alone, 227x227 output, batch 128."""
    cfg = training_config("batch_size=128", "augmentation=crop_flip_normalize")
    ours = build_batches(split, cfg, True, device, settings)
    theirs = notebook_loader(split, 128)

    def rate(loader: Iterable) -> Callable[[], float]:
        def run() -> float:
            def consume() -> int:
                seen = 0
                for i, (x, _) in enumerate(loader):
                    if i == batches:
                        break
                    x.to(device)
                    seen += len(x)
                return seen
            seconds, seen = timed(device, consume)
            return seen / seconds
        return run

    result = alternate(rounds, {"notebook": rate(theirs), "ours": rate(ours),
                                "default_allocator": rate(ours)})
    return {"pipeline_notebook_227_img_s": result["notebook"],
            "pipeline_ours_227_img_s": result["ours"],
            "pipeline_speedup_227": result["ours"] / result["notebook"],
            "pipeline_ours_227_default_allocator_img_s": result["default_allocator"],
            "pipeline_allocator_speedup_227": result["ours"] / result["default_allocator"]}


def bench_train_227(split: Split, device: torch.device, settings: speed.SpeedSettings,
                    batch_size: int, steps: int, rounds: int) -> dict[str, float]:
    """Training images/s of AlexNet at 227: notebook loop and pipeline vs ours."""
    cfg = training_config(f"batch_size={batch_size}", "augmentation=crop_flip_normalize")
    (plain, plain_opt), (fast, fast_opt) = model_pair("alexnet", device, settings)
    scaler = settings.grad_scaler(device)
    ours = build_batches(split, cfg, True, device, settings)
    theirs = notebook_loader(split, batch_size)

    def notebook_side() -> float:
        seconds, seen = timed(device, lambda: notebook_train(theirs, plain, plain_opt, device,
                                                             steps))
        return seen / seconds

    def our_side() -> float:
        def work() -> int:
            seen = 0
            fast.train()
            for i, (x, y) in enumerate(ours):
                if i == steps:
                    break
                train_step(fast, x, y, fast_opt, settings.autocast_dtype, scaler)
                seen += len(y)
            return seen
        seconds, seen = timed(device, work)
        return seen / seconds

    notebook_side(), our_side()  # warm-up: allocator, kernel choice, compilation
    result = alternate(rounds, {"notebook": notebook_side, "ours": our_side})
    return {f"train_notebook_227_b{batch_size}_img_s": result["notebook"],
            f"train_ours_227_b{batch_size}_img_s": result["ours"],
            f"train_speedup_227_b{batch_size}": result["ours"] / result["notebook"]}


def bench_epoch(data: Cifar100, device: torch.device, settings: speed.SpeedSettings,
                train_images: int, test_images: int, rounds: int) -> dict[str, float]:
    """One epoch (train + test) of the small config end to end, and its time outside the model."""
    small = ("model=alexnet_cifar", "batch_size=128", "augmentation=crop_flip_normalize")
    cfg, tv_cfg = training_config(*small), training_config(*small, "data.pipeline=torchvision")
    train, test = data.train.head(train_images), data.test.head(test_images)
    (plain, plain_opt), (fast, fast_opt) = model_pair("alexnet_cifar", device, settings)
    scaler = settings.grad_scaler(device)
    their_train = build_batches(train, tv_cfg, True, device, settings)
    their_test = build_batches(test, tv_cfg, False, device, settings)
    our_train = build_batches(train, cfg, True, device, settings)
    our_test = build_batches(test, cfg, False, device, settings)

    def notebook_epoch() -> float:
        return timed(device, lambda: (notebook_train(their_train, plain, plain_opt, device),
                                      notebook_test(their_test, plain, device)))[0]

    def our_epoch() -> float:
        return timed(device, lambda: (
            train_one_epoch(fast, our_train, fast_opt, device, False, settings.autocast_dtype,
                            scaler),
            evaluate(fast, our_test, NUM_CLASSES, device, False, settings.autocast_dtype)))[0]

    def input_only(train: Iterable, test: Iterable) -> Callable[[], float]:
        return lambda: timed(device, lambda: [x for batches in (train, test) for x, _ in batches])[0]

    sides = {"notebook": notebook_epoch, "ours": our_epoch,
             "notebook_input": input_only(their_train, their_test),
             "ours_input": input_only(our_train, our_test)}
    result = alternate(rounds, sides)
    return {"epoch_small_notebook_s": result["notebook"], "epoch_small_ours_s": result["ours"],
            "epoch_small_speedup": result["notebook"] / result["ours"],
            "epoch_small_train_images": train_images, "epoch_small_test_images": test_images,
            "epoch_small_notebook_input_share": result["notebook_input"] / result["notebook"],
            "epoch_small_ours_input_share": result["ours_input"] / result["ours"]}


def bench_sweep(data_root: Path, train_images: int, test_images: int,
                rounds: int) -> dict[str, float]:
    """Wall time of one six-run sweep (`alexnet_cifar`, SGD/Adam x batch 32/64/128, one epoch)
    through the real CLI, one run after another (Hydra's basic launcher, every core for each run)
    and with `hydra/launcher=parallel` (its default on a CPU: 2 at a time, cores / 2 threads each)."""
    sweep = ["-m", "optimizer=sgd,adam", "batch_size=32,64,128", "model=alexnet_cifar", "epochs=1",
             f"data.train_subset={train_images}", f"data.test_subset={test_images}",
             f"data.root={data_root.resolve()}", "data.download=false", "progress=false"]

    def side(*launcher: str) -> Callable[[], float]:
        def run() -> float:
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "alexnet.train", *sweep, *launcher,
                                f"hydra.sweep.dir={out}/sweep"], check=True, capture_output=True)
                return time.perf_counter() - start
        return run

    result = alternate(rounds, {"basic": side(), "parallel": side("hydra/launcher=parallel")})
    return {"sweep_basic_s": result["basic"], "sweep_parallel_s": result["parallel"],
            "sweep_parallel_speedup": result["basic"] / result["parallel"], "sweep_runs": 6,
            "sweep_train_images": train_images, "sweep_test_images": test_images}


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


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alexnet.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("data"),
                        help="folder holding cifar-100-python/ (here: ../shared/data)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="fewer steps: under 2 min on a CPU")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="run only these comparisons")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    settings = speed.resolve(training_config().speed, device)
    gpu = device.type == "cuda"
    rounds = 3 if args.quick else 5
    data = load_cifar100(args.data_root)
    name = torch.cuda.get_device_name(device) if gpu else cpu_name()
    figures: dict[str, Any] = {
        "device": f"{device} ({name})", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "settings": str(settings), "quick": args.quick,
    }
    print(f"device {figures['device']}  torch {torch.__version__}  threads {figures['threads']}")
    print(f"our speed settings: {settings}")

    if "pipeline" in args.sections:
        figures |= bench_pipeline(data.train, device, settings, 2 if args.quick else 6, rounds)
        print(f"input pipeline at 227x227, batch 128: notebook "
              f"{figures['pipeline_notebook_227_img_s']:.0f} img/s, ours "
              f"{figures['pipeline_ours_227_img_s']:.0f} img/s -> "
              f"{figures['pipeline_speedup_227']:.1f}x (ours with glibc's default allocator "
              f"settings: {figures['pipeline_ours_227_default_allocator_img_s']:.0f} img/s; "
              f"keeping freed memory is worth {figures['pipeline_allocator_speedup_227']:.2f}x)")

    steps = {32: 2, 128: 1} if args.quick and not gpu else {32: 50, 128: 20} if gpu \
        else {32: 4, 128: 2}
    for batch_size, count in steps.items() if "train" in args.sections else ():
        figures |= bench_train_227(data.train, device, settings, batch_size, count,
                                   2 if args.quick else 3)
        print(f"training AlexNet at 227x227, batch {batch_size}: notebook "
              f"{figures[f'train_notebook_227_b{batch_size}_img_s']:.1f} img/s, ours "
              f"{figures[f'train_ours_227_b{batch_size}_img_s']:.1f} img/s -> "
              f"{figures[f'train_speedup_227_b{batch_size}']:.2f}x")

    train_images, test_images = (1_000, 250) if args.quick else (10_000, 2_000)
    if gpu:
        train_images, test_images = 50_000, 10_000
    if "epoch" in args.sections:
        figures |= bench_epoch(data, device, settings, train_images, test_images,
                               1 if args.quick else 2)
        print(f"one epoch of alexnet_cifar ({train_images} train + {test_images} test images, "
              f"batch 128): notebook-style {figures['epoch_small_notebook_s']:.1f} s, ours "
              f"{figures['epoch_small_ours_s']:.1f} s -> {figures['epoch_small_speedup']:.2f}x; "
              f"input share of the epoch: notebook "
              f"{100 * figures['epoch_small_notebook_input_share']:.1f}%, ours "
              f"{100 * figures['epoch_small_ours_input_share']:.1f}%")

    if "sweep" in args.sections:
        sweep_images = (500, 200) if args.quick else (2_000, 500)
        figures |= bench_sweep(args.data_root, *sweep_images, 1 if args.quick else 2)
        print(f"a six-run sweep ({sweep_images[0]} train + {sweep_images[1]} test images, one "
              f"epoch each): one after another {figures['sweep_basic_s']:.1f} s, "
              f"hydra/launcher=parallel {figures['sweep_parallel_s']:.1f} s -> "
              f"{figures['sweep_parallel_speedup']:.2f}x")

    figures |= memory(device, len(data.train))
    print(f"memory: peak RSS {figures['peak_rss_mb']:.0f} MB"
          + (f", peak GPU {figures['peak_gpu_mb']:.0f} MB" if gpu else "")
          + f"; resident uint8 train set {figures['train_set_uint8_mb']:.0f} MB (a float32 "
          f"227x227 copy would be {figures['train_set_float32_227_gb']:.1f} GB)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
