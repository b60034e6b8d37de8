"""What the network learned: its first layer's filters and the test images its last evaluation got
most confidently wrong, drawn when a run finishes, redrawn from a run dir by `python -m
alexnet.show_run`, and the best run's put beside a sweep's table."""

import json
import logging
import shutil

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from alexnet import scores, speed
from alexnet.data.cifar import load_cifar100
from alexnet.data.pipelines import build_batches
from alexnet.engine import evaluate
from alexnet.fused import fuse
from alexnet.metrics import Predictions
from alexnet.models import AlexNet, from_config
from alexnet.results.learned import (
    TILE_PIXELS,
    draw_filters,
    filter_tiles,
    first_conv_weight,
    grid_columns,
    save_learned,
)
from alexnet.results.report import aggregate
from alexnet.resume import checkpoint
from alexnet.show_run import main as show_run
from cifar_files import CLASSES
from helpers import run_cli, tiny_config, train

CPU = torch.device("cpu")
PICTURES = ("filters.png", "mistakes.png")


@pytest.fixture(scope="module")
def sweep(cifar_root, tmp_path_factory):
    """Two real runs through the CLI (one epoch each, two learning rates); the multirun callback
    aggregates them."""
    out = tmp_path_factory.mktemp("learned") / "sweep"
    result = train("-m", "optimizer.lr=0.001,0.1", "model=alexnet_cifar", "epochs=1", "batch_size=16",
                   f"data.root={cifar_root}", "data.download=false", "progress=false", "device=cpu",
                   f"hydra.sweep.dir={out}", cwd=out.parent)
    assert result.returncode == 0, result.stderr
    return out


def saved_network(run_dir):
    """The run's network rebuilt from its recorded config, with the weights of its model.pt."""
    config = json.loads((run_dir / "results.json").read_text())["config"]
    network = from_config(config["model"])
    network.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    return network.eval(), OmegaConf.create(config)


def test_evaluate_keeps_each_images_prediction_and_confidence(cifar_root):
    cfg = tiny_config(cifar_root, "batch_size=16")  # 24 test images: batches of 16 and 8
    test = load_cifar100(cifar_root, test_subset=None).test
    settings = speed.resolve(cfg.speed, CPU)
    batches = build_batches(test, cfg, False, CPU, settings)
    torch.manual_seed(0)
    network = from_config(cfg.model).eval()
    predictions = Predictions()
    ((scores_kept, confusion),) = evaluate(fuse([network], []), [batches], 100, CPU, False,
                                           predictions=[predictions])
    evaluate(fuse([network], []), [batches], 100, CPU, False,
             predictions=[predictions])  # replaced, not appended
    with torch.no_grad():
        logits = torch.cat([network(x) for x, _ in batches])
    assert torch.equal(predictions.predicted, logits.argmax(1))
    torch.testing.assert_close(predictions.confidence, logits.softmax(1).amax(1))
    ((plain, plain_confusion),) = evaluate(fuse([network], []), [batches], 100, CPU, False)
    assert scores_kept == plain and torch.equal(confusion, plain_confusion)


@pytest.mark.xdist_group("test_learned:sweep")
def test_a_finished_run_keeps_its_most_confident_mistakes(sweep, cifar_root):
    run_dir = sweep / "0"
    assert all((run_dir / name).is_file() for name in PICTURES)
    table = pd.read_csv(run_dir / "mistakes.csv")
    # Recomputed from the saved weights on the same test images, through the run's test pipeline.
    network, cfg = saved_network(run_dir)
    test = load_cifar100(cifar_root, test_subset=cfg.data.test_subset).test
    batches = build_batches(test, cfg, False, CPU, speed.resolve(cfg.speed, CPU))
    with torch.no_grad():
        probabilities = torch.cat([network(x) for x, _ in batches]).softmax(1)
    confidence, predicted = probabilities.amax(1), probabilities.argmax(1)
    wrong = predicted != test.labels
    assert len(table) == min(16, int(wrong.sum())) > 0
    rows = table["test_index"].tolist()
    assert table["true_label"].tolist() == test.labels[rows].tolist()
    assert table["predicted_label"].tolist() == predicted[rows].tolist()
    assert (table["true_label"] != table["predicted_label"]).all()
    assert table["true_class"].tolist() == [CLASSES[c] for c in table["true_label"]]
    assert table["predicted_class"].tolist() == [CLASSES[c] for c in table["predicted_label"]]
    assert table["confidence"].is_monotonic_decreasing
    torch.testing.assert_close(torch.tensor(table["confidence"].to_numpy(), dtype=torch.float32),
                               confidence[rows], rtol=0, atol=1e-6)
    left_out = wrong.clone()
    left_out[rows] = False
    assert (confidence[left_out] <= table["confidence"].min() + 1e-6).all()  # the most confident


