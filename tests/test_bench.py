"""The benchmark runs end to end and reports every figure (speed itself is judged from its
output in benchmarks/RESULTS.md, never by a timed test)."""

import json
import subprocess
import sys

import pytest
import torch

from alexnet import speed


def quick_bench(root, tmp_path, *sections: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m alexnet.bench --quick` on the CPU for these sections: its output and figures."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "alexnet.bench", "--quick", "--data-root", str(root),
         "--device", "cpu", "--json", str(out), "--sections", *sections],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result, json.loads(out.read_text())


def test_quick_benchmark_reports_every_figure(cifar_root, tmp_path):
    result, figures = quick_bench(cifar_root, tmp_path, "pipeline", "train", "epoch")
    for key in ("pipeline_notebook_227_img_s", "pipeline_ours_227_img_s", "pipeline_speedup_227",
                "train_notebook_227_b32_img_s", "train_ours_227_b32_img_s",
                "train_speedup_227_b128", "epoch_small_notebook_s", "epoch_small_ours_s",
                "epoch_small_ours_input_share", "peak_rss_mb"):
        assert figures[key] > 0, key
    for key in ("pipeline_workers_227_img_s", "pipeline_speedup_vs_workers_227",
                "epoch_small_workers_s", "epoch_small_speedup_vs_workers"):
        assert figures[key] > 0, key
    assert isinstance(figures["train_ours_227_b32_one_time_s"], float)  # cold minus warm round
    if speed.supported(torch.bfloat16, torch.device("cpu")):  # this CPU has bf16: measured too
        assert figures["train_ours_bf16_227_b32_img_s"] > 0
    assert figures["torch"] and figures["threads"] >= 1 and figures["device"].startswith("cpu")
    assert "pipeline_speedup_227" in figures and "x" in result.stdout


def test_sweep_throughput_section_times_both_launchers(cifar_root, tmp_path):
    result, figures = quick_bench(cifar_root, tmp_path, "sweep")
    assert figures["sweep_basic_s"] > 0 and figures["sweep_parallel_s"] > 0
    assert figures["sweep_parallel_speedup"] == figures["sweep_basic_s"] / figures["sweep_parallel_s"]
    assert "hydra/launcher=parallel" in result.stdout


@pytest.mark.slow
def test_search_section_measures_both_ways_of_handing_out_trials(slower_cifar_root, tmp_path):
    _, figures = quick_bench(slower_cifar_root, tmp_path, "search")
    for side in ("batches", "streamed"):
        assert figures[f"search_{side}_s"] > 0 and 0 <= figures[f"search_{side}_idle"] < 1
        assert 4 <= figures[f"search_{side}_epochs"] <= 8  # 4 trials, 1 or 2 epochs each
