"""Devices: which a run may use, and a run resumed on another device than the one it was
checkpointed on (a SLURM requeue onto another node, a CPU run continued on a GPU): its data order
and augmentation go on exactly, the rest continues."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import struct
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from alexnet import speed
from alexnet.config_checks import ConfigError, resolve_device
from alexnet.data import tensor_pipeline
from alexnet.data.cifar import load_cifar100
from alexnet.engine import train_one_epoch
from alexnet.fit import build_training, load_data
from alexnet.fused import fuse
from alexnet.resume import checkpoint
from alexnet.resume.stop import Stop
from alexnet.run.record import RunRecord
from helpers import StopAtSafePoint, fit, metrics_without_timings, tiny_config, train

CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_mps_is_refused_before_anything_runs_saying_what_to_use(cifar_root, tmp_path):
    result = train("device=mps", "model=alexnet_cifar", "epochs=1", f"data.root={cifar_root}",
                   "data.download=false", "progress=false", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: device='mps' is not supported (MPS has no float64, which the loss and metric sums "
        "need, and is untested here): use device=cpu")
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize(("name", "message"), [
    ("mps:0", "device='mps:0' is not supported .*: use device=cpu"),
    ("meta", "device='meta' is not supported: use device=auto, cpu, cuda or cuda:N"),
    ("gpu", "device='gpu' is not a device: use auto, cpu, cuda or cuda:N"),
])
def test_devices_no_run_can_train_on_are_refused(name, message):
    with pytest.raises(ConfigError, match=message):
        resolve_device(name)


def small(root: Path, *overrides: str):
    """Two epochs of three steps: looks 2-4 are epoch 1's steps, 5 its end, 6-8 epoch 2's steps."""
    return tiny_config(root, "epochs=2", "batch_size=64", "data.train_subset=192",
                       "augmentation=crop_flip", *overrides)


def as_recorded(cfg) -> dict:
    """The config as a run records it (alexnet/train.py)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def new_record(cfg, run_dir: Path) -> RunRecord:
    return RunRecord(run_dir, as_recorded(cfg), [])


def stopped_at(cfg, run_dir: Path, at: int) -> dict:
    """The checkpoint a run of `cfg` leaves when stopped at look `at`, read back from its file."""
    with pytest.raises(Stop):
        fit(cfg, new_record(cfg, run_dir), StopAtSafePoint(at))
    return checkpoint.load_latest(run_dir)


def resumed(cfg, run_dir: Path, saved: dict) -> str:
    """The same run again, in a new record and new objects, as the rerun's new process builds."""
    previous = json.loads((run_dir / "results.json").read_text())
    record = RunRecord(run_dir, as_recorded(cfg), previous["overrides"], previous=previous)
    return fit(cfg, record, saved=saved)


def test_a_checkpoint_without_loss_scaling_resumes_where_training_is_fp16(learnable_cifar_root,
                                                                         tmp_path, caplog):
    """An fp32 or bf16 run saves a disabled grad scaler, {}; an fp16 resume (an A100 run requeued
    onto a V100) starts loss scaling afresh. The CPU stands in for the V100: a CPU grad scaler
    scales as a CUDA one does, and this CPU has no fp16 autocast for fit() to pick."""
    cfg = small(learnable_cifar_root)
    saved = stopped_at(cfg, tmp_path, 6)  # after epoch 2's first step
    assert saved["scaler"] == {} and saved["in_progress"]["images"] == 64
    built = build_training(cfg, load_data(cfg), CPU, speed.resolve(cfg.speed, CPU))  # anew
    state = dataclasses.replace(built.state, scaler=torch.amp.GradScaler("cpu", enabled=True))
    with caplog.at_level(logging.WARNING, logger="alexnet"):
        epochs, progress = checkpoint.restore(saved, state, CPU)
    assert "loss scaling starts afresh" in caplog.text
    assert len(epochs) == 1 and progress.images == 64
    (stats,) = train_one_epoch(fuse([state.model], []), [state.train_batches], [state.optimizer],
                               CPU, False, None, [state.scaler], resume=[progress])
    assert progress.images == 192 and math.isfinite(stats["train_loss"])  # the rest of epoch 2
    assert state.scaler.state_dict()["scale"] > 0


