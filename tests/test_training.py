"""Real training through the config and the training loop on tiny generated data."""

import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from alexnet.run_record import RunRecord
from alexnet.train import fit
from conftest import REPO


def tiny_config(root, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[
            f"data.root={root}", "data.download=false", "model=alexnet_cifar",
            "progress=false", "device=cpu", *overrides])


def run(cfg, out_dir):
    record = RunRecord(out_dir, OmegaConf.to_container(cfg, resolve=True), [])
    final_acc = fit(cfg, record)
    return final_acc, record


def test_training_learns_a_learnable_task(learnable_cifar_root, tmp_path):
    cfg = tiny_config(learnable_cifar_root, "epochs=6", "batch_size=32", "optimizer=adam",
                      "optimizer.lr=0.001", "augmentation=none")
    final_acc, record = run(cfg, tmp_path)
    losses = [row["train_loss"] for row in record.epochs]
    assert losses[-1] < 0.7 * losses[0]
    assert final_acc > 0.5  # four classes: chance is 0.25
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_done"] == 6


def test_same_seed_repeats_exactly_on_cpu(cifar_root, tmp_path):
    cfg = tiny_config(cifar_root, "epochs=2", "batch_size=16", "augmentation=crop_flip")
    timing = {"train_time_s", "images_per_s", "epoch_time_s"}

    def metrics(out):
        _, record = run(cfg, out)
        return [{k: v for k, v in row.items() if k not in timing} for row in record.epochs]

    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")


def test_missing_data_fails_with_the_path(tmp_path):
    cfg = tiny_config(tmp_path / "nowhere")
    with pytest.raises(RuntimeError, match=r"nowhere/cifar-100-python lacks"):
        run(cfg, tmp_path / "out")
