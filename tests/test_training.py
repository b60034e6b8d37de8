"""Real training through the config and the training loop on tiny generated data."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from alexnet import speed
from alexnet.results.record import RunRecord
from alexnet.train import fit
from conftest import REPO


def tiny_config(root, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[
            f"data.root={root}", "data.download=false", "model=alexnet_cifar",
            "progress=false", "device=cpu", *overrides])


def run(cfg, out_dir):
    record = RunRecord(out_dir, OmegaConf.to_container(cfg, resolve=True), [])
    fit(cfg, record)
    return record.summary["final"]["test_acc"], record


@pytest.mark.parametrize("pipeline", ["tensor", "torchvision"])
def test_training_learns_a_learnable_task(learnable_cifar_root, tmp_path, pipeline):
    cfg = tiny_config(learnable_cifar_root, "epochs=6", "batch_size=32", "optimizer=adam",
                      "optimizer.lr=0.001", "augmentation=crop_flip", f"data.pipeline={pipeline}")
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


def test_a_compiler_that_fails_falls_back_to_eager_with_one_warning(cifar_root, tmp_path, caplog):
    cfg = tiny_config(cifar_root, "epochs=1", "batch_size=16", "speed.compile=true",
                      "speed.compile_backend=no_such_backend")
    final_acc, record = run(cfg, tmp_path)
    warnings = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(warnings) == 1 and "no_such_backend" in warnings[0].getMessage()
    assert record.summary["status"] == "completed" and 0.0 <= final_acc <= 1.0


def test_autocast_the_cpu_cannot_do_falls_back_to_fp32_with_one_warning(caplog):
    cfg = tiny_config("unused", "speed.autocast=fp16")
    fp16_cpu = bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    settings = speed.resolve(cfg.speed, torch.device("cpu"))
    warnings = [r for r in caplog.records if "speed.autocast=fp16 is not supported" in r.message]
    if fp16_cpu:  # a CPU with fp16 instructions honours the request
        assert settings.autocast_dtype == torch.float16 and not warnings
    else:
        assert settings.autocast_dtype is None and len(warnings) == 1


def test_auto_speed_settings_on_cpu_are_fp32_eager_channels_last():
    settings = speed.resolve(tiny_config("unused").speed, torch.device("cpu"))
    assert settings == speed.SpeedSettings(channels_last=True, autocast_dtype=None,
                                           compile=False, compile_backend="inductor",
                                           cuda_graphs=False, keep_freed_memory=True)


def test_cuda_graphs_asked_for_on_a_cpu_fall_back_with_one_warning(caplog):
    settings = speed.resolve(tiny_config("unused", "speed.cuda_graphs=true").speed,
                             torch.device("cpu"))
    warnings = [r for r in caplog.records if "speed.cuda_graphs=true needs a CUDA device" in r.message]
    assert not settings.cuda_graphs and len(warnings) == 1
