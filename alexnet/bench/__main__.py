"""Benchmark: the notebook's input pipeline and training loop, and a DataLoader with workers,
against ours.

    python -m alexnet.bench --data-root DIR [--quick] [--json PATH] [--sections ...]

Sides are warmed up, then alternated round by round (medians and ratios); one-time costs are
reported apart. Figures: pipeline and training images/s at 227x227 (batch 32, 128; bf16 where a
CPU has it); one small epoch end to end and its input share; a sweep run one vs two at a time; an
Optuna search in batches vs a trial per free slot; K runs fused vs sequential vs packed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from alexnet import speed
from alexnet.bench.sections import (
    SECTIONS,
    bench_epoch,
    bench_fused,
    bench_pipeline,
    bench_search,
    bench_sweep,
    bench_train_227,
    memory,
    training_config,
)
from alexnet.bench.timing import cpu_name
from alexnet.config_checks import resolve_device
from alexnet.data.cifar import load_cifar100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alexnet.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("data"),
                        help="a folder holding cifar-100-python/")
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
              f"{figures['pipeline_speedup_227']:.1f}x; a DataLoader with workers "
              f"{figures['pipeline_workers_227_img_s']:.0f} img/s -> ours "
              f"{figures['pipeline_speedup_vs_workers_227']:.1f}x (ours with glibc's default allocator "
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
              f"{figures[f'train_speedup_227_b{batch_size}']:.2f}x; our one-time cost "
              f"{figures[f'train_ours_227_b{batch_size}_one_time_s']:.2f} s"
              + (f"; ours under bf16 autocast {figures[f'train_ours_bf16_227_b{batch_size}_img_s']:.1f}"
                 f" img/s -> {figures[f'train_bf16_speedup_227_b{batch_size}']:.2f}x"
                 if f"train_ours_bf16_227_b{batch_size}_img_s" in figures else ""))

    train_images, test_images = (1_000, 250) if args.quick else (10_000, 2_000)
    if gpu:
        train_images, test_images = 50_000, 10_000
    if "epoch" in args.sections:
        figures |= bench_epoch(data, device, settings, train_images, test_images,
                               1 if args.quick else 2)
        print(f"one epoch of alexnet_cifar ({train_images} train + {test_images} test images, "
              f"batch 128): notebook-style {figures['epoch_small_notebook_s']:.1f} s, ours "
              f"{figures['epoch_small_ours_s']:.1f} s -> {figures['epoch_small_speedup']:.2f}x; "
              f"our loop with a DataLoader with workers {figures['epoch_small_workers_s']:.1f} s -> "
              f"ours {figures['epoch_small_speedup_vs_workers']:.2f}x; "
              f"input share of the epoch: notebook "
              f"{100 * figures['epoch_small_notebook_input_share']:.1f}%, ours "
              f"{100 * figures['epoch_small_ours_input_share']:.1f}%"
              + (f"; ours under bf16 autocast {figures['epoch_small_ours_bf16_s']:.1f} s -> "
                 f"{figures['epoch_small_bf16_speedup']:.2f}x" if "epoch_small_ours_bf16_s"
                 in figures else ""))

    if "sweep" in args.sections:
        sweep_images = (500, 200) if args.quick else (2_000, 500)
        figures |= bench_sweep(args.data_root, *sweep_images, 1 if args.quick else 2)
        print(f"a six-run sweep ({sweep_images[0]} train + {sweep_images[1]} test images, one "
              f"epoch each): one after another {figures['sweep_basic_s']:.1f} s, "
              f"hydra/launcher=parallel {figures['sweep_parallel_s']:.1f} s -> "
              f"{figures['sweep_parallel_speedup']:.2f}x")

    if "search" in args.sections:
        # (at least 1,000 images: fewer and the stratified hold-out is refused)
        figures |= (bench_search(args.data_root, 1, trials=4, epochs=2, train_images=1000)
                    if args.quick else bench_search(args.data_root, 2))
        print(f"a search of {figures['search_trials']} trials, 2 at a time, ASHA pruning: in batches "
              f"(hydra/launcher=joblib) "
              f"{figures['search_batches_s']:.1f} s, slots idle "
              f"{100 * figures['search_batches_idle']:.0f}%; a trial per free slot "
              f"(hydra/launcher=parallel) {figures['search_streamed_s']:.1f} s, slots idle "
              f"{100 * figures['search_streamed_idle']:.0f}%")

    if "fused" in args.sections:
        print("K runs trained fused, one after another, and as K packed processes:")
        figures |= bench_fused(data, device, settings, 1 if args.quick else 2,
                               1 if args.quick else 2,
                               runs=(1, 2, 4) if args.quick else (1, 2, 4, 8))

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
