"""Dataset registry: each name maps to a loader that returns a validated ``DatasetBundle`` with stable IDs.

Sample IDs are ``<dataset>/<train|test>/<index>``, the index being the 5-digit position in the official file order.
They depend on nothing else (no seed, no shuffling), so a forget manifest written today names the same images
tomorrow.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from components.data.readers import read_cifar10, read_idx, read_svhn
from components.data.types import DataError, DatasetBundle, ImageSet

DatasetLoader = Callable[[Path | None], DatasetBundle]

DATASETS: dict[str, DatasetLoader] = {}

# Where the Debian package dataset-fashion-mnist installs the four IDX files.
FASHION_MNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")

# MNIST and Fashion-MNIST share these file stems; each may also end in .gz.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Fixed rule for the bundled digits set, which ships without an official split: every fifth sample is test.
DIGITS_TEST_EVERY = 5


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Register a loader under ``name``.

    Args:
        name: The dataset name used on the command line and as the first part of every sample ID.

    Returns:
        A decorator that stores the loader in ``DATASETS`` and returns it unchanged.
    """

    def decorator(loader: DatasetLoader) -> DatasetLoader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        DATASETS[name] = loader
        return loader

    return decorator


def dataset_names() -> list[str]:
    """Return the registered dataset names, sorted."""
    return sorted(DATASETS)


def load_dataset(name: str, data_dir: str | Path | None = None) -> DatasetBundle:
    """Load a registered dataset.

    Args:
        name: A registered name (see ``dataset_names()``).
        data_dir: Folder with the dataset's files; ``None`` uses the dataset's default location, if it has one.

    Returns:
        The validated bundle with official train and test splits.

    Raises:
        DataError: Unknown name, or files missing or malformed.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names())}")
    return DATASETS[name](None if data_dir is None else Path(data_dir))


def make_ids(dataset: str, split: str, n: int) -> np.ndarray:
    """Return the stable IDs ``<dataset>/<split>/<index:05d>`` for ``n`` samples in official order."""
    return np.array([f"{dataset}/{split}/{i:05d}" for i in range(n)])


def _image_set(dataset: str, split: str, images: np.ndarray, labels: np.ndarray, num_classes: int) -> ImageSet:
    """Validate one split's arrays and attach IDs."""
    if images.ndim != 4 or images.dtype != np.uint8:
        raise DataError(
            f"{dataset} {split}: expected uint8 images of shape (n, C, H, W), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{dataset} {split}: {len(images)} images but labels of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{dataset} {split}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}"
        )
    return ImageSet(ids=make_ids(dataset, split, len(images)), images=images, labels=labels.astype(np.int64))


def _bundle(
    name: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    default_model: str,
) -> DatasetBundle:
    train_images, train_labels, test_images, test_labels = arrays
    return DatasetBundle(
        name=name,
        train=_image_set(name, "train", train_images, train_labels, num_classes),
        test=_image_set(name, "test", test_images, test_labels, num_classes),
        num_classes=num_classes,
        mean=mean,
        std=std,
        default_model=default_model,
    )


def _require_dir(name: str, data_dir: Path | None, expected: str) -> Path:
    # Datasets without a default location must be given one; say which files the folder needs.
    if data_dir is None:
        raise DataError(f"{name} has no default location; pass --data-dir pointing at a folder with {expected}")
    return data_dir


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_dataset(name: str, directory: Path, how_to_get: str) -> tuple[np.ndarray, ...]:
    """Read the four MNIST-style IDX files from ``directory``; images become ``(n, 1, H, W)``."""
    if not directory.is_dir():
        raise DataError(f"{name}: folder {directory} does not exist; {how_to_get}")
    found = {key: _find_idx(directory, stem) for key, stem in IDX_FILES.items()}
    missing = [f"{IDX_FILES[key]}[.gz]" for key, path in found.items() if path is None]
    if missing:
        raise DataError(f"{name}: missing {', '.join(missing)} in {directory}; {how_to_get}")
    arrays = {key: read_idx(path) for key, path in found.items() if path is not None}
    for key in ("train_images", "test_images"):
        if arrays[key].ndim != 3:
            raise DataError(f"{name}: {found[key]} holds shape {arrays[key].shape}, expected (n, rows, cols) images")
        arrays[key] = arrays[key][:, None]
    return arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"]


@register_dataset("digits")
def load_digits_dataset(data_dir: Path | None = None) -> DatasetBundle:
    """Scikit-learn's bundled 8x8 digits (1,797 images, offline); ``data_dir`` is ignored.

    Pixels 0..16 are scaled to 0..255 (rounded). Sample ``i`` is test when ``i % 5 == 4``, train otherwise.
    """
    from sklearn.datasets import load_digits  # sklearn is slow to import; only this loader needs it

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    is_test = np.arange(len(labels)) % DIGITS_TEST_EVERY == DIGITS_TEST_EVERY - 1
    arrays = (images[~is_test], labels[~is_test], images[is_test], labels[is_test])
    # Mean/std of the train split's scaled pixels, computed once from the arrays above.
    return _bundle("digits", arrays, num_classes=10, mean=(0.3059,), std=(0.3763,), default_model="small_cnn")


@register_dataset("fashion_mnist")
def load_fashion_mnist(data_dir: Path | None = None) -> DatasetBundle:
    """Fashion-MNIST from IDX files in ``data_dir``, or from the Debian package's folder when ``data_dir`` is None."""
    directory = FASHION_MNIST_DEFAULT_DIR if data_dir is None else data_dir
    how_to_get = (
        f"run `apt-get install dataset-fashion-mnist` (installs to {FASHION_MNIST_DEFAULT_DIR}) or pass --data-dir"
    )
    arrays = _read_idx_dataset("fashion_mnist", directory, how_to_get)
    return _bundle("fashion_mnist", arrays, num_classes=10, mean=(0.2860,), std=(0.3530,), default_model="small_cnn")


@register_dataset("mnist")
def load_mnist(data_dir: Path | None = None) -> DatasetBundle:
    """MNIST from the four IDX files in ``data_dir`` (no default location)."""
    expected = "the four MNIST IDX files (" + ", ".join(f"{stem}[.gz]" for stem in IDX_FILES.values()) + ")"
    directory = _require_dir("mnist", data_dir, expected)
    arrays = _read_idx_dataset("mnist", directory, f"pass --data-dir pointing at a folder with {expected}")
    return _bundle("mnist", arrays, num_classes=10, mean=(0.1307,), std=(0.3081,), default_model="small_cnn")


@register_dataset("cifar10")
def load_cifar10(data_dir: Path | None = None) -> DatasetBundle:
    """CIFAR-10 from the python pickle batches in ``data_dir`` (no default location)."""
    directory = _require_dir("cifar10", data_dir, "the extracted cifar-10-batches-py/ (data_batch_1..5, test_batch)")
    return _bundle(
        "cifar10",
        read_cifar10(directory),
        num_classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        default_model="resnet18",
    )


@register_dataset("svhn")
def load_svhn(data_dir: Path | None = None) -> DatasetBundle:
    """SVHN (cropped digits) from ``train_32x32.mat`` and ``test_32x32.mat`` in ``data_dir`` (no default location)."""
    directory = _require_dir("svhn", data_dir, "train_32x32.mat and test_32x32.mat")
    return _bundle(
        "svhn",
        read_svhn(directory),
        num_classes=10,
        mean=(0.4377, 0.4438, 0.4728),
        std=(0.1980, 0.2010, 0.1970),
        default_model="resnet18",
    )
