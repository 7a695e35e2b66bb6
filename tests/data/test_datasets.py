"""Datasets: real MNIST, the look-up order, checksums, the IDX parser, downloads, backrand.

Nothing here touches the network: an autouse fixture sets ``HIL_NO_DOWNLOAD=1``, empties the
default mirror list and points the user cache at a temporary folder; the download path is
exercised against a local HTTP server bound to 127.0.0.1 and against ``file://`` URLs.
The real MNIST is found through ``HIL_DATA_DIR`` (CI sets it to the shared datasets folder).
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from hil.core.errors import ConfigError, HilError
from hil.data import (
    MNIST_FILES,
    Dataset,
    DatasetCorruptError,
    DatasetNotFoundError,
    IdxFormatError,
    clear_cache,
    encode_idx,
    find_mnist,
    get_dataset,
    load_mnist,
    load_mnist_backrand,
    mnist_cache_dir,
    parse_idx,
    read_idx,
)
from hil.data import mnist as mnist_module

# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


# Read once at import: the autouse fixture below unsets it so that the look-up tests start
# from a clean environment; the real-MNIST tests pass the folder explicitly.
_REAL_DATA_DIR = os.environ.get("HIL_DATA_DIR", "")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch, tmp_path):
    """Forbid downloads three ways, keep the real user cache out of reach, unset HIL_DATA_DIR."""
    monkeypatch.setenv("HIL_NO_DOWNLOAD", "1")
    monkeypatch.delenv("HIL_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(mnist_module, "MNIST_MIRRORS", ())


@pytest.fixture(scope="module")
def real_dir() -> Path:
    """The folder of the real MNIST under $HIL_DATA_DIR, or skip."""
    env = _REAL_DATA_DIR
    if not env:
        pytest.skip(
            "real MNIST not found: HIL_DATA_DIR is not set (CI sets it to the shared "
            "datasets folder, e.g. ../shared/datasets)"
        )
    for folder in (Path(env) / "mnist", Path(env)):
        if all((folder / name).is_file() for name in MNIST_FILES.values()):
            return folder
    pytest.skip(f"real MNIST not found: no folder with the four MNIST files in {env}[/mnist]")


def write_fake_mnist(folder: Path, n_train: int = 30, n_test: int = 12, seed: int = 0):
    """Write four small gzip'd IDX files of MNIST layout; returns (arrays, MD5 table)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(1, 256, size=(n, 28, 28), dtype=np.uint8)
        images[rng.random(images.shape) < 0.8] = 0  # mostly background, as in MNIST
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = (np.arange(n) % 10).astype(np.uint8)
    table = {}
    for role, name in MNIST_FILES.items():
        data = gzip.compress(encode_idx(arrays[role]), mtime=0)
        (folder / name).write_bytes(data)
        table[name] = hashlib.md5(data).hexdigest()
    return arrays, table


def write_wrong_files(folder: Path) -> None:
    """Files with the MNIST names whose content (hence MD5) is wrong: a bad mirror."""
    folder.mkdir(parents=True)
    for name in MNIST_FILES.values():
        (folder / name).write_bytes(b"not the file you are looking for")


def idx_header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


# --------------------------------------------------------------------------------------------
# Real MNIST
# --------------------------------------------------------------------------------------------


