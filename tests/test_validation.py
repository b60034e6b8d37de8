"""The validation split (data.val_split): held out of the training images, stratified, fixed by
its own seed, and scored every epoch beside the test set."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from alexnet.config_checks import ConfigError, validate
from alexnet.data.cifar import DataError, Split, hold_out
from alexnet.run.record import RunRecord
from helpers import fit, tiny_config


def split_of(labels: list[int]) -> Split:
    """Images numbered by their first pixel (up to 256), so a split's members can be told apart."""
    n = len(labels)
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 32, 32).contiguous()
    return Split(images, torch.tensor(labels), torch.tensor(labels) // 5)


def ids(split: Split) -> list[int]:
    return split.images[:, 0, 0, 0].tolist()


def test_the_held_out_images_are_disjoint_from_training_stratified_and_fixed_by_their_seed():
    labels = [0] * 100 + [1] * 60 + [2] * 30 + [3] * 10  # 200 images, uneven classes
    data = split_of(labels)
    train, val = hold_out(data, 50, seed=0)
    assert len(val) == 50 and len(train) == 150
    assert set(ids(train)).isdisjoint(ids(val)) and set(ids(train)) | set(ids(val)) == set(range(200))
    shares = torch.bincount(val.labels).tolist()  # a quarter of each: 25, 15, 7.5, 2.5
    assert shares[:2] == [25, 15] and shares[2] in (7, 8) and shares[2] + shares[3] == 10
    assert ids(hold_out(data, 50, seed=0)[1]) == ids(val)  # the same seed, the same images
    assert ids(hold_out(data, 50, seed=1)[1]) != ids(val)
    assert ids(val) == sorted(ids(val)) and ids(train) == sorted(ids(train))  # the files' order
    with pytest.raises(ValueError, match="data.val_split=200 must be at least 1 and fewer than"):
        hold_out(data, 200, seed=0)


@pytest.mark.parametrize(("labels", "count", "message"), [
    ([0] * 10 + [1] + [2] * 10, 6, "class 1 has a single image among the 21 training images"),
    ([0] * 10 + [1] * 10 + [2] * 10, 2, "data.val_split=2 is fewer than the 3 classes .* "
                                        "e.g. data.val_split=3"),
    ([0] * 10 + [1] * 10 + [2] * 10, 28, "leaves 2 training images, fewer than their 3 classes"),
])
def test_images_that_cannot_be_stratified_are_refused_saying_what_to_change(labels, count, message):
    with pytest.raises(DataError, match=message):
        hold_out(split_of(labels), count, seed=0)


def test_a_run_with_a_validation_split_scores_it_every_epoch(learnable_cifar_root, tmp_path):
    cfg = tiny_config(learnable_cifar_root, "epochs=2", "batch_size=32", "data.val_split=100",
                      "early_stop.monitor=val_acc", "early_stop.patience=5")
    validate(cfg)
    record = RunRecord(tmp_path, OmegaConf.to_container(cfg, resolve=True), [])
    assert fit(cfg, record) == "completed"
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert {"val_loss", "val_acc", "val_top5", "val_f1", "test_acc"} <= set(metrics.columns)
    assert metrics["val_acc"].between(0, 1).all() and len(metrics) == 2
    best = record.summary["best"]  # chosen on the validation split, not on the test set
    assert best["val_acc"] == metrics["val_acc"].max()


@pytest.mark.parametrize(("overrides", "message"), [
    (["early_stop.monitor=val_acc"], "needs a validation split: add data.val_split=N"),
    (["data.train_subset=100", "data.val_split=100"], "holds out all of the 100 training images"),
    (["data.val_split=60000"], "holds out all of the 50000 training images"),
    (["data.val_split=50"], "data.val_split=50 is fewer than the 100 classes"),
    (["scheduler=step", "scheduler.every_epochs=0"], "scheduler.every_epochs=0 is not allowed"),
    (["scheduler=onecycle", "scheduler.warmup_fraction=1.5"], "must be in \\[0.0, 1.0\\]"),
])
def test_validation_settings_that_cannot_work_are_refused(cifar_root, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(tiny_config(cifar_root, *overrides))
