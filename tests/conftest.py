import os
import sys
from pathlib import Path

# The suite runs tests beside each other (pytest-xdist, pyproject's addopts): one thread per process,
# in this one and in every run it starts, so that they share the cores instead of fighting over
# them (OpenMP's threads spin while they wait). Set before torch is imported anywhere.
for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from cifar_files import write_cifar  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    """Tiny random CIFAR-100 files in the official layout (Python 2 encoding)."""
    return write_cifar(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="session")
def learnable_cifar_root(tmp_path_factory) -> Path:
    """Tiny files whose labels can be learned from brightness in a few steps."""
    return write_cifar(tmp_path_factory.mktemp("learnable"), n_train=256, n_test=64,
                       learnable=True)


@pytest.fixture(scope="session")
def slower_cifar_root(tmp_path_factory) -> Path:
    """Enough images (1,024) that an epoch lasts long enough (~2 s) to be interrupted inside."""
    return write_cifar(tmp_path_factory.mktemp("slower"), n_train=1024, n_test=64, learnable=True)