def test_real_mnist_shapes_labels_and_pixels(real_dir):
    ds = load_mnist(real_dir, download=False)
    assert (ds.n_train, ds.n_test, ds.n_pixels) == (60000, 10000, 784)
    assert ds.train_images.shape == (60000, 784) and ds.test_images.shape == (10000, 784)
    for arr in (ds.train_images, ds.train_labels, ds.test_images, ds.test_labels):
        assert arr.dtype == np.uint8
        assert not arr.flags.writeable  # shared through the cache: must be read-only
    assert ds.train_labels[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first digits
    for counts, n in ((ds.class_counts("train"), 60000), (ds.class_counts("test"), 10000)):
        assert counts.sum() == n and len(counts) == 10
        assert counts.min() > 0.08 * n and counts.max() < 0.12 * n  # roughly balanced
    assert ds.train_images.min() == 0 and ds.train_images.max() == 255
    assert 30 < ds.train_images.mean() < 37  # MNIST's mean intensity is ~33.3
    x = ds.float_images("test")
    assert x.dtype == np.float32 and x.shape == (10000, 784)
    assert x.min() == 0.0 and x.max() == 1.0
    assert load_mnist(real_dir, download=False) is ds  # parsed once per process


def test_real_mnist_via_env_and_registry(real_dir, monkeypatch):
    monkeypatch.setenv("HIL_DATA_DIR", str(real_dir.parent))
    ds = get_dataset("MNIST")
    assert ds.source == str(real_dir.resolve())
    assert ds is load_mnist(real_dir)


def test_real_backrand_keeps_digits_and_randomises_background(real_dir):
    mnist = load_mnist(real_dir)
    br = load_mnist_backrand(real_dir)
    assert br.name == "mnist-backrand"
    assert (br.n_train, br.n_test) == (60000, 10000)
    np.testing.assert_array_equal(br.train_labels, mnist.train_labels)
    for a, b in ((mnist.train_images, br.train_images), (mnist.test_images, br.test_images)):
        digit = a != 0
        np.testing.assert_array_equal(b[digit], a[digit])
        noise = b[~digit]
        assert abs(noise.mean() - 127.5) < 1.0
        assert abs((noise == 0).mean() - 1 / 256) < 1e-3  # uniform over 0..255
    assert load_mnist_backrand(real_dir) is br
    other = load_mnist_backrand(real_dir, seed=1)
    assert not np.array_equal(other.test_images, br.test_images)


def test_real_backrand_larochelle_sizes(real_dir):
    mnist = load_mnist(real_dir)
    br = load_mnist_backrand(real_dir, sizes="larochelle")
    assert (br.n_train, br.n_test) == (12000, 50000)
    labels = np.concatenate([mnist.train_labels, mnist.test_labels])
    np.testing.assert_array_equal(br.train_labels, labels[:12000])
    np.testing.assert_array_equal(br.test_labels, labels[12000:62000])


# --------------------------------------------------------------------------------------------
# Dataset helpers
# --------------------------------------------------------------------------------------------


def test_subset_first_and_seeded(tmp_path):
    arrays, table = write_fake_mnist(tmp_path / "m", n_train=40, n_test=20)
    ds = load_mnist(tmp_path / "m", checksums=table)
    sub = ds.subset(10, 5)
    assert (sub.n_train, sub.n_test) == (10, 5)
    assert np.shares_memory(sub.train_images, ds.train_images)  # a view, no copy
    np.testing.assert_array_equal(sub.train_images, arrays["train_images"][:10].reshape(10, -1))
    assert ds.subset(n_test=3).n_train == 40
    r1, r2 = ds.subset(10, 5, seed=3), ds.subset(10, 5, seed=3)
    np.testing.assert_array_equal(r1.train_images, r2.train_images)
    assert not np.array_equal(r1.train_labels, sub.train_labels)
    for bad in (-1, 41, 2.5, True):
        with pytest.raises(ConfigError, match="n_train"):
            ds.subset(bad)


def test_dataset_is_read_only_and_does_not_freeze_caller_arrays():
    x = np.zeros((3, 784), np.uint8)
    y = np.zeros(3, np.uint8)
    ds = Dataset("t", x, y, x[:1], y[:1])
    assert x.flags.writeable
    with pytest.raises(ValueError):
        ds.train_images[0, 0] = 1
    with pytest.raises(ConfigError, match="train_images"):
        Dataset("t", x.astype(np.float64), y, x, y)
    features = Dataset("t", x.astype(np.float32) - 0.5, y, x[:1], y[:1])  # features: as they are
    np.testing.assert_array_equal(features.float_images("train"), x - np.float32(0.5))


# --------------------------------------------------------------------------------------------
# Look-up order
# --------------------------------------------------------------------------------------------


def test_lookup_order(tmp_path, monkeypatch):
    explicit = tmp_path / "explicit"
    parent = tmp_path / "parent"
    env = tmp_path / "env"
    cache = mnist_cache_dir()
    assert cache == tmp_path / "xdg-cache" / "hil" / "mnist"
    tables = {}
    for n, folder in enumerate((explicit, parent / "mnist", env / "mnist", env, cache)):
        tables[folder] = write_fake_mnist(folder, n_train=10 + n)[1]
    monkeypatch.setenv("HIL_DATA_DIR", str(env))

    assert find_mnist(explicit) == explicit.resolve()  # 1. data_dir itself
    assert find_mnist(parent) == (parent / "mnist").resolve()  # 1b. data_dir/mnist
    ds = load_mnist(explicit, checksums=tables[explicit])
    assert ds.n_train == 10 and ds.source == str(explicit.resolve())

    assert find_mnist() == (env / "mnist").resolve()  # 2. $HIL_DATA_DIR/mnist
    (tmp_path / "empty").mkdir()
    assert find_mnist(tmp_path / "empty") == (env / "mnist").resolve()  # empty data_dir: go on
    with pytest.raises(DatasetNotFoundError, match="not a folder"):
        find_mnist(tmp_path / "missing")  # a data_dir that does not exist is an error
    for name in MNIST_FILES.values():
        (env / "mnist" / name).unlink()
    assert find_mnist() == env.resolve()  # 2b. $HIL_DATA_DIR itself
    assert load_mnist(checksums=tables[env]).n_train == 13

    monkeypatch.delenv("HIL_DATA_DIR")
    assert find_mnist() == cache.resolve()  # 3. user cache
    assert load_mnist(checksums=tables[cache]).n_train == 14

    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mnist_cache_dir() == tmp_path / "home" / ".cache" / "hil" / "mnist"


def test_nothing_found_lists_every_place(tmp_path, monkeypatch):
    data_dir = tmp_path / "nowhere"
    data_dir.mkdir()
    env = tmp_path / "env"
    write_fake_mnist(env)
    (env / MNIST_FILES["test_labels"]).unlink()  # an incomplete copy is not a copy
    monkeypatch.setenv("HIL_DATA_DIR", str(env))
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(data_dir)
    msg = str(info.value)
    for expected in (
        str(data_dir),
        str(data_dir / "mnist"),
        str(env / "mnist"),
        f"{env} (missing t10k-labels-idx1-ubyte.gz)",
        str(mnist_cache_dir()),
        "HIL_NO_DOWNLOAD=1",
        "--data-dir",
        "HIL_DATA_DIR=DIR",
    ):
        assert expected in msg
    assert isinstance(info.value, HilError)

    monkeypatch.delenv("HIL_NO_DOWNLOAD")
    monkeypatch.delenv("HIL_DATA_DIR")
    with pytest.raises(DatasetNotFoundError, match=r"download=False") as info:
        get_dataset("mnist", download=False)
    assert "$HIL_DATA_DIR: not set" in str(info.value)
    assert "data_dir (--data-dir): not set" in str(info.value)


def test_bad_no_download_value_is_a_config_error(monkeypatch):
    monkeypatch.setenv("HIL_NO_DOWNLOAD", "maybe")
    with pytest.raises(ConfigError, match="HIL_NO_DOWNLOAD"):
        find_mnist()


# --------------------------------------------------------------------------------------------
# Checksums and malformed files
# --------------------------------------------------------------------------------------------


def test_md5_mismatch_names_the_file(tmp_path):
    folder = tmp_path / "m"
    _, table = write_fake_mnist(folder)
    # Against the built-in table, fake files are simply not MNIST.
    with pytest.raises(DatasetCorruptError, match=r"train-images-idx3-ubyte\.gz: MD5"):
        load_mnist(folder)
    bad = dict(table, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.raises(DatasetCorruptError) as info:
        load_mnist(folder, checksums=bad)
    msg = str(info.value)
    assert str(folder / "t10k-labels-idx1-ubyte.gz") in msg and "delete it" in msg
    assert load_mnist(folder, checksums=None).n_train == 30  # verification can be skipped


def test_replaced_file_is_reparsed(tmp_path):
    folder = tmp_path / "m"
    _, table = write_fake_mnist(folder, n_train=30)
    assert load_mnist(folder, checksums=None).n_train == 30
    write_fake_mnist(folder, n_train=31)
    assert load_mnist(folder, checksums=None).n_train == 31


def test_truncated_gzip_is_a_clear_error(tmp_path):
    folder = tmp_path / "m"
    write_fake_mnist(folder)
    path = folder / MNIST_FILES["train_images"]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetCorruptError, match="not a valid gzip file") as info:
        load_mnist(folder, checksums=None)
    assert str(path) in str(info.value)


def test_garbage_idx_inside_gzip_names_the_file(tmp_path):
    folder = tmp_path / "m"
    write_fake_mnist(folder)
    path = folder / MNIST_FILES["test_labels"]
    path.write_bytes(gzip.compress(b"this is not an IDX file"))
    with pytest.raises(IdxFormatError, match="bad IDX magic") as info:
        load_mnist(folder, checksums=None)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00", "too short"),
        (b"\x1f\x8b\x08\x00", "gzip-compressed"),
        (idx_header(0x07, (2,)) + b"\x00\x00", "unknown IDX type code 0x07"),
        (bytes([0, 0, 8, 0]), "0 dimensions"),
        (bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x02", "declares 3 dimensions"),
        (idx_header(0x08, (2, 28, 28)) + bytes(1000), "truncated"),
        (idx_header(0x08, (3,)) + bytes(4), "followed by unexpected bytes"),
        (idx_header(0x0C, (2,)) + bytes(7), "truncated"),
    ],
)
def test_parse_idx_is_strict(data, match):
    with pytest.raises(IdxFormatError, match=match) as info:
        parse_idx(data, name="some/file.idx")
    assert "some/file.idx" in str(info.value)


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_idx_round_trip(tmp_path, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    if dtype == "u1":
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out = parse_idx(encode_idx(arr))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    path = tmp_path / "x.idx.gz"
    path.write_bytes(gzip.compress(encode_idx(arr)))
    np.testing.assert_array_equal(read_idx(path), arr)
    # Big-endian on disk, as the format prescribes.
    assert encode_idx(np.array([1], np.int32))[-4:] == b"\x00\x00\x00\x01"


def test_mnist_content_checks(tmp_path):
    folder = tmp_path / "m"
    arrays, _ = write_fake_mnist(folder)
    path = folder / MNIST_FILES["train_labels"]
    path.write_bytes(gzip.compress(encode_idx(arrays["train_labels"][:-1])))
    with pytest.raises(DatasetCorruptError, match="do not belong together"):
        load_mnist(folder, checksums=None)
    path.write_bytes(gzip.compress(encode_idx(arrays["train_labels"] + 1)))
    with pytest.raises(DatasetCorruptError, match=r"label 10 is outside 0\.\.9"):
        load_mnist(folder, checksums=None)
    path.write_bytes(gzip.compress(encode_idx(arrays["train_labels"])))
    path = folder / MNIST_FILES["test_images"]
    path.write_bytes(gzip.compress(encode_idx(np.zeros((12, 28, 27), np.uint8))))
    with pytest.raises(DatasetCorruptError, match="not an MNIST image file"):
        load_mnist(folder, checksums=None)


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


@pytest.fixture
def http_mirror(tmp_path, monkeypatch):
    """A static file server on 127.0.0.1 (ephemeral port) serving tmp_path/www.

    Yields (root folder, base URL, list of requested paths). A request under ``/hang/``
    gets no answer until teardown (at most 10 s), to test the client's timeout. The server
    is shut down at teardown, and a timer stops it after 30 s whatever happens to the test.
    """
    root = tmp_path / "www"
    root.mkdir()
    hits: list[str] = []
    release = threading.Event()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            hits.append(self.path)
            if self.path.startswith("/hang/"):
                release.wait(timeout=10.0)
                return
            super().do_GET()

        def log_message(self, *args):  # keep pytest output clean
            pass

    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    watchdog = threading.Timer(30.0, server.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        release.set()
        watchdog.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_from_local_server(http_mirror, tmp_path, monkeypatch):
    root, url, hits = http_mirror
    arrays, table = write_fake_mnist(root / "good", n_train=25)
    write_wrong_files(root / "wrong")
    mirrors = [f"{url}/absent/", f"{url}/wrong", f"{url}/good/"]
    cache = mnist_cache_dir()

    # The kill switch wins even over an explicit download=True: nothing is requested.
    with pytest.raises(DatasetNotFoundError, match="HIL_NO_DOWNLOAD"):
        load_mnist(download=True, mirrors=mirrors, checksums=table)
    assert hits == []

    monkeypatch.delenv("HIL_NO_DOWNLOAD")
    ds = load_mnist(mirrors=mirrors, checksums=table, timeout_s=5)
    assert ds.source == str(cache.resolve())
    np.testing.assert_array_equal(ds.train_images, arrays["train_images"].reshape(25, -1))
    np.testing.assert_array_equal(ds.test_labels, arrays["test_labels"])
    assert sorted(p.name for p in cache.iterdir()) == sorted(MNIST_FILES.values())  # no .part
    # Each file: 404 on the first mirror, MD5 mismatch on the second, success on the third.
    assert len(hits) == 3 * len(MNIST_FILES)

    # Found in the cache now: no further requests.
    load_mnist(mirrors=mirrors, checksums=table)
    assert len(hits) == 3 * len(MNIST_FILES)


def test_files_present_means_no_network(http_mirror, tmp_path, monkeypatch):
    root, url, hits = http_mirror
    _, table = write_fake_mnist(root / "good")
    write_fake_mnist(tmp_path / "local")
    monkeypatch.delenv("HIL_NO_DOWNLOAD")
    ds = load_mnist(tmp_path / "local", mirrors=[f"{url}/good/"], checksums=table)
    assert ds.source == str((tmp_path / "local").resolve()) and hits == []


def test_download_timeout_goes_on_to_the_next_mirror(http_mirror, monkeypatch):
    root, url, hits = http_mirror
    _, table = write_fake_mnist(root / "good", n_train=11)
    monkeypatch.delenv("HIL_NO_DOWNLOAD")
    ds = load_mnist(mirrors=[f"{url}/hang/", f"{url}/good/"], checksums=table, timeout_s=0.3)
    assert ds.n_train == 11
    assert sum(h.startswith("/hang/") for h in hits) == len(MNIST_FILES)
    # With the hanging mirror alone, each file fails with the timeout named.
    for name in MNIST_FILES.values():
        (mnist_cache_dir() / name).unlink()
    pattern = r"/hang/train-images-idx3-ubyte\.gz: .*timed out"
    with pytest.raises(DatasetNotFoundError, match=pattern):
        load_mnist(mirrors=[f"{url}/hang/"], checksums=table, timeout_s=0.3)


def test_download_failure_lists_each_mirror(http_mirror, monkeypatch):
    root, url, _ = http_mirror
    _, table = write_fake_mnist(root / "good")
    write_wrong_files(root / "wrong")
    mirrors = [f"{url}/absent/", f"{url}/wrong/"]
    monkeypatch.delenv("HIL_NO_DOWNLOAD")
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(mirrors=mirrors, checksums=table)
    msg = str(info.value)
    assert f"{url}/absent/train-images-idx3-ubyte.gz: 404 Client Error" in msg
    assert f"{url}/wrong/train-images-idx3-ubyte.gz: MD5" in msg
    assert not any(mnist_cache_dir().iterdir())  # nothing half-written left behind


def test_download_from_file_url(tmp_path, monkeypatch):
    monkeypatch.delenv("HIL_NO_DOWNLOAD")
    arrays, table = write_fake_mnist(tmp_path / "mirror", n_train=17)
    ds = get_dataset("mnist", mirrors=[(tmp_path / "mirror").as_uri()], checksums=table)
    assert ds.n_train == 17 and ds.source == str(mnist_cache_dir().resolve())


def test_download_without_mirrors_fails_cleanly(monkeypatch):
    monkeypatch.delenv("HIL_NO_DOWNLOAD")
    # The autouse fixture emptied the default mirrors: the safety net of this test module.
    with pytest.raises(DatasetNotFoundError, match="no download mirrors configured"):
        load_mnist(download=True)
    with pytest.raises(DatasetNotFoundError, match="without a checksum table"):
        load_mnist(mirrors=["file:///nonexistent/"], checksums=None)


# --------------------------------------------------------------------------------------------
# Backrand and the registry
# --------------------------------------------------------------------------------------------


def test_backrand_reproducible_and_background_only(tmp_path):
    folder = tmp_path / "m"
    arrays, table = write_fake_mnist(folder, n_train=50, n_test=20)
    first = load_mnist_backrand(folder, seed=5, checksums=table)
    clear_cache()  # force a fresh synthesis
    again = get_dataset("mnist_backrand", folder, seed=5, checksums=table)
    assert again is not first
    for split in ("train", "test"):
        a, b = getattr(first, f"{split}_images"), getattr(again, f"{split}_images")
        np.testing.assert_array_equal(a, b)
        digits = arrays[f"{split}_images"].reshape(a.shape)
        np.testing.assert_array_equal(a[digits != 0], digits[digits != 0])
        assert (a[digits == 0] != 0).mean() > 0.95  # background now noise
        np.testing.assert_array_equal(getattr(first, f"{split}_labels"), arrays[f"{split}_labels"])
    other = load_mnist_backrand(folder, seed=6, checksums=table)
    assert not np.array_equal(other.train_images, first.train_images)
    assert "seed 5" in first.source and "Larochelle" in first.source


def test_backrand_argument_errors(tmp_path):
    folder = tmp_path / "m"
    _, table = write_fake_mnist(folder)
    with pytest.raises(ConfigError, match="needs 62000 MNIST images"):
        load_mnist_backrand(folder, sizes="larochelle", checksums=table)
    with pytest.raises(ConfigError, match="sizes"):
        load_mnist_backrand(folder, sizes="big", checksums=table)
    with pytest.raises(ConfigError, match="seed"):
        load_mnist_backrand(folder, seed=-1, checksums=table)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ConfigError, match=r"unknown dataset 'cifar10'.*mnist, mnist-backrand"):
        get_dataset("cifar10")
