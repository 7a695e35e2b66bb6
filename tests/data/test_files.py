"""Datasets from a user's files: ``idx:FOLDER`` and ``npz:FILE`` — loaded as written, any
input size and number of classes, refused in one line when malformed, and trainable, the
CIFAR-100 last-layer shape (2,048 features + bias → 100 classes) included."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from hil.app.training import Trainer
from hil.core.errors import ConfigError, HilError
from hil.data import cifar, get_dataset
from hil.data.files import IDX_FILES
from hil.data.idx import encode_idx
from hil.nn.config import TrainConfig


def _idx_folder(folder: Path, shape=(12, 9), classes=5, n=(300, 100), gz=True) -> dict:
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (n[0], *shape), dtype=np.uint8),
        "train_labels": rng.integers(0, classes, n[0], dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n[1], *shape), dtype=np.uint8),
        "test_labels": rng.integers(0, classes, n[1], dtype=np.uint8),
    }
    folder.mkdir(exist_ok=True)
    for role, stem in IDX_FILES.items():
        data = encode_idx(arrays[role])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


def test_an_idx_folder_of_any_image_size_and_classes_loads_as_written(tmp_path):
    arrays = _idx_folder(tmp_path / "f", shape=(12, 9), classes=5)
    data = get_dataset(f"idx:{tmp_path / 'f'}")
    assert data.image_shape == (12, 9) and data.n_pixels == 108
    np.testing.assert_array_equal(data.train_images, arrays["train_images"].reshape(300, -1))
    np.testing.assert_array_equal(data.test_labels, arrays["test_labels"])
    assert data.n_classes == int(max(arrays["train_labels"].max(), arrays["test_labels"].max())) + 1
    np.testing.assert_allclose(
        data.float_images("test", 3), arrays["test_images"][:3].reshape(3, -1) / 255, rtol=1e-6
    )
    _idx_folder(tmp_path / "plain", gz=False)  # uncompressed files too
    assert get_dataset(f"idx:{tmp_path / 'plain'}").n_train == 300


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _separable(n: int, features: int, classes: int, seed: int):
    """Features in [-1, 1] whose class is the largest of ``classes`` random projections."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-0.6, 0.6, (classes, features)).astype(np.float32)
    y = rng.integers(0, classes, n)
    x = np.clip(centres[y] + rng.normal(0, 0.3, (n, features)), -1, 1).astype(np.float32)
    return x, y


def test_npz_float_features_are_used_as_stored_and_uint8_scaled(tmp_path):
    x, y = _separable(200, 30, 7, 0)
    path = _npz(tmp_path / "f.npz", x_train=x, y_train=y, x_test=x[:50], y_test=y[:50], n_classes=9)
    data = get_dataset(f"npz:{path}")
    assert (data.n_pixels, data.n_classes, data.n_train, data.n_test) == (30, 9, 200, 50)
    np.testing.assert_array_equal(data.float_images("train"), x)
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = _npz(tmp_path / "u.npz", x_train=pixels, y_train=[0, 1], x_test=pixels, y_test=[1, 0])
    data = get_dataset(f"npz:{path}")
    assert data.n_pixels == 12 and data.n_classes == 2
    np.testing.assert_allclose(data.float_images("test"), pixels.reshape(2, 12) / 255, rtol=1e-6)


