"""Benchmark: the notebook's input pipeline and training loop, and a DataLoader with workers,
against ours.

    python -m alexnet.bench --data-root DIR [--quick] [--json PATH] [--sections ...]

Sides are warmed up, then alternated round by round (medians and ratios); one-time costs are
reported apart. Figures: pipeline and training images/s at 227x227 (batch 32, 128; bf16 where a
CPU has it); one small epoch end to end and its input share; K runs fused vs one after another vs
K packed processes."""

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
    bench_train_227,
    cpu_name,
    memory,
    training_config,
)
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
    steps = {32: 2, 128: 1} if args.quick and not gpu else {32: 50, 128: 20} if gpu else {32: 4, 128: 2}
    images = (50_000, 10_000) if gpu else (1_000, 250) if args.quick else (10_000, 2_000)
    sections = {  # each a comparison whose figures are printed as it ends
        "pipeline": lambda: bench_pipeline(data.train, device, settings, 2 if args.quick else 6, rounds),
        "train": lambda: {k: v for batch_size, count in steps.items() for k, v in bench_train_227(
            data.train, device, settings, batch_size, count, 2 if args.quick else 3).items()},
        "epoch": lambda: bench_epoch(data, device, settings, *images, 1 if args.quick else 2),
        "fused": lambda: bench_fused(data, device, settings,  # (a GPU step is short: more of them)
                                     1 if args.quick else 20 if gpu else 2,
                                     1 if args.quick else 2, runs=(1, 2, 4) if args.quick else (1, 2, 4, 8)),
    }
    for name in [s for s in SECTIONS if s in args.sections] + ["memory"]:
        print(f"{name}:", flush=True)
        found = memory(device, len(data.train)) if name == "memory" else sections[name]()
        for key, value in found.items():
            print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")
        figures |= found
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
