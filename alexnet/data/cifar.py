"""CIFAR-100 in the official "python version" layout, read into uint8 tensors once."""

from __future__ import annotations

import codecs
import contextlib
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

FOLDER = "cifar-100-python"
NUM_CLASSES = 100
TRAIN_IMAGES = 50_000  # in the official training file
NUM_SUPERCLASSES = 20
IMAGE_SHAPE = (3, 32, 32)


class DataError(RuntimeError):
    """The data set is missing, unreadable or not CIFAR-100; the message says how to fix it."""


@dataclass(frozen=True)
class Split:
    """One split: images (N, 3, 32, 32) uint8, fine labels (N,) and superclass labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor
    coarse_labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> Split:
        """The first n images (the files are in random order), or all when n is None."""
        if n is None or n >= len(self):
            return self
        return Split(self.images[:n], self.labels[:n], self.coarse_labels[:n])


@dataclass(frozen=True)
class Cifar100:
    train: Split
    test: Split
    classes: list[str]
    superclasses: list[str]
    val: Split | None = None  # held out of the training images (data.val_split)

    def fine_to_coarse(self) -> torch.Tensor:
        """Each class's superclass, read off the labels (-1 for a class in no split)."""
        mapping = torch.full((len(self.classes),), -1, dtype=torch.long)
        for split in (self.train, self.test, *([self.val] if self.val is not None else [])):
            mapping[split.labels] = split.coarse_labels
        return mapping


def fetch(root: str | Path, download: bool) -> None:
    """Ensure the files are there, fetching them if allowed; DataError before anything is read."""
    folder = Path(root).expanduser() / FOLDER
    missing = [name for name in ("train", "test", "meta") if not (folder / name).is_file()]
    if missing and not download:
        raise DataError(f"CIFAR-100 not found: {folder} lacks {', '.join(missing)}. Point data.root at a "
                        f"folder that holds {FOLDER}/ (data.root=DIR), or set data.download=true to "
                        "fetch it.")
    if missing:
        _download(Path(root).expanduser())


def load_cifar100(root: str | Path, download: bool = False, train_subset: int | None = None,
                  test_subset: int | None = None) -> Cifar100:
    """Read `<root>/cifar-100-python/`, downloading it first if asked and absent."""
    folder = Path(root).expanduser() / FOLDER
    fetch(root, download)
    meta = _read_dict(folder / "meta", ("fine_label_names", "coarse_label_names"))
    classes = _names(meta, "fine_label_names", NUM_CLASSES, folder / "meta")
    superclasses = _names(meta, "coarse_label_names", NUM_SUPERCLASSES, folder / "meta")
    return Cifar100(train=_read_split(folder / "train").head(train_subset),
                    test=_read_split(folder / "test").head(test_subset),
                    classes=classes, superclasses=superclasses)


def _download(root: Path) -> None:
    """Fetch the archive (torchvision checks its MD5); a failure removes only what it made."""
    from torchvision.datasets import CIFAR100
    from torchvision.datasets.utils import download_and_extract_archive

    made = [level for level in (root, *root.parents) if not level.exists()]
    archive = root / CIFAR100.filename
    had_archive = archive.exists()
    log.info("downloading CIFAR-100 into %s", root)
    try:
        download_and_extract_archive(CIFAR100.url, str(root), filename=CIFAR100.filename,
                                     md5=CIFAR100.tgz_md5)
    except Exception as err:  # network, disk or checksum: the same advice for each
        if not had_archive:
            archive.unlink(missing_ok=True)
        for level in made:  # (innermost first; a folder holding anything stays)
            with contextlib.suppress(OSError):
                level.rmdir()
        raise DataError(f"could not download CIFAR-100 into {root / FOLDER} ({err}). Download "
                        f"{CIFAR100.url} by hand and unpack it there, or set data.root to a folder that "
                        f"already holds {FOLDER}/ and data.download=false.") from err


def _read_dict(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    try:
        raw = load_restricted(path)
    except UnsafePickleError as err:
        raise DataError(f"{path} is not a safe CIFAR pickle: {err}") from err
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as err:
        raise DataError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}); delete it and "
                        "download again (data.download=true) or copy a good one.") from err
    if not isinstance(raw, dict):
        raise DataError(f"{path} holds a {type(raw).__name__}, not the dict CIFAR files hold")
    # Python 2 files give str keys under latin1; files re-written by Python 3 may give bytes.
    entries = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in raw.items()}
    absent = [key for key in required if key not in entries]
    if absent:
        raise DataError(f"{path} lacks the entries {absent}: it is not a CIFAR-100 file")
    return entries


def _names(meta: dict[str, Any], key: str, count: int, path: Path) -> list[str]:
    names = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in meta[key]]
    if len(names) != count:
        raise DataError(f"{path}: {key} has {len(names)} names, CIFAR-100 has {count}")
    return names


def _read_split(path: Path) -> Split:
    entries = _read_dict(path, ("data", "fine_labels", "coarse_labels"))
    data = entries["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {shape}")
    n = data.shape[0]
    labels = _labels(entries["fine_labels"], n, NUM_CLASSES, path, "fine_labels")
    coarse = _labels(entries["coarse_labels"], n, NUM_SUPERCLASSES, path, "coarse_labels")
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(n, *IMAGE_SHAPE))
    return Split(images, labels, coarse)


def _labels(values: Any, n: int, count: int, path: Path, key: str) -> torch.Tensor:
    try:
        labels = torch.as_tensor(np.asarray(values, dtype=np.int64))
    except (TypeError, ValueError) as err:
        raise DataError(f"{path}: '{key}' must be a list of integers ({err})") from err
    if labels.shape != (n,):
        raise DataError(f"{path}: '{key}' has shape {tuple(labels.shape)}, expected ({n},)")
    if n and (labels.min() < 0 or labels.max() >= count):
        raise DataError(f"{path}: '{key}' holds values outside 0..{count - 1}")
    return labels


def hold_out(split: Split, count: int, seed: int) -> tuple[Split, Split]:
    """(rest, `count` validation images), stratified, in the split's order; DataError if impossible."""
    if not 0 < count < len(split):
        raise ValueError(f"data.val_split={count} must be at least 1 and fewer than the "
                         f"{len(split)} training images (data.train_subset selects them first)")
    labels = split.labels.numpy()
    classes, sizes = np.unique(labels, return_counts=True)
    _check_stratifiable(count, len(labels), classes, sizes)
    from sklearn.model_selection import train_test_split  # (seconds to import: only when used)

    keep, val = train_test_split(np.arange(len(labels)), test_size=count, stratify=labels, random_state=seed)
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


# numpy's array-pickling function; its module moved (numpy.core -> numpy._core) across releases.
_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]

# Every global the official (Python 2) and re-written (Python 3) CIFAR files name; nothing else.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes in protocol 2
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for something outside the allow-list (it may have been tampered with)."""


class RestrictedUnpickler(pickle.Unpickler):
    """Admits numpy arrays, lists, dicts, strings and numbers; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refused to load global '{module}.{name}': CIFAR files only hold numpy "
                                    "arrays, lists, dicts, strings and numbers") from None


def load_restricted(path: Path) -> Any:
    """Unpickle `path` with the allow-list; latin1 decodes Python 2 strings and numpy buffers."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding="latin1").load()