@pytest.mark.parametrize(
    "change, names",
    [
        ({"x_test": None}, "no x_test"),
        ({"x_train": np.full((4, 3), 2.0)}, "|x| = 2"),
        ({"x_train": np.full((4, 3), np.nan)}, "NaN"),
        ({"x_train": np.zeros((4, 3), dtype=np.int32)}, "uint8 or float"),
        ({"y_train": np.array([0, 1, 2])}, "4 train images but 3 train labels"),
        ({"y_train": np.array([0, -1, 1, 0])}, ">= 0"),
        ({"y_train": np.array([0.0, 1, 1, 0])}, "integers"),
        ({"n_classes": 1}, "n_classes must cover"),
        ({"x_train": np.array([None] * 12, dtype=object).reshape(4, 3)}, "pickle"),
    ],
)
def test_a_malformed_npz_is_one_line_naming_the_file(tmp_path, change, names):
    arrays = {
        "x_train": np.zeros((4, 3), np.float32),
        "y_train": np.array([0, 1, 1, 0]),
        "x_test": np.zeros((2, 3), np.float32),
        "y_test": np.array([1, 0]),
    }
    arrays.update(change)
    path = _npz(tmp_path / "bad.npz", **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(HilError) as caught:
        get_dataset(f"npz:{path}")
    message = str(caught.value)
    assert names in message and str(path) in message and "\n" not in message


def test_missing_files_and_unknown_kinds_are_one_line(tmp_path):
    with pytest.raises(HilError, match="t10k-labels-idx1-ubyte"):
        _idx_folder(tmp_path / "f")
        (tmp_path / "f" / "t10k-labels-idx1-ubyte.gz").unlink()
        get_dataset(f"idx:{tmp_path / 'f'}")
    with pytest.raises(HilError, match="is not a file"):
        get_dataset(f"npz:{tmp_path / 'none.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(HilError, match="cannot read it"):
        get_dataset(f"npz:{tmp_path / 'junk.npz'}")
    with pytest.raises(ConfigError, match="npz:FILE"):
        get_dataset("cifar11")


def test_layers_must_match_the_files_inputs_and_classes(tmp_path):
    x, y = _separable(100, 20, 4, 0)
    path = _npz(tmp_path / "f.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    data = get_dataset(f"npz:{path}")
    for layers, field in (((784, 10), "784"), ((20, 10), "10 neurons")):
        cfg = TrainConfig(cell="fp", layers=layers, dataset=f"npz:{path}", epochs=1)
        with pytest.raises(ConfigError, match=field):
            Trainer(cfg, data, tmp_path / "r.h5", progress=False)


@pytest.mark.parametrize("cell", ["fp", "2pcm3t1c"])
def test_the_cifar100_last_layer_shape_trains_on_generated_features(tmp_path, cell):
    # 2,048 features + bias → 100 classes: 204,900 synapses (Ambrogio 2018, CIFAR-100)
    x, y = _separable(3000, 2048, 100, 0)
    xt, yt = _separable(1000, 2048, 100, 0)  # the same centres: the same classes
    path = _npz(tmp_path / "cifar100_features.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    cfg = TrainConfig(
        cell=cell,
        layers=(2048, 100),
        dataset=f"npz:{path}",
        epochs=1,
        transfer_interval=1000,
        learning_rate=0.01,
    )
    summary = Trainer(cfg, get_dataset(cfg.dataset), tmp_path / "r.h5", progress=False).run()
    # chance is 1 %; 1,000 test images give a binomial σ of < 1.6 pp at any accuracy
    assert summary["test_accuracy"][-1] > 0.5


# -- CIFAR, binary version ------------------------------------------------------------------
def _cifar_archive(tmp_path: Path, kind: str, n=(20, 10), bad_label=False) -> tuple[Path, dict]:
    """An archive laid out as the dataset page's binary version, with few records."""
    import io  # noqa: PLC0415 - only the CIFAR tests build archives
    import tarfile  # noqa: PLC0415

    version = cifar.CIFAR[kind]
    rng = np.random.default_rng(3)
    files, expected = {}, {"train": [], "test": []}
    for split, names in (("train", version.train), ("test", version.test)):
        for name in names:
            pixels = rng.integers(0, 256, (n[split == "test"], cifar.PIXELS), dtype=np.uint8)
            labels = rng.integers(0, version.n_classes, (len(pixels), version.label_bytes))
            if bad_label:
                labels[0, -1] = version.n_classes
            files[name] = np.hstack([labels.astype(np.uint8), pixels]).tobytes()
            expected[split].append((pixels, labels[:, -1]))
    archive = tmp_path / version.archive
    with tarfile.open(archive, "w:gz") as tar:
        for name, raw in [("../evil.bin", b"x"), *files.items()]:
            info = tarfile.TarInfo(f"{version.folder}/{name}" if "/" not in name else name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return archive, expected


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_a_cifar_archive_is_checksummed_and_read_without_unpacking(tmp_path, monkeypatch, kind):
    import dataclasses as dc  # noqa: PLC0415
    import hashlib  # noqa: PLC0415

    archive, expected = _cifar_archive(tmp_path, kind)
    with pytest.raises(HilError, match="MD5"):  # not the page's archive: refused
        get_dataset(f"{kind}:{archive}")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    version = dc.replace(cifar.CIFAR[kind], md5=md5)
    monkeypatch.setitem(cifar.CIFAR, kind, version)
    data = get_dataset(f"{kind}:{archive}")
    assert data.image_shape == (96, 32) and data.n_classes == version.n_classes
    for split in ("train", "test"):
        pixels = np.concatenate([p for p, _ in expected[split]])
        labels = np.concatenate([y for _, y in expected[split]])
        np.testing.assert_array_equal(getattr(data, f"{split}_images"), pixels)
        np.testing.assert_array_equal(getattr(data, f"{split}_labels"), labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]  # nothing unpacked


def test_an_unpacked_cifar_folder_is_checked_record_by_record(tmp_path):
    import tarfile  # noqa: PLC0415

    archive, expected = _cifar_archive(tmp_path, "cifar100")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data", members=tar.getmembers()[1:])
    data = get_dataset(f"cifar100:{tmp_path / 'x'}")
    np.testing.assert_array_equal(data.test_labels, expected["test"][0][1])
    folder = tmp_path / "x" / "cifar-100-binary"
    with (folder / "test.bin").open("ab") as f:
        f.write(b"\0")  # a torn record
    cifar.clear_cifar_cache()
    with pytest.raises(HilError, match="not a whole number of 3074-byte records"):
        get_dataset(f"cifar100:{tmp_path / 'x'}")
    (tmp_path / "b").mkdir()
    bad, _ = _cifar_archive(tmp_path / "b", "cifar100", bad_label=True)
    with tarfile.open(bad) as tar:
        tar.extractall(tmp_path / "y", filter="data", members=tar.getmembers()[1:])
    with pytest.raises(HilError, match="label 100"):
        get_dataset(f"cifar100:{tmp_path / 'y'}")
    with pytest.raises(HilError, match="cifar.html"):
        get_dataset(f"cifar10:{tmp_path / 'nowhere'}")