def test_a_gpu_checkpoint_of_before_resumes_on_the_cpu_finishing_its_pass_exactly(
        learnable_cifar_root, tmp_path, caplog):
    """A GPU run's checkpoint written before the input pipeline drew on the CPU holds CUDA
    generator states (16 bytes: seed and offset) for the pipeline and the GPU. Resumed on the
    CPU, the pass in progress finishes as saved (exactly), and the run goes on from there."""
    cfg = small(learnable_cifar_root)
    fit(cfg, new_record(cfg, tmp_path / "reference"))
    run_dir = tmp_path / "run"
    stopped_at(cfg, run_dir, 3)  # epoch 1, after its second step
    path = run_dir / checkpoint.CHECKPOINT_FILE
    payload = torch.load(path, weights_only=True)
    philox = torch.frombuffer(bytearray(struct.pack("<Qq", cfg.seed, 256)), dtype=torch.uint8)
    payload["train_batches"]["generator"] = philox  # as such a GPU run wrote them
    payload["rng"]["device"] = philox.clone()
    torch.save(payload, path)
    with caplog.at_level(logging.INFO, logger="alexnet"):
        assert resumed(cfg, run_dir, checkpoint.load_latest(run_dir)) == "completed"
    assert "not a CPU generator's (16 bytes" in caplog.text
    assert "taken on a GPU and resumes on the CPU" in caplog.text
    ours, reference = metrics_without_timings(run_dir), metrics_without_timings(tmp_path / "reference")
    pd.testing.assert_frame_equal(ours.iloc[:1], reference.iloc[:1])  # the saved pass: exact
    assert ours["train_loss"].iloc[1] != reference["train_loss"].iloc[1]  # then other draws


@needs_cuda
def test_the_tensor_pipeline_draws_the_same_on_a_gpu_as_on_the_cpu(cifar_root):
    split = load_cifar100(cifar_root).train
    aug = OmegaConf.create(dict(crop=True, flip=True, normalize=False, resize=36,
                                mean=[0.5] * 3, std=[0.25] * 3))

    def make(device):
        return tensor_pipeline.TensorBatches(split, aug, 32, 10, True, torch.device(device), seed=4)

    on_cpu, on_gpu = make("cpu"), make("cuda")
    for _ in range(2):
        for (x, y), (gx, gy) in zip(on_cpu, on_gpu, strict=True):
            assert torch.equal(y, gy.cpu())
            torch.testing.assert_close(x, gx.cpu(), rtol=0, atol=1e-5)  # other kernels, same crop
    batches, cpu_batches = iter(on_gpu), iter(on_cpu)
    next(batches), next(cpu_batches)
    state = on_gpu.state_dict()  # half-way through a pass on the GPU, resumed on the CPU
    cpu_state = on_cpu.state_dict()
    assert torch.equal(state["generator"], cpu_state["generator"])
    assert all(torch.equal(state["pass"][k], cpu_state["pass"][k]) for k in ("order", "top", "left",
                                                                              "flip"))
    again = make("cpu")
    again.load_state_dict(state)
    assert all(torch.equal(y, gy.cpu()) for (_, y), (_, gy) in zip(again, batches, strict=True))


@needs_cuda
def test_a_cpu_run_continues_on_a_gpu_in_fp16_and_a_gpu_run_on_the_cpu(learnable_cifar_root,
                                                                       tmp_path):
    """The real paths: CPU -> CUDA with fp16 loss scaling starting afresh, CUDA (bf16 or fp32,
    no scaler) -> CPU. The epochs trained before the move are kept as they were."""
    cfg = small(learnable_cifar_root, "device=cpu")
    fit(cfg, new_record(cfg, tmp_path / "reference"))
    reference = metrics_without_timings(tmp_path / "reference")
    run_dir = tmp_path / "cpu-then-gpu"
    stopped_at(cfg, run_dir, 6)
    gpu = small(learnable_cifar_root, "device=cuda", "speed.autocast=fp16")
    assert resumed(gpu, run_dir, checkpoint.load_latest(run_dir)) == "completed"
    moved = metrics_without_timings(run_dir)
    pd.testing.assert_frame_equal(moved.iloc[:1], reference.iloc[:1])
    assert moved["train_loss"].map(math.isfinite).all() and len(moved) == 2

    run_dir = tmp_path / "gpu-then-cpu"
    stopped_at(small(learnable_cifar_root, "device=cuda", "speed.autocast=bf16"), run_dir, 3)
    assert resumed(cfg, run_dir, checkpoint.load_latest(run_dir)) == "completed"
    assert len(metrics_without_timings(run_dir)) == 2
