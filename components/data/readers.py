"""Pure readers of the standard on-disk dataset formats (MNIST IDX, CIFAR-10 pickles, SVHN .mat).

Each reader returns plain numpy arrays in the official order of the files and raises ``DataError`` naming the file
when it is missing or malformed. Nothing here knows about sample IDs or normalisation; ``datasets.py`` adds those.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from components.data.types import DataError

# IDX type codes (third magic byte) -> big-endian numpy dtype, as defined by the MNIST file-format description.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_SUBDIR = "cifar-10-batches-py"
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")

ArraySplits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def read_idx(path: str | Path) -> np.ndarray:
    """Read one MNIST-style IDX file, gzipped (``.gz`` suffix) or plain.

    Args:
        path: The IDX file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        The array with the shape from the header, in native byte order (uint8 for image and label files).

    Raises:
        DataError: The file is missing, is not valid gzip, or its header or size does not match the IDX format.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None

    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"malformed IDX file {path}: expected a magic number starting with two zero bytes")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise DataError(f"malformed IDX file {path}: unknown data type code 0x{type_code:02x}")
    if ndim == 0:
        raise DataError(f"malformed IDX file {path}: header declares zero dimensions")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"malformed IDX file {path}: truncated header ({len(raw)} bytes for {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = header_size + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"malformed IDX file {path}: header shape {dims} needs {expected} bytes, file has {len(raw)}")
    # astype copies into native byte order, so callers get a writable array that does not alias the file buffer.
    return np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(dims).astype(dtype.newbyteorder("="))


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else.

    The CIFAR batches are pickles, and a pickle can run arbitrary code on load; restricting the globals keeps a
    tampered file in ``--data-dir`` from doing more than failing to parse.
    """

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _cifar_field(batch: dict[Any, Any], key: str) -> Any:
    # The official batches were written by Python 2, so keys arrive as bytes or str depending on the encoding.
    if key in batch:
        return batch[key]
    return batch.get(key.encode())


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as handle:
            batch = _ArrayOnlyUnpickler(handle, encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 batch not found: {path}") from None
    except Exception as exc:  # pickle raises many unrelated types on corrupt input
        raise DataError(f"cannot read CIFAR-10 batch {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(batch, dict):
        raise DataError(f"malformed CIFAR-10 batch {path}: expected a dict with 'data' and 'labels'")
    data, labels = _cifar_field(batch, "data"), _cifar_field(batch, "labels")
    if data is None or labels is None:
        raise DataError(f"malformed CIFAR-10 batch {path}: expected keys 'data' and 'labels'")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"malformed CIFAR-10 batch {path}: expected uint8 data of shape (n, 3072), got {data.dtype} {data.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"malformed CIFAR-10 batch {path}: {len(data)} images but labels of shape {labels.shape}")
    # Rows are stored channel-major (1024 R, 1024 G, 1024 B), so a plain reshape gives (n, 3, 32, 32).
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar10(directory: str | Path) -> ArraySplits:
    """Read CIFAR-10 from the python pickle batches (``data_batch_1`` .. ``data_batch_5`` and ``test_batch``).

    Args:
        directory: Folder holding the batches, or the folder holding the extracted ``cifar-10-batches-py/``.

    Returns:
        ``(train_images, train_labels, test_images, test_labels)``; images uint8 ``(n, 3, 32, 32)``, labels int64,
        train batches concatenated in order 1..5.

    Raises:
        DataError: A batch is missing or malformed.
    """
    directory = Path(directory)
    if (directory / CIFAR10_SUBDIR).is_dir():
        directory = directory / CIFAR10_SUBDIR
    names = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 batches {', '.join(missing)} not found in {directory}; extract cifar-10-python.tar.gz there "
            f"(it holds {CIFAR10_SUBDIR}/ with data_batch_1..5 and test_batch)"
        )
    train = [_read_cifar_batch(directory / name) for name in CIFAR10_TRAIN_BATCHES]
    test_images, test_labels = _read_cifar_batch(directory / CIFAR10_TEST_BATCH)
    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    return train_images, train_labels, test_images, test_labels


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        mat = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise DataError(f"SVHN file not found: {path}") from None
    except Exception as exc:  # scipy raises ValueError, TypeError or MatReadError depending on the damage
        raise DataError(f"cannot read SVHN file {path}: {type(exc).__name__}: {exc}") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"malformed SVHN file {path}: expected variables 'X' and 'y'")
    images, labels = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DataError(f"malformed SVHN file {path}: expected uint8 X of shape (32, 32, 3, n), got {images.shape}")
    if len(labels) != images.shape[3]:
        raise DataError(f"malformed SVHN file {path}: {images.shape[3]} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"malformed SVHN file {path}: labels must lie in 1..10 (10 stands for digit 0)")
    labels = labels.astype(np.int64)
    # SVHN stores digit 0 as class 10; map it back so the class index equals the digit.
    labels[labels == 10] = 0
    # (H, W, C, n) -> (n, C, H, W); ascontiguousarray so later slicing and torch.as_tensor avoid strided copies.
    return np.ascontiguousarray(images.transpose(3, 2, 0, 1)), labels


def read_svhn(directory: str | Path) -> ArraySplits:
    """Read SVHN (cropped digits, format 2) from ``train_32x32.mat`` and ``test_32x32.mat``.

    Args:
        directory: Folder holding both ``.mat`` files.

    Returns:
        ``(train_images, train_labels, test_images, test_labels)``; images uint8 ``(n, 3, 32, 32)``, labels int64
        in 0..9 (the file's label 10 is digit 0).

    Raises:
        DataError: A file is missing or malformed.
    """
    directory = Path(directory)
    missing = [name for name in SVHN_FILES if not (directory / name).is_file()]
    if missing:
        raise DataError(
            f"SVHN files {', '.join(missing)} not found in {directory}; expected {' and '.join(SVHN_FILES)} "
            "(cropped digits, format 2)"
        )
    train_images, train_labels = _read_svhn_mat(directory / SVHN_FILES[0])
    test_images, test_labels = _read_svhn_mat(directory / SVHN_FILES[1])
    return train_images, train_labels, test_images, test_labels
