"""Dataset registry: every loader read back from tiny files in its real on-disk format, plus the bundled digits."""

from __future__ import annotations

import gzip
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from components.data import datasets
from components.data.datasets import DATASETS, dataset_names, load_dataset, register_dataset
from components.data.types import DataError, DatasetBundle

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def write_mnist_like(directory: Path, *, gz: bool, n_train: int = 12, n_test: int = 5, max_label: int = 9) -> None:
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, size=(n_train, 28, 28)),
        np.arange(n_train) % (max_label + 1),
        rng.integers(0, 256, size=(n_test, 28, 28)),
        np.arange(n_test) % (max_label + 1),
    )
    for stem, array in zip(IDX_STEMS, arrays, strict=True):
        write_idx(directory / (stem + (".gz" if gz else "")), array)


@pytest.fixture(scope="module")
def digits() -> DatasetBundle:
    return load_dataset("digits")


def test_registry_lists_all_datasets_and_rejects_unknown_names() -> None:
    assert {"digits", "fashion_mnist", "mnist", "cifar10", "svhn"} <= set(dataset_names())
    assert dataset_names() == sorted(dataset_names())

    with pytest.raises(DataError, match=r"unknown dataset 'imagenet'; known datasets: cifar10, digits, fashion_mnist"):
        load_dataset("imagenet")


def test_register_dataset_adds_a_loader_and_refuses_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "DATASETS", dict(DATASETS))
    seen: list[Path | None] = []

    @register_dataset("toy")
    def load_toy(data_dir: Path | None) -> DatasetBundle:
        seen.append(data_dir)
        return datasets.load_digits_dataset()

    assert load_dataset("toy", "some/dir").name == "digits"
    assert seen == [Path("some/dir")]
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("toy")(load_toy)


def test_digits_follows_the_fixed_split_rule(digits: DatasetBundle) -> None:
    from sklearn.datasets import load_digits

    raw = load_digits()
    assert (len(digits.train), len(digits.test)) == (1438, 359)
    assert digits.image_shape == (1, 8, 8)
    assert digits.train.images.dtype == np.uint8
    assert digits.train.images.max() == 255
    # Test sample 0 is raw sample 4 (i % 5 == 4); train sample 4 is raw sample 5.
    np.testing.assert_array_equal(digits.test.images[0, 0], np.rint(raw.images[4] * 255 / 16).astype(np.uint8))
    np.testing.assert_array_equal(digits.train.images[4, 0], np.rint(raw.images[5] * 255 / 16).astype(np.uint8))
    assert digits.test.labels[0] == raw.target[4]
    assert (digits.num_classes, digits.default_model) == (10, "small_cnn")


def test_digits_ids_are_unique_well_formed_and_stable(digits: DatasetBundle) -> None:
    again = load_dataset("digits")
    all_ids = np.concatenate([digits.train.ids, digits.test.ids]).tolist()

    assert len(set(all_ids)) == len(all_ids)
    assert all(re.fullmatch(r"digits/(train|test)/\d{5}", i) for i in all_ids)
    assert digits.train.ids[123] == "digits/train/00123"
    np.testing.assert_array_equal(again.train.ids, digits.train.ids)
    np.testing.assert_array_equal(again.train.images, digits.train.images)


def test_digits_normalisation_constants_match_its_train_pixels(digits: DatasetBundle) -> None:
    pixels = digits.train.images / 255.0

    assert digits.mean == (round(float(pixels.mean()), 4),)
    assert digits.std == (round(float(pixels.std()), 4),)
    normalised = digits.to_tensor(digits.train.images)
    assert abs(float(normalised.mean())) < 1e-3
    assert abs(float(normalised.std()) - 1) < 1e-3


@pytest.mark.parametrize(
    ("name", "gz", "mean", "std"), [("fashion_mnist", True, 0.2860, 0.3530), ("mnist", False, 0.1307, 0.3081)]
)
def test_idx_datasets_load_from_data_dir(tmp_path: Path, name: str, gz: bool, mean: float, std: float) -> None:
    write_mnist_like(tmp_path, gz=gz)

    bundle = load_dataset(name, tmp_path)

    assert bundle.train.images.shape == (12, 1, 28, 28)
    assert bundle.test.images.shape == (5, 1, 28, 28)
    assert bundle.train.labels.dtype == np.int64
    assert bundle.train.labels.tolist() == [i % 10 for i in range(12)]
    assert bundle.test.ids.tolist()[-1] == f"{name}/test/00004"
    assert (bundle.mean, bundle.std, bundle.default_model) == ((mean,), (std,), "small_cnn")


