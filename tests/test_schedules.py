"""Learning-rate schedules: their shapes, and torch stepping them once per optimizer step."""

from __future__ import annotations

import pytest
import torch

from alexnet.schedules import Cosine, OneCycle, Schedule, Step, build_scheduler


def test_each_schedule_has_its_shape():
    epochs = 10
    cosine = Cosine(warmup_epochs=1, warmup_start=0.1, min_factor=0.0)
    assert [cosine.factor(e, epochs) for e in (0, 0.5, 1)] == [0.1, 0.55, 1.0]  # linear warm-up
    after = [cosine.factor(e, epochs) for e in (1, 3, 5.5, 8, 10)]
    assert after == sorted(after, reverse=True) and after[2] == pytest.approx(0.5)
    assert cosine.factor(10, epochs) == pytest.approx(0.0)
    one_cycle = OneCycle()  # the peak after 30 % of the epochs, from 1/25 of it
    assert one_cycle.factor(0, epochs) == pytest.approx(0.04)
    assert one_cycle.factor(3, epochs) == pytest.approx(1.0)
    assert one_cycle.factor(10, epochs) == pytest.approx(1e-4)
    step = Step(every_epochs=2, gamma=0.5)
    assert [step.factor(e, epochs) for e in (0, 1.9, 2, 4.5)] == [1.0, 1.0, 0.5, 0.25]
    assert Schedule().factor(7, epochs) == 1.0


def test_the_scheduler_steps_with_every_optimizer_step_from_the_first():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.2)
    scheduler = build_scheduler(Step(warmup_epochs=0.5, warmup_start=0.5, every_epochs=1,
                                     gamma=0.5), optimizer, steps_per_epoch=4, epochs=3)
    seen = []  # the lr each optimizer step uses
    for _ in range(8):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.1, 0.15] + [0.2] * 4 + [0.1] * 2)  # warm-up, then steps


def test_tables_name_the_schedule_so_runs_with_and_without_one_stay_apart():
    from alexnet.results.collect import flatten

    plain = flatten({"scheduler": {}, "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1}})
    cosine = flatten({"scheduler": {"_target_": "alexnet.schedules.Cosine", "warmup_epochs": 1},
                      "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1}})
    assert plain == {"scheduler": "none", "optimizer": "sgd", "optimizer.lr": 0.1}
    assert cosine["scheduler"] == "cosine" and cosine["scheduler.warmup_epochs"] == 1


def lr_per_step(make_scheduler, steps: int, lr: float) -> list[float]:
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=lr)
    scheduler = make_scheduler(optimizer)
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


@pytest.mark.parametrize(("ours", "theirs"), [
    (lambda opt: build_scheduler(Schedule(warmup_epochs=1, warmup_start=0.1), opt, 7, 6),
     lambda opt: torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=7)),
    (lambda opt: build_scheduler(Cosine(warmup_epochs=0, min_factor=0.1), opt, 7, 6),
     lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=42, eta_min=0.02)),
    (lambda opt: build_scheduler(Step(every_epochs=1, gamma=0.7), opt, 7, 6),
     lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.7)),
], ids=["warm-up/LinearLR", "cosine/CosineAnnealingLR", "step/StepLR"])
def test_torchs_schedulers_trace_our_curves_but_not_our_factors(ours, theirs):
    """Why the factors are ours: torch's nearest schedulers draw the same curves (a check of ours
    against an independent implementation), but step their lr recursively, so some steps differ
    in the last bits, and a run's results with them would not be the same."""
    mine, torchs = lr_per_step(ours, 42, 0.2), lr_per_step(theirs, 42, 0.2)
    assert mine == pytest.approx(torchs, rel=1e-12, abs=0)
    assert mine != torchs
