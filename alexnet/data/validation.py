"""A validation split held out of the training images (`data.val_split=N`): selecting settings by
their test scores selects on the test set, so a search scores runs on images they never trained
on and reports the test scores beside.

Stratified: every class keeps its share of the N images (largest remainders round), and which
images go is fixed by `data.val_seed` alone, so two runs with other seeds, batch sizes or
optimizers hold out the same images."""

from __future__ import annotations

import numpy as np
import torch

from alexnet.data.cifar import Split


def hold_out(split: Split, count: int, seed: int) -> tuple[Split, Split]:
    """(the rest for training, `count` images for validation), each in the split's own order."""
    if not 0 < count < len(split):
        raise ValueError(f"data.val_split={count} must be at least 1 and fewer than the "
                         f"{len(split)} training images (data.train_subset selects them first)")
    labels = split.labels.numpy()
    classes, sizes = np.unique(labels, return_counts=True)
    taken, remainders = np.divmod(sizes * count, len(labels))  # exact shares, in integers
    rest = count - taken.sum()  # to the classes with the largest remainders (ties: lower class)
    taken[np.argsort(-remainders, kind="stable")[:rest]] += 1
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k]
                             for c, k in zip(classes, taken, strict=True)])
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[chosen] = True
    keep, val = torch.from_numpy(np.flatnonzero(~is_val)), torch.from_numpy(np.flatnonzero(is_val))
    return _take(split, keep), _take(split, val)


def _take(split: Split, index: torch.Tensor) -> Split:
    return Split(split.images[index], split.labels[index], split.coarse_labels[index])
