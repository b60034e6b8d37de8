"""Fused sweeps (hydra/launcher=fused): runs of one shape trained as one network give each run
the metrics it gets alone; a run whose loss becomes NaN is masked out of its group; kill -9 of a
group's process then the same command resumes every run of it.

The tolerance: on the CPU a fused run's convolutions are its own (on its slice of the fused
weights) and its linear layers one batched matmul, which on this machine gives exactly the alone
run's metrics. Another CPU's matmul may sum in another order, as one run alone differs between 1
and 2 threads (up to 1e-5 relative on this data, measured): 1e-4 relative allows that, and any
real difference (a shared mask, a mixed-up weight) shows as a percent or more."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pandas as pd
import torch
from omegaconf import OmegaConf

from alexnet.fit import Member, fit
from alexnet.launch.fused import group_key
from alexnet.launch.placement import Placement
from alexnet.resume.stop import GracefulStop
from alexnet.run.record import RunRecord
from helpers import records, start, tiny_config, train, wait_for_epochs

SCORES = ["train_loss", "test_loss", "test_acc", "test_top5", "test_f1"]
TOLERANCE = 1e-4
# Four runs that differ in seed, learning rate, optimizer and its settings, augmentation,
# normalization, dropout, the ReLU on the logits and label smoothing.
VARIANTS = [("seed=0", "optimizer.lr=0.01"),
            ("seed=1", "optimizer.lr=0.05", "optimizer.momentum=0.9", "optimizer.nesterov=true"),
            ("seed=2", "optimizer=adam", "optimizer.lr=0.001", "augmentation.flip=false"),
            ("seed=3", "augmentation.normalize=false", "model.dropout=0.2",
             "model.logit_relu=true", "loss.label_smoothing=0.1", "optimizer.weight_decay=0.01")]


def members(root: Path, out: Path, variants: list[tuple[str, ...]]) -> list[Member]:
    found = []
    for index, overrides in enumerate(variants):
        cfg = tiny_config(root, "epochs=2", *overrides)
        found.append(Member(cfg, RunRecord(out / str(index),
                                           OmegaConf.to_container(cfg, resolve=True),
                                           list(overrides))))
    return found


def metrics(member: Member) -> pd.DataFrame:
    return pd.DataFrame(member.record.epochs)[["epoch", *SCORES]]


def assert_close(ours: pd.DataFrame, alone: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(ours, alone, check_exact=False, rtol=TOLERANCE, atol=0)


def test_a_fused_group_gives_each_run_the_metrics_it_gets_alone(cifar_root, tmp_path):
    torch.set_num_threads(1)
    alone = members(cifar_root, tmp_path / "alone", VARIANTS)
    for member in alone:
        fit([member], GracefulStop(), Placement("cpu", 1))
    group = members(cifar_root, tmp_path / "fused", VARIANTS)
    assert len({group_key(OmegaConf.create({**OmegaConf.to_container(m.cfg), "hydra": {}}))
                for m in group}) == 1  # (they are one group for the launcher)
    fit(group, GracefulStop(), Placement("cpu", 1))
    for ours, theirs in zip(group, alone, strict=True):
        assert ours.status == theirs.status == "completed"
        assert_close(metrics(ours), metrics(theirs))
        saved = torch.load(ours.record.run_dir / "model.pt", weights_only=True)
        expected = torch.load(theirs.record.run_dir / "model.pt", weights_only=True)
        assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in expected.items()}
        size = (theirs.record.run_dir / "model.pt").stat().st_size  # (its weights, not the group's)
        assert (ours.record.run_dir / "model.pt").stat().st_size < 1.01 * size
        for name, weight in saved.items():
            torch.testing.assert_close(weight, expected[name], rtol=TOLERANCE, atol=1e-6)


def test_a_run_that_diverges_or_fails_leaves_its_siblings_training_as_alone(cifar_root, tmp_path):
    """One run's loss becomes NaN (masked out after its epoch), another's optimizer cannot be made
    (torch refuses Nesterov without momentum): each ends alone, as it would without its group."""
    torch.set_num_threads(1)
    sane = VARIANTS[:2]
    alone = members(cifar_root, tmp_path / "alone", sane)
    for member in alone:
        fit([member], GracefulStop(), Placement("cpu", 1))
    group = members(cifar_root, tmp_path / "fused", [*sane, ("seed=5", "optimizer.lr=1e30"),
                                                       ("seed=6", "optimizer.nesterov=true")])
    fit(group, GracefulStop(), Placement("cpu", 1))
    *siblings, diverged, failed = group
    assert diverged.status == "diverged" and len(diverged.record.epochs) == 1
    assert failed.status == "failed" and "Nesterov" in failed.record.summary["error"]["message"]
    for ours, theirs in zip(siblings, alone, strict=True):
        assert ours.status == "completed"
        assert_close(metrics(ours), metrics(theirs))
    pair = members(cifar_root, tmp_path / "pair", [sane[0], ("seed=6", "optimizer.nesterov=true")])
    fit(pair, GracefulStop(), Placement("cpu", 1))  # (one left: it trains alone, its own dropout draws)
    assert pair[1].status == "failed" and pair[0].status == "completed"
    assert_close(metrics(pair[0]), metrics(alone[0]))


def test_kill_9_of_a_fused_group_then_the_same_command_resumes_every_run(slower_cifar_root,
                                                                        tmp_path):
    """The group's process killed mid-epoch: every run of it is on record as interrupted, the
    command says how to resume, and that command gives each run the uninterrupted group's metrics."""
    def sweep(out: Path) -> list[str]:
        return ["-m", "hydra/launcher=fused", "seed=0,1", "epochs=2", "batch_size=16",
                "model=alexnet_cifar", "data.train_subset=128", "torch_threads=1",
                f"data.root={slower_cifar_root}", "data.download=false", "progress=false",
                f"hydra.sweep.dir={out}"]

    reference = tmp_path / "reference"
    assert train(*sweep(reference), cwd=tmp_path).returncode == 0
    out = tmp_path / "killed"
    process = start(*sweep(out), cwd=tmp_path)
    wait_for_epochs(out / "1" / "metrics.csv", 1, process)
    time.sleep(0.3)  # (into the next epoch)
    os.kill(records(out)["0"]["pid"], signal.SIGKILL)  # the group's one process
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 1, output
    assert "2 run(s) did not finish (interrupted)" in output and "Resume it with:" in output
    assert {r["status"] for r in records(out).values()} == {"interrupted"}
    again = train(*sweep(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    for name in ("0", "1"):
        ours = pd.read_csv(out / name / "metrics.csv")[["epoch", *SCORES]]
        assert_close(ours, pd.read_csv(reference / name / "metrics.csv")[["epoch", *SCORES]])
        assert records(out)[name]["attempts"][-1]["resumed_from_epoch"] >= 1


def test_each_run_of_a_group_scales_its_loss_with_its_own_scaler():
    """fp16 loss scaling: a run whose gradients overflow halves its own scale and skips its own step;
    its sibling's scale and weights go on as if alone."""
    from alexnet.engine import train_step
    from alexnet.fused import fuse
    from alexnet.models import from_config

    config = OmegaConf.to_container(tiny_config(Path("."), "model.dropout=0").model, resolve=True)
    networks = [from_config(config) for _ in range(3)]  # the third: the first's twin, trained alone
    networks[2].load_state_dict(networks[0].state_dict())
    overflowing = {name: t.clone() for name, t in networks[1].state_dict().items()}
    optimizers = [torch.optim.SGD(n.parameters(), lr=0.01) for n in networks]
    scalers = [torch.amp.GradScaler("cpu", init_scale=2.0**16) for _ in networks]
    model = fuse(networks[:2], [torch.Generator().manual_seed(k) for k in range(2)])
    inputs = [torch.randn(4, 3, 32, 32), torch.full((4, 3, 32, 32), float("inf"))]
    targets = [torch.zeros(4, dtype=torch.long)] * 2
    for _ in range(3):
        train_step(model, inputs, targets, optimizers[:2], None, scalers[:2])
        train_step(fuse(networks[2:], []), inputs[:1], targets[:1], optimizers[2:], None, scalers[2:])
    assert scalers[0].get_scale() == 2.0**16 and scalers[1].get_scale() == 2.0**13
    twin = networks[2].state_dict()
    for name, tensor in networks[0].state_dict().items():
        torch.testing.assert_close(tensor, twin[name], rtol=TOLERANCE, atol=1e-6)
    for name, tensor in networks[1].state_dict().items():  # (every step of it skipped: weights as they were)
        assert torch.equal(tensor, overflowing[name]) or "running" in name or "num_batches" in name, name
