"""A validation split held out of the training images (`data.val_split=N`): selecting settings by
their test scores selects on the test set, so a search scores runs on images they never trained
on and reports the test scores beside.

Stratified by class, with scikit-learn's train_test_split(stratify=): every class keeps its share
of the N images, and which images go is fixed by `data.val_seed` alone, so two runs with other
seeds, batch sizes or optimizers hold out the same images."""

from __future__ import annotations

import numpy as np
import torch

from alexnet.data.cifar import DataError, Split


def hold_out(split: Split, count: int, seed: int) -> tuple[Split, Split]:
    """(the rest for training, `count` images for validation), each in the split's own order.
    DataError, saying what to change, where these images cannot be stratified: a class with one
    image (it cannot be on both sides), or fewer images on a side than there are classes (a run
    says so in one line, a sweep records that run as failed)."""
    if not 0 < count < len(split):
        raise ValueError(f"data.val_split={count} must be at least 1 and fewer than the "
                         f"{len(split)} training images (data.train_subset selects them first)")
    labels = split.labels.numpy()
    classes, sizes = np.unique(labels, return_counts=True)
    _check_stratifiable(count, len(labels), classes, sizes)
    from sklearn.model_selection import train_test_split  # (seconds to import: only when used)

    keep, val = train_test_split(np.arange(len(labels)), test_size=count, stratify=labels,
                                 random_state=seed)
    return _take(split, np.sort(keep)), _take(split, np.sort(val))


def _check_stratifiable(count: int, total: int, classes: np.ndarray, sizes: np.ndarray) -> None:
    """What train_test_split(stratify=) needs, said in the run's own keys."""
    lonely = classes[sizes < 2]
    if len(lonely):
        raise DataError(f"data.val_split={count}: class {int(lonely[0])} has a single image among the "
                        f"{total} training images ({len(lonely)} classes have one), and a stratified "
                        "hold-out needs two of each: use more training images (data.train_subset) "
                        "or no validation split (data.val_split=null)")
    if count < len(classes):
        raise DataError(f"data.val_split={count} is fewer than the {len(classes)} classes of the "
                        "training images, and a stratified hold-out takes at least one of each: "
                        f"hold out more, e.g. data.val_split={len(classes)}")
    if total - count < len(classes):
        raise DataError(f"data.val_split={count} leaves {total - count} training images, fewer than "
                        f"their {len(classes)} classes, and a stratified hold-out keeps at least one "
                        f"of each: hold out at most data.val_split={total - len(classes)}")


def _take(split: Split, index: np.ndarray) -> Split:
    rows = torch.from_numpy(index)
    return Split(split.images[rows], split.labels[rows], split.coarse_labels[rows])
