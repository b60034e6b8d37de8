"""What a run's network learned, drawn at no extra training cost: filters.png (its first convolution's
kernels, as in the AlexNet paper's Figure 3) and mistakes.png (the test images it got most confidently wrong).
mistakes.csv keeps the images shown, so `python -m alexnet.show_run RUN_DIR` can redraw both later."""

from __future__ import annotations

import logging
import math
import pickle
import textwrap
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from alexnet import models, speed  # noqa: E402
from alexnet.data.cifar import FOLDER, DataError, Split, load_cifar100  # noqa: E402
from alexnet.data.pipelines import build_batches  # noqa: E402
from alexnet.engine import evaluate  # noqa: E402
from alexnet.files import write_atomic, write_text_atomic  # noqa: E402
from alexnet.fused import fuse  # noqa: E402
from alexnet.hyperparameters import identity  # noqa: E402
from alexnet.metrics import Predictions  # noqa: E402
from alexnet.resume import checkpoint  # noqa: E402
from alexnet.run.record import FILTERS_FILE, MISTAKES_FILE, MISTAKES_TABLE, read_summary  # noqa: E402

log = logging.getLogger(__name__)

GRID_SIDE = 4  # the mistakes grid is GRID_SIDE x GRID_SIDE images
TILE_PIXELS = 24  # each kernel is upscaled (nearest neighbour) to at least this many pixels a side
MISTAKE_PIXELS = 112  # each mistaken image likewise: a 32x32 image is drawn at 128x128
TABLE_COLUMNS = ["test_index", "true_label", "true_class", "predicted_label", "predicted_class", "confidence"]


class LearnedError(RuntimeError):
    """The pictures cannot be drawn from a run dir; the message says what is missing and the fix."""


def _title(text: str, label: str, inches: float) -> str:
    """`text`, then `label` wrapped to the figure's width (about 14 small characters an inch)."""
    return "\n".join([text, *textwrap.wrap(label, max(30, int(inches * 14)))])


