"""Readers of the on-disk formats: round trips through tiny files written in each real format, and bad files."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from components.data.readers import read_cifar10, read_idx, read_svhn
from components.data.types import DataError

IDX_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in .gz)."""
    header = bytes([0, 0, IDX_TYPE_CODES[array.dtype], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def write_cifar_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    with path.open("wb") as handle:
        pickle.dump({b"data": images.reshape(len(images), -1), b"labels": labels}, handle)


def write_svhn_mat(path: Path, images_nchw: np.ndarray, digits: np.ndarray) -> None:
    # SVHN stores (H, W, C, n) and labels 1..10 with 10 for digit 0.
    scipy.io.savemat(path, {"X": images_nchw.transpose(2, 3, 1, 0), "y": np.where(digits == 0, 10, digits)[:, None]})


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_read_idx_round_trips_uint8_images(tmp_path: Path, name: str) -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)

    result = read_idx(write_idx(tmp_path / name, images))

    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, images)


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_read_idx_converts_big_endian_to_native(tmp_path: Path, dtype: type) -> None:
    values = np.array([[1, -2, 300], [70000, 5, -6]], dtype=dtype)

    result = read_idx(write_idx(tmp_path / "values-idx2", values))

    assert result.dtype == np.dtype(dtype)  # native order, not '>i4'
    np.testing.assert_array_equal(result, values)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x01\x00\x08\x01" + (3).to_bytes(4, "big") + b"abc", "two zero bytes"),
        (b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + b"abc", "unknown data type"),
        (b"\x00\x00\x08\x03" + (3).to_bytes(4, "big"), "truncated header"),
        (b"\x00\x00\x08\x01" + (4).to_bytes(4, "big") + b"abc", "needs 12 bytes, file has 11"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (b"\x00\x00", "two zero bytes"),
    ],
)
def test_read_idx_rejects_malformed_headers_naming_the_file(tmp_path: Path, payload: bytes, message: str) -> None:
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(payload)

    with pytest.raises(DataError, match=message) as info:
        read_idx(path)

    assert str(path) in str(info.value)


def test_read_idx_rejects_a_gz_file_that_is_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07")

    with pytest.raises(DataError, match=r"cannot read IDX file .*labels-idx1-ubyte.gz"):
        read_idx(path)


def test_read_idx_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"IDX file not found: .*nothing-here"):
        read_idx(tmp_path / "nothing-here")


def _write_cifar(directory: Path, per_batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(6 * per_batch, 3, 32, 32), dtype=np.uint8)
    labels = np.arange(6 * per_batch) % 10
    for b, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
        rows = slice(b * per_batch, (b + 1) * per_batch)
        write_cifar_batch(directory / name, images[rows], labels[rows].tolist())
    return images, labels


@pytest.mark.parametrize("subdir", ["cifar-10-batches-py", ""])
def test_read_cifar10_concatenates_batches_in_order(tmp_path: Path, subdir: str) -> None:
    images, labels = _write_cifar(tmp_path / subdir)

    train_images, train_labels, test_images, test_labels = read_cifar10(tmp_path)

    assert train_images.shape == (20, 3, 32, 32)
    assert train_images.dtype == np.uint8
    assert test_images.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(train_images, images[:20])
    np.testing.assert_array_equal(train_labels, labels[:20])
    np.testing.assert_array_equal(test_images, images[20:])
    np.testing.assert_array_equal(test_labels, labels[20:])
    assert train_labels.dtype == np.int64


def test_read_cifar10_keeps_channel_major_layout(tmp_path: Path) -> None:
    # Row layout of the official files: 1024 red, then 1024 green, then 1024 blue values.
    (tmp_path / "x").mkdir()
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.full(1024, 30)]).astype(np.uint8)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        with (tmp_path / "x" / name).open("wb") as handle:
            pickle.dump({b"data": row[None], b"labels": [3]}, handle)

    train_images, *_ = read_cifar10(tmp_path / "x")

    assert train_images[0, :, 5, 7].tolist() == [10, 20, 30]


def test_read_cifar10_names_missing_batches(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()

    with pytest.raises(DataError, match=r"data_batch_3 not found in .*cifar-10-python.tar.gz"):
        read_cifar10(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "shape \\(n, 3072\\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but labels"),
        ({b"images": np.zeros((2, 3072), np.uint8)}, "expected keys 'data' and 'labels'"),
        ([1, 2, 3], "expected a dict"),
    ],
)
def test_read_cifar10_rejects_malformed_batches(tmp_path: Path, content: object, message: str) -> None:
    _write_cifar(tmp_path)
    with (tmp_path / "test_batch").open("wb") as handle:
        pickle.dump(content, handle)

    with pytest.raises(DataError, match=message):
        read_cifar10(tmp_path)


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.target), "w"))


def test_read_cifar10_refuses_pickles_that_call_arbitrary_code(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with (tmp_path / "data_batch_1").open("wb") as handle:
        pickle.dump({b"data": _Exploit(marker), b"labels": []}, handle)

    with pytest.raises(DataError, match=r"data_batch_1: UnpicklingError: refusing to load global (io|builtins).open"):
        read_cifar10(tmp_path)
    assert not marker.exists()


def test_read_svhn_transposes_and_maps_label_10_to_digit_0(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, size=(6, 3, 32, 32), dtype=np.uint8)
    test = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    write_svhn_mat(tmp_path / "train_32x32.mat", train, np.array([0, 1, 2, 9, 0, 5]))
    write_svhn_mat(tmp_path / "test_32x32.mat", test, np.array([3, 0, 7]))

    train_images, train_labels, test_images, test_labels = read_svhn(tmp_path)

    np.testing.assert_array_equal(train_images, train)
    np.testing.assert_array_equal(test_images, test)
    assert train_labels.tolist() == [0, 1, 2, 9, 0, 5]
    assert test_labels.tolist() == [3, 0, 7]
    assert train_images.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("bad_label", [0, 11])
def test_read_svhn_rejects_labels_outside_1_to_10(tmp_path: Path, bad_label: int) -> None:
    images = np.zeros((32, 32, 3, 2), np.uint8)
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": images, "y": np.array([[1], [bad_label]])})
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": images, "y": np.array([[1], [2]])})

    with pytest.raises(DataError, match=r"train_32x32.mat: labels must lie in 1..10"):
        read_svhn(tmp_path)


def test_read_svhn_rejects_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"train_32x32.mat, test_32x32.mat not found"):
        read_svhn(tmp_path)

    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file at all")
    (tmp_path / "test_32x32.mat").write_bytes(b"")
    with pytest.raises(DataError, match=r"cannot read SVHN file .*train_32x32.mat"):
        read_svhn(tmp_path)


def test_read_svhn_rejects_count_mismatch(tmp_path: Path) -> None:
    images = np.zeros((32, 32, 3, 3), np.uint8)
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": images, "y": np.array([[1], [2]])})
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": images, "y": np.array([[1], [2], [3]])})

    with pytest.raises(DataError, match="3 images but 2 labels"):
        read_svhn(tmp_path)
