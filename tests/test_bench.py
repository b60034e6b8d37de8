"""The benchmark's comparisons on tiny sizes, in process, and its command line: every figure it
reports is the one its sides measured (speed itself is judged from its output in
benchmarks/RESULTS.md, never by a timed test)."""

import json
import math
import subprocess
import sys

import pytest
import torch

from alexnet import speed
from alexnet.bench.sections import alternate, bench_epoch, bench_pipeline, bench_train_227, training_config
from alexnet.data.cifar import load_cifar100

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def settings():
    return speed.resolve(training_config().speed, CPU)


def test_sides_alternate_after_a_warm_up_and_the_median_and_cold_figures_are_kept_apart():
    calls = []

    def side(name, figures):
        def run():
            calls.append(name)
            return figures.pop(0)
        return run

    result = alternate(3, {"a": side("a", [9.0, 1.0, 5.0, 3.0]), "b": side("b", [7.0, 2.0, 4.0, 6.0])})
    assert calls == ["a", "b"] * 4  # warm-up round, then three alternated rounds
    assert result.first == {"a": 9.0, "b": 7.0} and result.median == {"a": 3.0, "b": 4.0}


def test_the_pipeline_comparison_reports_its_sides_and_their_ratios(cifar_root, settings):
    figures = bench_pipeline(load_cifar100(cifar_root).train, CPU, settings, batches=1, rounds=1)
    ours, notebook = figures["pipeline_ours_227_img_s"], figures["pipeline_notebook_227_img_s"]
    assert ours > 0 and notebook > 0
    assert math.isclose(figures["pipeline_speedup_227"], ours / notebook)
    assert math.isclose(figures["pipeline_speedup_vs_workers_227"],
                        ours / figures["pipeline_workers_227_img_s"])
    assert math.isclose(figures["pipeline_allocator_speedup_227"],
                        ours / figures["pipeline_ours_227_default_allocator_img_s"])


def test_the_training_comparison_reports_speed_ratio_and_one_time_cost(cifar_root, settings):
    figures = bench_train_227(load_cifar100(cifar_root).train, CPU, settings, batch_size=4,
                              steps=1, rounds=1)
    ours, notebook = figures["train_ours_227_b4_img_s"], figures["train_notebook_227_b4_img_s"]
    assert ours > 0 and notebook > 0
    assert math.isclose(figures["train_speedup_227_b4"], ours / notebook)
    assert isinstance(figures["train_ours_227_b4_one_time_s"], float)  # cold minus warm round
    if speed.supported(torch.bfloat16, CPU):  # this CPU has bf16: measured too
        assert math.isclose(figures["train_bf16_speedup_227_b4"],
                            figures["train_ours_bf16_227_b4_img_s"] / ours)


def test_the_epoch_comparison_reports_times_and_the_inputs_share(cifar_root, settings):
    figures = bench_epoch(load_cifar100(cifar_root), CPU, settings, train_images=48,
                          test_images=24, rounds=1)
    assert math.isclose(figures["epoch_small_speedup"],
                        figures["epoch_small_notebook_s"] / figures["epoch_small_ours_s"])
    assert math.isclose(figures["epoch_small_speedup_vs_workers"],
                        figures["epoch_small_workers_s"] / figures["epoch_small_ours_s"])
    for side in ("notebook", "ours"):
        assert 0 < figures[f"epoch_small_{side}_input_share"] < 1.5  # (timed apart: noisy)
    assert (figures["epoch_small_train_images"], figures["epoch_small_test_images"]) == (48, 24)


def quick_bench(root, tmp_path, section: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m alexnet.bench --quick` on the CPU for one section: its output and figures."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "alexnet.bench", "--quick", "--data-root", str(root), "--device",
         "cpu", "--json", str(out), "--sections", section],
        capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr
    return result, json.loads(out.read_text())


def test_the_command_prints_and_writes_the_same_figures(cifar_root, tmp_path):
    result, figures = quick_bench(cifar_root, tmp_path, "pipeline")
    assert figures["device"].startswith("cpu") and figures["torch"] == torch.__version__
    assert figures["peak_rss_mb"] > 0 and "train_notebook_227_b32_img_s" not in figures
    assert f"  pipeline_ours_227_img_s: {figures['pipeline_ours_227_img_s']:.4g}\n" in result.stdout
    assert f"  pipeline_speedup_227: {figures['pipeline_speedup_227']:.4g}\n" in result.stdout


@pytest.mark.slow
def test_the_fused_section_compares_fused_with_one_after_another_and_packed(cifar_root, tmp_path):
    _, figures = quick_bench(cifar_root, tmp_path, "fused")
    for network in ("alexnet_cifar", "alexnet"):
        for k in (1, 2, 4):
            sides = {side: figures[f"fused_{network}_k{k}_{side}_img_s"]
                     for side in ("fused", "sequential", "packed")}
            assert all(value > 0 for value in sides.values()), sides
            assert math.isclose(figures[f"fused_{network}_k{k}_vs_sequential"],
                                sides["fused"] / sides["sequential"])