def first_conv_weight(network: nn.Module) -> Tensor:
    """The first conv's kernels (out, 3, k, k) on the CPU, standard layout; `network` must be eager."""
    conv = next((m for m in network.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.in_channels != 3:
        raise ValueError("the network has no first convolution over RGB images to show")
    return conv.weight.detach().float().cpu().contiguous()


def filter_tiles(weight: Tensor, pixels: int = TILE_PIXELS) -> np.ndarray:
    """One RGB tile (n, s, s, 3) per kernel, scaled to its own [0, 1] range (Figure 3), s >= `pixels`."""
    flat = weight.flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    span = (high - low).where(high > low, torch.ones_like(high))
    scaled = ((weight - low.view(-1, 1, 1, 1)) / span.view(-1, 1, 1, 1)).clamp(0, 1)
    factor = max(1, math.ceil(pixels / weight.shape[-1]))
    return scaled.permute(0, 2, 3, 1).repeat_interleave(factor, 1).repeat_interleave(factor, 2).numpy()


def grid_columns(count: int) -> int:
    """Columns of a near-square grid that `count` tiles fill whole where they can (96: 12 x 8)."""
    side = math.ceil(math.sqrt(count))
    return next((c for c in range(side, 2 * side + 1) if count % c == 0), side)


def tile_grid(tiles: np.ndarray, columns: int, gap: int = 2) -> np.ndarray:
    """The tiles in rows of `columns`, row by row, `gap` white pixels apart and around."""
    count, size = len(tiles), tiles.shape[1]
    rows = math.ceil(count / columns)
    step = size + gap
    mosaic = np.ones((gap + rows * step, gap + columns * step, tiles.shape[3]), dtype=tiles.dtype)
    for index, tile in enumerate(tiles):
        top, left = gap + (index // columns) * step, gap + (index % columns) * step
        mosaic[top:top + size, left:left + size] = tile
    return mosaic


def draw_filters(weight: Tensor, path: Path, label: str = "") -> np.ndarray:
    """filters.png: every first-layer kernel as a small RGB image; returns the mosaic drawn."""
    count, _, height, width = weight.shape
    mosaic = tile_grid(filter_tiles(weight), grid_columns(count))
    scale = 2 / 100  # two screen pixels per mosaic pixel at 100 dpi
    inches = max(4.0, mosaic.shape[1] * scale)
    title = _title(f"First convolution: {count} kernels of {height}x{width}, each scaled to its "
                   "own range", label, inches)
    fig, ax = plt.subplots(figsize=(inches, mosaic.shape[0] * scale + 0.2 + 0.17 * title.count("\n")))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize="small")
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)
    return mosaic


def mistakes_table(labels: Tensor, predictions: Predictions, classes: Sequence[str],
                   count: int = GRID_SIDE * GRID_SIDE) -> pd.DataFrame:
    """The `count` most confidently wrong images, most confident first (ties: lower test index first)."""
    if len(predictions.predicted) != len(labels):
        raise ValueError(f"{len(predictions.predicted)} predictions for {len(labels)} images")
    wrong = torch.nonzero(predictions.predicted != labels).flatten()
    order = torch.sort(predictions.confidence[wrong], descending=True, stable=True).indices
    chosen = wrong[order[:count]]
    truth, guess = labels[chosen].tolist(), predictions.predicted[chosen].tolist()
    return pd.DataFrame({
        "test_index": chosen.tolist(), "true_label": truth, "true_class": [classes[c] for c in truth],
        "predicted_label": guess, "predicted_class": [classes[c] for c in guess],
        "confidence": predictions.confidence[chosen].double().tolist(),
    }, columns=TABLE_COLUMNS)


def read_mistakes_table(path: Path) -> pd.DataFrame:
    """A run's mistakes.csv, refused with the fix when it is not one."""
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise LearnedError(f"{path} cannot be read ({err}); delete it and rerun this command to "
                           "recompute it from the saved weights") from err
    if list(table.columns) != TABLE_COLUMNS:
        raise LearnedError(f"{path} has the columns {list(table.columns)}, not {TABLE_COLUMNS}; "
                           "delete it and rerun this command to recompute it from the weights")
    return table


def mistake_titles(table: pd.DataFrame) -> list[str]:
    """'true -> predicted (confidence)' for each row, on two lines so long class names fit."""
    return [f"{row.true_class}\n→ {row.predicted_class} ({row.confidence:.3f})"
            for row in table.itertuples(index=False)]


def draw_mistakes(images: Tensor, titles: Sequence[str], path: Path, label: str = "") -> None:
    """mistakes.png: uint8 (n, 3, H, W) images under their titles, one mosaic (16 axes draw 10x slower)."""
    rows = max(1, math.ceil(len(titles) / GRID_SIDE))
    side = images.shape[-1] if len(titles) else 32
    factor = max(1, math.ceil(MISTAKE_PIXELS / side))
    tile, band, gap = side * factor, 32, 12  # pixels: an image, its two title lines, the margin
    mosaic = np.ones((rows * (band + tile) + gap, GRID_SIDE * (tile + gap) + gap, 3))
    places = []
    for index in range(len(titles)):
        top = (index // GRID_SIDE) * (band + tile) + band
        left = gap + (index % GRID_SIDE) * (tile + gap)
        image = images[index].permute(1, 2, 0).repeat_interleave(factor, 0).repeat_interleave(factor, 1)
        mosaic[top:top + tile, left:left + tile] = image.numpy() / 255
        places.append((left + tile / 2, top - 3))
    height, width = mosaic.shape[0] / 100, mosaic.shape[1] / 100  # inches at 100 dpi
    title = _title("Most confidently wrong test images (true class, then predicted)", label, width)
    header = 0.15 + 0.16 * (title.count("\n") + 1)
    fig = plt.figure(figsize=(width, height + header))
    ax = fig.add_axes((0, 0, 1, height / (height + header)))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for (x, y), text in zip(places, titles, strict=True):
        ax.text(x, y, text, ha="center", va="bottom", fontsize=7.5, linespacing=1.1)
    if not titles:
        ax.text(mosaic.shape[1] / 2, mosaic.shape[0] / 2, "no mistakes: every test image was "
                "classified correctly", ha="center", va="center")
    fig.text(0.5, 1 - 0.08 / (height + header), title, ha="center", va="top", fontsize="small")
    write_atomic(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)


def save_learned(run_dir: Path, network: nn.Module, test: Split, classes: Sequence[str],
                 predictions: Predictions, overrides: Sequence[str] = ()) -> list[Path]:
    """filters.png, mistakes.csv/.png from the eager network and last test predictions (if any)."""
    run_dir, label = Path(run_dir), " ".join(identity(overrides))
    draw_filters(first_conv_weight(network), run_dir / FILTERS_FILE, label)
    if len(predictions.predicted) == 0:
        log.warning("no test evaluation in this attempt: %s not drawn; python -m alexnet.show_run "
                    "%s recomputes it from the saved weights", MISTAKES_FILE, run_dir)
        return [run_dir / FILTERS_FILE]
    table = mistakes_table(test.labels, predictions, classes)
    write_text_atomic(run_dir / MISTAKES_TABLE, table.to_csv(index=False))
    draw_mistakes(test.images[table["test_index"].tolist()], mistake_titles(table),
                  run_dir / MISTAKES_FILE, label)
    return [run_dir / FILTERS_FILE, run_dir / MISTAKES_TABLE, run_dir / MISTAKES_FILE]


def read_weights(run_dir: Path, status: str) -> dict[str, Tensor]:
    """model.pt, else checkpoint.pt's weights; read with weights_only, so the file can hold no code."""
    model_file, checkpoint_file = run_dir / checkpoint.MODEL_FILE, run_dir / checkpoint.CHECKPOINT_FILE
    if model_file.is_file():
        try:
            weights = torch.load(model_file, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError,
                OSError) as err:  # torn, foreign, or holding more than tensors (weights_only)
            raise LearnedError(f"{model_file} cannot be read ({type(err).__name__}: "
                               f"{str(err).splitlines()[0] if str(err) else ''})") from err
        if not isinstance(weights, dict):
            raise LearnedError(f"{model_file} holds a {type(weights).__name__}, not a network's "
                               "weights (a state dict)")
        return weights
    if checkpoint_file.is_file():
        try:
            return checkpoint.load(checkpoint_file)["model"]
        except checkpoint.CheckpointError as err:
            raise LearnedError(str(err).split(". Delete")[0]) from err
    raise LearnedError(
        f"{run_dir} has no weights to draw from: neither {checkpoint.MODEL_FILE} nor "
        f"{checkpoint.CHECKPOINT_FILE} is there (status {status}; a run keeps model.pt once it finishes with "
        "checkpoint.keep=weights, checkpoint.pt with checkpoint.keep=full; with checkpoint.keep=best a sweep "
        "keeps only its best run's model.pt, with none no run keeps weights; and a run has neither when it "
        "ended before its first epoch or its files were removed)")


def load_test_data(config: dict[str, Any], data_root: Path | None) -> tuple[Split, list[str]]:
    """The run's test split (its data.test_subset) and class names, from `data_root` else its data.root."""
    data = config.get("data") or {}
    root = Path(data_root if data_root is not None else data.get("root", "data")).expanduser()
    if not all((root / FOLDER / name).is_file() for name in ("test", "meta")):
        given = "--data-root" if data_root is not None else "the run's data.root"
        raise LearnedError(f"CIFAR-100 not found: {root / FOLDER} ({given}) lacks its test or meta "
                           f"file; give the folder that holds {FOLDER}/ with --data-root DIR")
    try:
        cifar = load_cifar100(root, download=False, train_subset=1, test_subset=data.get("test_subset"))
    except DataError as err:
        raise LearnedError(str(err)) from err
    return cifar.test, cifar.classes


def evaluate_weights(network: nn.Module, config: dict[str, Any], test: Split) -> Predictions:
    """Test predictions exactly as a CPU run's last evaluation, for a run dir without mistakes.csv."""
    cfg = OmegaConf.create(config)
    cpu = torch.device("cpu")
    settings = speed.resolve(cfg.speed, cpu)
    batches = build_batches(test, cfg, False, cpu, settings)
    predictions = Predictions()
    evaluate(fuse([network.to(memory_format=settings.memory_format)], []), [batches],
             int(cfg.model.num_classes), cpu, progress=False,
             autocast_dtype=settings.autocast_dtype, predictions=[predictions])
    return predictions


def check_against_data(table: pd.DataFrame, test: Split, path: Path) -> None:
    """mistakes.csv's classes must be the data's at those indices: else it is another data set."""
    outside = table[table["test_index"] >= len(test)]
    if not outside.empty:
        raise LearnedError(f"{path} names test image {int(outside['test_index'].iloc[0])}, and the "
                           f"data has {len(test)} test images: give the data the run used with "
                           "--data-root DIR")
    found = test.labels[table["test_index"].tolist()].tolist()
    for row, label in zip(table.itertuples(index=False), found, strict=True):
        if label != row.true_label:
            raise LearnedError(f"{path} says test image {row.test_index} is class "
                               f"{row.true_label}, the data says {label}: this is not the data "
                               "the run used; give that with --data-root DIR")


def redraw(run_dir: Path, out_dir: Path | None = None, data_root: Path | None = None,
           prefix: str = "") -> list[Path]:
    """Redraw a run dir's pictures into `out_dir` (default: the run dir), names after `prefix`, from its
    weights, config, test images and mistakes.csv (recomputed if missing), which is written beside them."""
    run_dir, out_dir = Path(run_dir), Path(out_dir if out_dir is not None else run_dir)
    try:
        summary = read_summary(run_dir)
    except ValueError as err:
        raise LearnedError(str(err)) from err
    if summary is None:
        raise LearnedError(f"{run_dir} is not a run dir: it has no results.json (give a folder a "
                           "run wrote, e.g. outputs/runs/DATE/TIME or a sweep's job folder)")
    config = summary["config"]
    weights = read_weights(run_dir, summary.get("status", "unknown"))
    network = models.from_config(config["model"])
    try:
        network.load_state_dict(weights)
    except RuntimeError as err:
        raise LearnedError(f"the weights in {run_dir} do not fit the network of its recorded "
                           f"config ({str(err).splitlines()[0]})") from err
    test, classes = load_test_data(config, data_root)  # (before anything is drawn: all or none)
    label = " ".join(identity(summary.get("overrides") or []))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{prefix}{FILTERS_FILE}"]
    draw_filters(first_conv_weight(network), written[0], label)
    source, target = run_dir / MISTAKES_TABLE, out_dir / f"{prefix}{MISTAKES_TABLE}"
    if source.is_file():
        table = read_mistakes_table(source)
        check_against_data(table, test, source)
    else:
        log.info("%s has no %s: recomputing it from the saved weights", run_dir, MISTAKES_TABLE)
        table = mistakes_table(test.labels, evaluate_weights(network, config, test), classes)
    if not (source.is_file() and target.is_file() and target.samefile(source)):  # beside its picture
        written.append(target)
        write_text_atomic(target, table.to_csv(index=False))
    written.append(out_dir / f"{prefix}{MISTAKES_FILE}")
    draw_mistakes(test.images[table["test_index"].tolist()], mistake_titles(table), written[-1], label)
    return written

