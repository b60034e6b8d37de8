import pickle

import numpy as np
import pytest

from alexnet.data.cifar import DataError, UnsafePickleError, load_cifar100, load_restricted
from cifar_files import CLASSES, SUPERCLASSES, dump, make_split, write_cifar
from conftest import SHARED_DATA


@pytest.mark.parametrize("style", ["py2", "py3"])
def test_reads_both_encodings_into_uint8_tensors(tmp_path, style):
    write_cifar(tmp_path, n_train=10, n_test=6, style=style)
    data = load_cifar100(tmp_path)
    expected = make_split(10, 0)
    assert data.train.images.shape == (10, 3, 32, 32)
    assert data.train.images.dtype.is_floating_point is False
    assert np.array_equal(data.train.images.reshape(10, -1).numpy(), expected["data"])
    assert data.train.labels.tolist() == expected["fine_labels"]
    assert data.train.coarse_labels.tolist() == expected["coarse_labels"]
    assert len(data.test) == 6
    assert data.classes == CLASSES and data.superclasses == SUPERCLASSES


def test_python2_style_file_uses_the_original_globals(tmp_path):
    write_cifar(tmp_path, n_train=4, n_test=4, style="py2")
    raw = (tmp_path / "cifar-100-python" / "train").read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    assert b"_codecs" not in raw  # Python 2 strings, not Python 3 bytes


def test_subsets_take_the_first_images(cifar_root):
    full = load_cifar100(cifar_root)
    data = load_cifar100(cifar_root, train_subset=5, test_subset=3)
    assert len(data.train) == 5 and len(data.test) == 3
    assert data.train.labels.tolist() == full.train.labels[:5].tolist()


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_tampered_pickle_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cifar(tmp_path, n_train=4, n_test=4)
    path = tmp_path / "cifar-100-python" / "train"
    split = make_split(4, 0)
    split["batch_label"] = _RunsCode()
    path.write_bytes(pickle.dumps(split, protocol=2))
    with pytest.raises(DataError, match=r"train.*refused to load global 'posix.system'"):
        load_cifar100(tmp_path)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(UnsafePickleError):
        load_restricted(path)


def test_missing_files_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"cifar-100-python lacks train, test, meta.*data\.root"):
        load_cifar100(tmp_path, download=False)


def test_truncated_file_is_named(tmp_path):
    write_cifar(tmp_path, n_train=8, n_test=4)
    path = tmp_path / "cifar-100-python" / "test"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"test is truncated or corrupt"):
        load_cifar100(tmp_path)


def test_wrongly_shaped_data_is_named(tmp_path):
    write_cifar(tmp_path, n_train=8, n_test=4)
    bad = make_split(8, 0)
    bad["data"] = np.zeros((8, 1024), dtype=np.uint8)
    dump(bad, tmp_path / "cifar-100-python" / "train", "py2")
    with pytest.raises(DataError, match=r"train: 'data' must be a uint8 array of shape \(N, 3072\)"):
        load_cifar100(tmp_path)


def test_labels_that_do_not_match_the_images_are_named(tmp_path):
    write_cifar(tmp_path, n_train=8, n_test=4)
    bad = make_split(8, 0)
    bad["fine_labels"] = bad["fine_labels"][:5]
    dump(bad, tmp_path / "cifar-100-python" / "train", "py2")
    with pytest.raises(DataError, match=r"'fine_labels' has shape \(5,\), expected \(8,\)"):
        load_cifar100(tmp_path)


@pytest.mark.slow
def test_reads_the_shared_copy_of_the_real_data():
    if not (SHARED_DATA / "cifar-100-python" / "train").exists():
        pytest.skip(f"no real CIFAR-100 at {SHARED_DATA}")
    data = load_cifar100(SHARED_DATA)
    assert data.train.images.shape == (50000, 3, 32, 32)
    assert data.test.images.shape == (10000, 3, 32, 32)
    assert data.train.labels.bincount().tolist() == [500] * 100
    assert data.classes[:3] == ["apple", "aquarium_fish", "baby"]