@pytest.mark.xdist_group("test_learned:sweep")
def test_the_filters_image_has_one_tile_per_kernel_each_scaled_to_its_own_range(sweep, tmp_path):
    run_dir = sweep / "0"
    network, _ = saved_network(run_dir)
    weight = torch.load(run_dir / "model.pt", weights_only=True)["features.0.weight"]
    assert torch.equal(first_conv_weight(network.to(memory_format=torch.channels_last)), weight)
    tiles = filter_tiles(weight)
    factor = TILE_PIXELS // 3  # 3x3 kernels, each pixel enlarged 8 times
    assert tiles.shape == (64, 24, 24, 3)
    for tile, kernel in zip(tiles, weight, strict=True):
        scaled = (kernel - kernel.min()) / (kernel.max() - kernel.min())
        torch.testing.assert_close(torch.from_numpy(tile[::factor, ::factor]), scaled.permute(1, 2, 0))
        assert (torch.from_numpy(tile).reshape(3, factor, 3, factor, 3)
                == torch.from_numpy(tile[::factor, ::factor])[:, None, :, None]).all()
        assert tile.min() == 0 and tile.max() == 1
    mosaic = draw_filters(weight, tmp_path / "filters.png")
    step = 24 + 2
    assert mosaic.shape == (2 + 8 * step, 2 + 8 * step, 3)  # 8 x 8 tiles, 2 white pixels apart
    for index, tile in enumerate(tiles):
        top, left = 2 + (index // 8) * step, 2 + (index % 8) * step
        assert (mosaic[top:top + 24, left:left + 24] == tile).all()
    assert (mosaic[:2] == 1).all() and (mosaic[:, 26:28] == 1).all()
    assert plt.imread(run_dir / "filters.png").shape[1] > mosaic.shape[1]  # drawn at 2x


def test_the_227_networks_96_kernels_of_11x11_tile_12_by_8():
    weight = first_conv_weight(AlexNet(num_classes=100))
    assert weight.shape == (96, 3, 11, 11)
    assert grid_columns(96) == 12 and grid_columns(64) == 8
    assert filter_tiles(weight).shape == (96, 33, 33, 3)


@pytest.mark.xdist_group("test_learned:sweep")
def test_show_run_redraws_both_from_a_run_dir(sweep, tmp_path):
    run_dir = shutil.copytree(sweep / "0", tmp_path / "run")
    table = (run_dir / "mistakes.csv").read_bytes()
    for name in PICTURES:
        (run_dir / name).unlink()
    result = run_cli("alexnet.show_run", str(run_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert all((run_dir / name).stat().st_size > 5_000 for name in PICTURES)
    assert (run_dir / "mistakes.csv").read_bytes() == table
    assert result.stdout.split() == ["wrote", str(run_dir / "filters.png"),
                                     "wrote", str(run_dir / "mistakes.png")]
    # A run dir from before mistakes.csv existed: recomputed from the weights, the same table.
    (run_dir / "mistakes.csv").unlink()
    assert show_run([str(run_dir), "--out", str(tmp_path / "out")]) == 0
    assert all((tmp_path / "out" / name).is_file() for name in PICTURES)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "mistakes.csv"),
                                  pd.read_csv(sweep / "0" / "mistakes.csv"), rtol=0, atol=1e-6)
    # checkpoint.keep=full: the weights are checkpoint.pt's (read as a checkpoint: weights_only)
    weights = torch.load(run_dir / "model.pt", weights_only=True)
    (run_dir / "model.pt").unlink()
    torch.save({"format": checkpoint.FORMAT, "model": weights}, run_dir / "checkpoint.pt")
    assert show_run([str(run_dir), "--out", str(tmp_path / "from_checkpoint")]) == 0
    assert ((tmp_path / "from_checkpoint" / "filters.png").read_bytes()
            == (tmp_path / "out" / "filters.png").read_bytes())


@pytest.mark.xdist_group("test_learned:sweep")
def test_a_run_with_no_evaluation_left_draws_its_filters_alone(sweep, tmp_path, caplog):
    network, cfg = saved_network(sweep / "0")
    data = load_cifar100(cfg.data.root, test_subset=cfg.data.test_subset)
    with caplog.at_level(logging.WARNING):
        written = save_learned(tmp_path, network, data.test, data.classes, Predictions())
    assert written == [tmp_path / "filters.png"] and sorted(p.name for p in tmp_path.iterdir()) == [
        "filters.png"]
    assert "python -m alexnet.show_run" in caplog.text


@pytest.mark.xdist_group("test_learned:sweep")
def test_show_run_says_in_one_line_what_is_missing(sweep, tmp_path, learnable_cifar_root, capsys):
    help_text = run_cli("alexnet.show_run", "--help", cwd=tmp_path)
    assert help_text.returncode == 0 and "RUN_DIR" in help_text.stdout
    assert "--data-root" in help_text.stdout and "--out" in help_text.stdout
    run_dir = shutil.copytree(sweep / "0", tmp_path / "run")
    (run_dir / "model.pt").unlink()
    no_weights = run_cli("alexnet.show_run", str(run_dir), cwd=tmp_path)
    assert no_weights.returncode == 2 and len(no_weights.stderr.strip().splitlines()) == 1
    assert no_weights.stderr.startswith(f"error: {run_dir} has no weights to draw from: neither "
                                        "model.pt nor checkpoint.pt")
    assert "checkpoint.keep" in no_weights.stderr

    other = shutil.copytree(sweep / "0", tmp_path / "other")
    (other / "filters.png").unlink()
    assert show_run([str(other), "--data-root", str(tmp_path / "nowhere")]) == 2
    no_data = capsys.readouterr().err
    assert len(no_data.strip().splitlines()) == 1 and no_data.startswith("error: CIFAR-100 not found")
    assert "--data-root DIR" in no_data and not (other / "filters.png").exists()  # all or nothing
    assert show_run([str(other), "--data-root", str(learnable_cifar_root)]) == 2
    assert "this is not the data the run used" in capsys.readouterr().err
    assert show_run([str(tmp_path)]) == 2
    assert "is not a run dir: it has no results.json" in capsys.readouterr().err


@pytest.mark.xdist_group("test_learned:sweep")
def test_a_sweep_shows_its_best_runs_pictures_beside_the_table(sweep):
    records = [json.loads((sweep / name / "results.json").read_text()) for name in ("0", "1")]
    finals = [r["final"]["test_acc"] for r in records]
    best, other = ("0", "1") if finals[0] >= finals[1] else ("1", "0")  # the first of equals
    for name in (*PICTURES, "mistakes.csv"):
        shown = (sweep / f"best_{name}").read_bytes()
        assert shown == (sweep / best / name).read_bytes(), name
    assert (sweep / "best_filters.png").read_bytes() != (sweep / other / "filters.png").read_bytes()


@pytest.mark.xdist_group("test_learned:sweep")
def test_a_best_run_without_pictures_gets_them_drawn_and_one_without_weights_costs_none(
        sweep, tmp_path, caplog):
    copy = shutil.copytree(sweep, tmp_path / "sweep")
    best = str(scores.best([json.loads((copy / n / "results.json").read_text()) for n in "01"]))
    expected = pd.read_csv(copy / best / "mistakes.csv")
    for run in ("0", "1"):
        for name in (*PICTURES, "mistakes.csv"):
            (copy / run / name).unlink()
    for name in (*PICTURES, "mistakes.csv"):
        (copy / f"best_{name}").unlink()
    aggregate([copy], copy)
    assert all((copy / f"best_{name}").stat().st_size > 5_000 for name in PICTURES)
    pd.testing.assert_frame_equal(pd.read_csv(copy / "best_mistakes.csv"), expected, rtol=0, atol=1e-6)

    for run in ("0", "1"):
        (copy / run / "model.pt").unlink()
    (copy / "results.csv").unlink()
    with caplog.at_level(logging.WARNING):
        aggregate([copy], copy)
    assert (copy / "results.csv").is_file()  # the table is written whatever the pictures do
    assert not any((copy / f"best_{name}").exists() for name in (*PICTURES, "mistakes.csv"))
    assert "the best run's pictures are not drawn" in caplog.text and "has no weights" in caplog.text


def test_the_best_run_is_the_first_ranked_by_its_selection_score():
    def run(status, acc, loss, **config):
        return {"status": status, "final": {"test_acc": acc, "test_loss": loss}, "config": config}

    runs = [run("failed", 0.9, 0.1), run("completed", 0.3, 2.0), run("completed", 0.5, 3.0),
            run("early_stopped", 0.5, 1.0)]
    assert scores.best(runs) == 2  # failed runs do not count; the first of equals
    by_loss = [{**r, "config": {"objective": "test_loss"}} for r in runs]
    assert scores.best(by_loss) == 3  # a loss is better lower
    assert scores.best(runs[:1]) is None and scores.best([]) is None
