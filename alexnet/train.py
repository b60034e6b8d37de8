"""Train AlexNet on CIFAR-100 once (`python -m alexnet.train`) or sweep (`... -m a=1,2 b=x,y`)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import hydra
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from alexnet import speed
from alexnet.allocator import keep_freed_memory
from alexnet.cifar import NUM_CLASSES, NUM_SUPERCLASSES, load_cifar100
from alexnet.config_checks import resolve_device, validate
from alexnet.engine import autocast, evaluate, train_one_epoch
from alexnet.metrics import superclass_confusion
from alexnet.models import build_model
from alexnet.pipelines import build_batches
from alexnet.run_record import CONFUSION_FILE, RunRecord

log = logging.getLogger(__name__)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


def fit(cfg: DictConfig, record: RunRecord) -> float:
    """Train for cfg.epochs, recording every epoch; return the final test accuracy."""
    device = resolve_device(cfg.device)
    record.set_device(describe(device))
    settings = speed.resolve(cfg.speed, device)
    if cfg.speed.keep_freed_memory:
        keep_freed_memory()
    torch.manual_seed(cfg.seed)
    data = load_cifar100(cfg.data.root, cfg.data.download, cfg.data.train_subset,
                         cfg.data.test_subset)
    log.info("CIFAR-100: %d train / %d test images on %s, %s pipeline, %s", len(data.train),
             len(data.test), describe(device), cfg.data.pipeline, settings)

    train_batches = build_batches(data.train, cfg, True, device, settings)
    test_batches = build_batches(data.test, cfg, False, device, settings)
    # Every key of the model config but these two is a constructor argument of the network.
    options = {k: v for k, v in cfg.model.items() if k not in ("name", "crop_resize")}
    model = build_model(cfg.model.name, **options).to(device)
    optimizer = hydra.utils.instantiate(cfg.optimizer, params=model.parameters(), _convert_="all")
    scaler = settings.grad_scaler(device)
    sample = next(iter(test_batches))

    def probe(candidate: torch.nn.Module) -> None:
        with autocast(sample[0], settings.autocast_dtype):
            candidate(sample[0]).float().logsumexp(1).mean().backward()

    model = speed.prepare_model(model, settings, probe)
    fine_to_coarse = data.fine_to_coarse()
    row: dict[str, float] = {}
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        train_stats = train_one_epoch(model, train_batches, optimizer, device, cfg.progress,
                                      settings.autocast_dtype, scaler)
        test_stats, confusion = evaluate(model, test_batches, NUM_CLASSES, device, cfg.progress,
                                         settings.autocast_dtype)
        row = {"epoch": epoch, **train_stats, **test_stats,
               "epoch_time_s": time.perf_counter() - start}
        record.add_epoch(row)
        record.save_table(CONFUSION_FILE, pd.DataFrame(
            superclass_confusion(confusion, fine_to_coarse, NUM_SUPERCLASSES).numpy(),
            index=data.superclasses, columns=data.superclasses))
        log.info("epoch %d/%d  train_loss %.4f  test_loss %.4f  acc %.4f  top5 %.4f  F1 %.4f  "
                 "%.0f img/s", epoch, cfg.epochs, row["train_loss"], row["test_loss"],
                 row["test_acc"], row["test_top5"], row["test_f1"], row["images_per_s"])
        if not math.isfinite(row["train_loss"]):
            log.error("training diverged (train loss %s) at epoch %d", row["train_loss"], epoch)
            record.finish("diverged")
            return row["test_acc"]
    record.finish("completed")
    return row["test_acc"]


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the final test accuracy so sweepers can optimize it."""
    hydra_cfg = HydraConfig.get()
    record = RunRecord(Path(hydra_cfg.runtime.output_dir),
                       OmegaConf.to_container(cfg, resolve=True),
                       list(hydra_cfg.overrides.task))
    try:
        validate(cfg)
        return fit(cfg, record)
    except KeyboardInterrupt as err:
        record.finish("interrupted", err)
        raise
    except Exception as err:
        record.finish("failed", err)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            raise
        # In a sweep one bad run must not stop the others: it is on record, move on.
        log.error("run failed, sweep goes on: %s: %s", type(err).__name__, err)
        return float("nan")


if __name__ == "__main__":
    main()