def test_idx_datasets_accept_plain_and_gz_files_mixed(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").rename(tmp_path / "tmp")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(5, 7))

    assert load_dataset("mnist", tmp_path).test.labels.tolist() == [7] * 5


def test_fashion_mnist_missing_files_explain_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist_like(tmp_path, gz=True)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing t10k-images-idx3-ubyte\[\.gz\] in .*apt-get install dataset-fashion"):
        load_dataset("fashion_mnist", tmp_path)

    monkeypatch.setattr(datasets, "FASHION_MNIST_DEFAULT_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match=r"folder .*absent does not exist; run `apt-get install dataset-fashion-mnist`"):
        load_dataset("fashion_mnist")


def test_mnist_needs_a_data_dir() -> None:
    with pytest.raises(DataError, match=r"mnist has no default location; pass --data-dir .*train-images-idx3-ubyte"):
        load_dataset("mnist")


def test_idx_dataset_rejects_out_of_range_labels(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, gz=True, max_label=10)

    with pytest.raises(DataError, match=r"mnist train: labels must lie in 0..9, found 0..10"):
        load_dataset("mnist", tmp_path)


def test_idx_dataset_rejects_image_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(11))

    with pytest.raises(DataError, match="mnist train: 12 images but labels of shape \\(11,\\)"):
        load_dataset("mnist", tmp_path)


def test_idx_dataset_rejects_images_without_rows_and_cols(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, gz=True)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((12, 784)))

    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte.gz holds shape \(12, 784\), expected \(n, rows, cols\)"
    ):
        load_dataset("mnist", tmp_path)


def test_cifar10_loads_from_pickle_batches(tmp_path: Path) -> None:
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    rng = np.random.default_rng(3)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        with (batches / name).open("wb") as handle:
            data = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
            pickle.dump({b"data": data, b"labels": [0, 4, 9]}, handle)

    bundle = load_dataset("cifar10", tmp_path)

    assert bundle.train.images.shape == (15, 3, 32, 32)
    assert bundle.test.images.shape == (3, 3, 32, 32)
    assert bundle.train.ids[14] == "cifar10/train/00014"
    assert bundle.mean == (0.4914, 0.4822, 0.4465)
    assert bundle.std == (0.2470, 0.2435, 0.2616)
    assert bundle.default_model == "resnet18"
    assert bundle.to_tensor(bundle.test.images).shape == (3, 3, 32, 32)


def test_cifar10_rejects_out_of_range_labels(tmp_path: Path) -> None:
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        with (tmp_path / name).open("wb") as handle:
            pickle.dump(
                {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10 if name == "test_batch" else 1]}, handle
            )

    with pytest.raises(DataError, match=r"cifar10 test: labels must lie in 0..9"):
        load_dataset("cifar10", tmp_path)


def test_svhn_loads_from_mat_files(tmp_path: Path) -> None:
    for name, n in (("train_32x32.mat", 7), ("test_32x32.mat", 4)):
        labels = np.arange(1, n + 1)[:, None] % 10 + 1  # 1..10, so digit 0 appears as 10
        scipy.io.savemat(tmp_path / name, {"X": np.zeros((32, 32, 3, n), np.uint8), "y": labels})

    bundle = load_dataset("svhn", tmp_path)

    assert bundle.train.images.shape == (7, 3, 32, 32)
    assert bundle.train.labels.tolist() == [2, 3, 4, 5, 6, 7, 8]
    assert bundle.test.labels.tolist() == [2, 3, 4, 5]
    assert bundle.test.ids[0] == "svhn/test/00000"
    assert (bundle.mean, bundle.std) == ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))


@pytest.mark.parametrize(("name", "needs"), [("cifar10", "cifar-10-batches-py"), ("svhn", "train_32x32.mat")])
def test_datasets_without_default_location_need_a_data_dir(name: str, needs: str) -> None:
    with pytest.raises(DataError, match=rf"{name} has no default location; pass --data-dir .*{needs}"):
        load_dataset(name)


@pytest.mark.skipif(
    not datasets.FASHION_MNIST_DEFAULT_DIR.is_dir(),
    reason=f"real Fashion-MNIST not installed at {datasets.FASHION_MNIST_DEFAULT_DIR} "
    "(apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_from_the_debian_package() -> None:
    bundle = load_dataset("fashion_mnist")

    assert (len(bundle.train), len(bundle.test)) == (60000, 10000)
    assert bundle.image_shape == (1, 28, 28)
    assert np.bincount(bundle.train.labels).tolist() == [6000] * 10
    assert np.bincount(bundle.test.labels).tolist() == [1000] * 10
    assert abs(bundle.train.images.mean() / 255 - bundle.mean[0]) < 1e-4
