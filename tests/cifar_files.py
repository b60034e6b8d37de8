"""Tiny CIFAR-100 files in the official "python version" layout, written the way the originals
(Python 2 pickles) or a Python 3 re-write would be."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

CLASSES = [f"class_{i:02d}" for i in range(100)]
SUPERCLASSES = [f"super_{i:02d}" for i in range(20)]


class Python2StylePickler(pickle._Pickler):
    """Writes str and bytes as Python 2 `str` (BINSTRING) and numpy globals under numpy.core,
    byte for byte the encoding of the official CIFAR files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{obj.__qualname__}\n".encode())
        self.memoize(obj)


def dump(obj: object, path: Path, style: str) -> None:
    with open(path, "wb") as f:
        if style == "py2":
            Python2StylePickler(f, protocol=2).dump(obj)
        else:  # a Python 3 re-write with bytes keys, as pickle.load(..., encoding="bytes") returns
            pickle.dump({k.encode(): v for k, v in obj.items()}, f, protocol=4)


def make_split(n: int, seed: int, learnable: bool = False) -> dict[str, object]:
    """n images; with `learnable`, each image's mean brightness encodes its (one of 4) label."""
    rng = np.random.default_rng(seed)
    if learnable:
        labels = rng.integers(0, 4, n)
        base = (labels * 60 + 20)[:, None]
        data = np.clip(base + rng.integers(-15, 16, (n, 3072)), 0, 255).astype(np.uint8)
    else:
        labels = rng.integers(0, 100, n)
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return {
        "filenames": [f"img_{i}.png" for i in range(n)],
        "batch_label": "tiny",
        "fine_labels": labels.tolist(),
        "coarse_labels": (labels // 5).tolist(),
        "data": data,
    }


def write_cifar(root: Path, n_train: int = 48, n_test: int = 24, style: str = "py2",
                learnable: bool = False) -> Path:
    """Write <root>/cifar-100-python/{train,test,meta}; return root."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    dump(make_split(n_train, 0, learnable), folder / "train", style)
    dump(make_split(n_test, 1, learnable), folder / "test", style)
    dump({"fine_label_names": CLASSES, "coarse_label_names": SUPERCLASSES}, folder / "meta", style)
    return Path(root)
