"""Real training through the config and the training loop on tiny generated data."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from alexnet import speed
from alexnet.run.record import RunRecord
from helpers import fit, tiny_config


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


def test_auto_autocast_is_bf16_only_where_the_gpu_has_it_natively():
    assert speed.auto_autocast((7, 0)) == "fp16"  # V100: bf16 only emulated, slowly
    assert speed.auto_autocast((7, 5)) == "fp16"  # T4
    assert speed.auto_autocast((8, 0)) == "bf16"  # A100
    assert speed.auto_autocast((9, 0)) == "bf16"  # H100
    assert speed.auto_autocast(None) == "fp32"  # not CUDA


class Counting(torch.nn.Module):
    """Stands in for torch.compile's output (mode=reduce-overhead): the graphed callable."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module
        self.shapes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(x.shape[0])
        return self.module(x)


def test_cuda_graphs_take_full_batches_and_the_last_short_batch_runs_eagerly():
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    graphed = Counting(network)
    model = speed.FullBatchGraphs(graphed, network, batch_size=4)
    full, short = torch.randn(4, 3, 2, 2), torch.randn(3, 3, 2, 2)
    assert torch.equal(model(full), network(full)) and torch.equal(model(short), network(short))
    assert graphed.shapes == [4]  # only the full batch went to the graphs


def test_the_compile_probe_runs_a_full_batch_and_leaves_no_trace():
    sample = torch.randn(3, 3, 8, 8)  # a test split smaller than one batch
    assert speed.probe_batch(sample, 8).shape[0] == 8
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5),
                                  torch.nn.Linear(192, 5), torch.nn.BatchNorm1d(5))
    before = ({k: v.clone() for k, v in network.state_dict().items()}, torch.get_rng_state())
    shapes: list[int] = []

    def probe(candidate: torch.nn.Module) -> None:
        batch = speed.probe_batch(sample, 8)
        shapes.append(batch.shape[0])
        candidate(batch).logsumexp(1).mean().backward()

    settings = speed.SpeedSettings(channels_last=False, autocast_dtype=None, compile=False,
                                   compile_backend="eager", cuda_graphs=True)
    model = speed.prepare_model(network, settings, probe, batch_size=8)
    assert isinstance(model, speed.FullBatchGraphs) and shapes == [8]
    assert all(torch.equal(v, before[0][k]) for k, v in network.state_dict().items())
    assert torch.equal(torch.get_rng_state(), before[1])  # dropout's draws were put back
