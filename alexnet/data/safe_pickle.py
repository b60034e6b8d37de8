"""Unpickling that cannot run code: CIFAR-100 files are pickles, and a tampered pickle is a program."""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any

import numpy as np

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
            raise UnsafePickleError(
                f"refused to load global '{module}.{name}': CIFAR files only hold numpy arrays, "
                "lists, dicts, strings and numbers"
            ) from None


def load_restricted(path: Path) -> Any:
    """Unpickle `path` with the allow-list; latin1 decodes Python 2 strings and numpy buffers."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding="latin1").load()
