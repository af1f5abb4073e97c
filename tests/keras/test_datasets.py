"""fastconv.keras.datasets: Keras's return layout, the search order, file checks, the safe unpickler.

Small synthetic files (IDX, gzip, npz, CIFAR pickles) are written to tmp dirs; the real Fashion-MNIST
is checked when Debian's dataset-fashion-mnist is installed.
"""
import gzip
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from fastconv.keras.datasets import _files, _safe_pickle, cifar10, digits, fashion_mnist, mnist

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def data_env(tmp_path, monkeypatch):
    """$FASTCONV_DATA and $KERAS_HOME in tmp dirs, and no system directories."""
    data, keras_home = tmp_path / "data", tmp_path / "keras_home"
    data.mkdir()
    (keras_home / "datasets").mkdir(parents=True)
    monkeypatch.setenv("FASTCONV_DATA", str(data))
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setattr(_files, "SYSTEM_ROOTS", ())
    return data, keras_home / "datasets"


def idx_bytes(array, magic):
    array = np.asarray(array, dtype=np.uint8)
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def fake_images(n, seed, side=28):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, side, side), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_idx_set(directory, gz=True, n_train=7, n_test=3, seed=0, side=28):
    directory.mkdir(parents=True, exist_ok=True)
    (xa, ya), (xb, yb) = fake_images(n_train, seed, side), fake_images(n_test, seed + 1, side)
    for prefix, x, y in (("train", xa, ya), ("t10k", xb, yb)):
        for name, payload in ((f"{prefix}-images-idx3-ubyte", idx_bytes(x, 0x803)),
                              (f"{prefix}-labels-idx1-ubyte", idx_bytes(y, 0x801))):
            if gz:
                (directory / (name + ".gz")).write_bytes(gzip.compress(payload))
            else:
                (directory / name).write_bytes(payload)
    return (xa, ya), (xb, yb)


# ----------------------------------------------------------------------------- IDX / Fashion-MNIST

@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_fashion_mnist_reads_idx_files(data_env, gz):
    expected = write_idx_set(data_env[0] / "fashion-mnist", gz=gz)
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert x_train.dtype == y_train.dtype == x_test.dtype == y_test.dtype == np.uint8
    assert x_train.shape == (7, 28, 28) and y_train.shape == (7,)
    assert x_test.shape == (3, 28, 28) and y_test.shape == (3,)
    for got, want in zip((x_train, y_train, x_test, y_test), (*expected[0], *expected[1])):
        np.testing.assert_array_equal(got, want)


def test_fastconv_data_comes_before_keras_cache(data_env):
    data, keras_datasets = data_env
    write_idx_set(keras_datasets / "fashion-mnist", n_train=5, seed=10)
    (x_keras, _), _ = fashion_mnist.load_data()
    assert len(x_keras) == 5  # found in Keras's cache
    write_idx_set(data / "fashion-mnist", n_train=4, seed=20)
    (x_data, _), _ = fashion_mnist.load_data()
    assert len(x_data) == 4


def test_keras_home_defaults_to_home_dot_keras(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(_files, "SYSTEM_ROOTS", ())
    write_idx_set(tmp_path / ".keras" / "datasets" / "fashion-mnist", n_train=6)
    (x_train, _), _ = fashion_mnist.load_data()
    assert len(x_train) == 6


def test_missing_data_lists_expected_files_and_every_place(data_env):
    data, keras_datasets = data_env
    with pytest.raises(FileNotFoundError) as err:
        fashion_mnist.load_data()
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert str(data / "fashion-mnist") in message and str(keras_datasets / "fashion-mnist") in message
    assert "dataset-fashion-mnist" in message


def test_incomplete_set_is_not_found(data_env):
    write_idx_set(data_env[0] / "fashion-mnist")
    os.remove(data_env[0] / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        fashion_mnist.load_data()


def corrupt(path, mutate):
    payload = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(mutate(payload)))


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"\x00\x00\x08\x01" + b[4:], "magic number 0x00000801, expected 0x00000803"),
    (lambda b: b[:-10], "truncated"),
    (lambda b: b + b"\x00", "trailing bytes"),
    (lambda b: b[:9], "truncated: its IDX header"),
    (lambda b: b[:2], "holds only 2 bytes"),
], ids=["wrong-magic", "short-data", "trailing-data", "short-header", "tiny"])
def test_corrupted_idx_names_the_file(data_env, mutate, message):
    directory = data_env[0] / "fashion-mnist"
    write_idx_set(directory)
    target = directory / "train-images-idx3-ubyte.gz"
    corrupt(target, mutate)
    with pytest.raises(ValueError, match=message) as err:
        fashion_mnist.load_data()
    assert str(target) in str(err.value)


def test_truncated_gzip_names_the_file(data_env):
    directory = data_env[0] / "fashion-mnist"
    write_idx_set(directory)
    target = directory / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-20])
    with pytest.raises(ValueError, match="not a complete gzip file") as err:
        fashion_mnist.load_data()
    assert str(target) in str(err.value)


def test_not_gzip_at_all_names_the_file(data_env):
    directory = data_env[0] / "fashion-mnist"
    write_idx_set(directory)
    target = directory / "train-labels-idx1-ubyte.gz"
    target.write_bytes(b"this is not gzip data at all")
    with pytest.raises(ValueError) as err:
        fashion_mnist.load_data()
    assert str(target) in str(err.value)


def test_images_and_labels_must_agree(data_env):
    directory = data_env[0] / "fashion-mnist"
    write_idx_set(directory)
    (directory / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(6, np.uint8), 0x801)))
    with pytest.raises(ValueError, match="7 images but .* 6 labels"):
        fashion_mnist.load_data()


def test_wrong_image_size_and_bad_label(data_env):
    directory = data_env[0] / "fashion-mnist"
    write_idx_set(directory, side=27)
    with pytest.raises(ValueError, match="27x27 pixels, expected 28x28"):
        fashion_mnist.load_data()
    write_idx_set(directory)
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.array([1, 12, 3], np.uint8), 0x801)))
    with pytest.raises(ValueError, match="label 12 is not a class"):
        fashion_mnist.load_data()


@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_system_package(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty cache: the system copy must be used
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == y_train.dtype == np.uint8
    np.testing.assert_array_equal(y_train[:10], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)
    assert x_train.max() == 255 and x_train.min() == 0


# ----------------------------------------------------------------------------- MNIST

def write_npz(path, **overrides):
    (xa, ya), (xb, yb) = fake_images(5, 1), fake_images(2, 2)
    arrays = dict(x_train=xa, y_train=ya, x_test=xb, y_test=yb)
    arrays.update(overrides)
    np.savez(path, **arrays)
    return arrays


def test_mnist_npz_in_keras_cache(data_env):
    arrays = write_npz(data_env[1] / "mnist.npz")
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    assert x_train.shape == (5, 28, 28) and y_train.shape == (5,) and y_train.dtype == np.uint8
    np.testing.assert_array_equal(x_test, arrays["x_test"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])


def test_mnist_explicit_path_and_idx_layout(data_env, tmp_path):
    arrays = write_npz(tmp_path / "elsewhere.npz")
    (x_train, _), _ = mnist.load_data(path=str(tmp_path / "elsewhere.npz"))
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    expected = write_idx_set(data_env[0] / "mnist", n_train=4)
    (x_train, y_train), _ = mnist.load_data()
    np.testing.assert_array_equal(x_train, expected[0][0])
    np.testing.assert_array_equal(y_train, expected[0][1])


def test_mnist_npz_with_pickled_objects_is_refused(data_env):
    path = data_env[0] / "mnist.npz"
    write_npz(path, y_train=np.array([object()] * 5, dtype=object))
    with pytest.raises(ValueError) as err:
        mnist.load_data()
    assert str(path) in str(err.value)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "truncated or corrupted"),
    (lambda p: write_npz(p, x_train=np.zeros((5, 28, 27), np.uint8)), "28x28"),
    (lambda p: np.savez(p, x_train=np.zeros((1, 28, 28), np.uint8)), "lacks"),
    (lambda p: write_npz(p, y_test=np.zeros(3, np.uint8)), "one integer label per image"),
], ids=["truncated", "wrong-shape", "missing-key", "label-count"])
def test_mnist_bad_npz_names_the_file(data_env, damage, message):
    path = data_env[0] / "mnist.npz"
    write_npz(path)
    damage(path)
    with pytest.raises(ValueError, match=message) as err:
        mnist.load_data()
    assert str(path) in str(err.value)


def test_mnist_missing(data_env):
    with pytest.raises(FileNotFoundError, match="mnist.npz") as err:
        mnist.load_data()
    assert str(data_env[0]) in str(err.value)


# ----------------------------------------------------------------------------- CIFAR-10

def write_cifar(directory, per_batch=3, protocol=2, bytes_keys=True):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in cifar10.BATCH_FILES:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
        batch = {key("batch_label"): b"training batch", key("labels"): labels, key("data"): data,
                 key("filenames"): [b"img%d.png" % i for i in range(per_batch)]}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        batches[name] = (data, labels)
    return batches


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar10_layout_matches_keras(data_env, protocol):
    batches = write_cifar(data_env[0] / "cifar-10-batches-py", protocol=protocol, bytes_keys=protocol == 2)
    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    assert x_train.shape == (15, 32, 32, 3) and x_test.shape == (3, 32, 32, 3)
    assert y_train.shape == (15, 1) and y_test.shape == (3, 1)
    assert x_train.dtype == y_train.dtype == np.uint8
    data, labels = batches["data_batch_2"]
    # Row layout: the 1024 red values, then green, then blue, each row-major 32x32.
    i, row, col, channel = 1, 5, 7, 2
    assert x_train[3 + i, row, col, channel] == data[i, channel * 1024 + row * 32 + col]
    np.testing.assert_array_equal(y_test[:, 0], batches["test_batch"][1])
    np.testing.assert_array_equal(y_train[3:6, 0], labels)


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (BINSTRING), like the cPickle that made the real CIFAR-10 batches."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def python2_style_pickle(obj):
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    data = buffer.getvalue()
    assert b"_codecs" not in data
    # NumPy 1 (and Python 2's numpy) named the module numpy.core.multiarray.
    return data.replace(b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n")


def test_cifar10_python2_cpickle_format(data_env):
    directory = data_env[0] / "cifar-10-batches-py"
    rng = np.random.default_rng(1)
    expected = {}
    for name in cifar10.BATCH_FILES:
        data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, 2)]
        directory.mkdir(parents=True, exist_ok=True)
        payload = python2_style_pickle({b"batch_label": b"testing batch 1 of 1", b"labels": labels,
                                        b"data": data, b"filenames": [b"a.png", b"b.png"]})
        assert b"cnumpy.core.multiarray\n_reconstruct" in payload
        (directory / name).write_bytes(payload)
        expected[name] = data, labels
    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    data, labels = expected["test_batch"]
    np.testing.assert_array_equal(x_test, data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(y_test, np.array(labels, np.uint8).reshape(-1, 1))
    assert x_train.shape == (10, 32, 32, 3)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _CallsEval:
    def __reduce__(self):
        return eval, ("__import__('os').getcwd()",)


@pytest.mark.parametrize("make", [
    lambda marker: {b"data": _RunsCode(marker), b"labels": [1]},
    lambda marker: _CallsEval(),
    lambda marker: {b"data": np.array([_RunsCode(marker)], dtype=object), b"labels": [1]},
], ids=["os.system", "builtins.eval", "object-array"])
def test_pickle_carrying_code_is_rejected_without_running(tmp_path, make):
    marker = tmp_path / "code-ran"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(make(marker), protocol=2))
    with pytest.raises(ValueError, match="unsafe or malformed pickle") as err:
        cifar10.load_batch(path)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_cifar10_loader_rejects_a_batch_with_code(data_env, tmp_path):
    directory = data_env[0] / "cifar-10-batches-py"
    write_cifar(directory)
    marker = tmp_path / "code-ran"
    (directory / "data_batch_3").write_bytes(pickle.dumps({b"data": _RunsCode(marker)}, protocol=2))
    with pytest.raises(ValueError, match="refusing to load global (posix|os|nt).system") as err:
        cifar10.load_data()
    assert "data_batch_3" in str(err.value)
    assert not marker.exists()


def test_safe_pickle_builds_plain_data():
    value = {"a": [1, 2.5, None, True], b"b": (b"raw", "text"), "c": np.arange(6, dtype="<i4").reshape(2, 3),
             "d": np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3))}
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        loaded = _safe_pickle.loads(pickle.dumps(value, protocol=protocol))
        assert loaded["a"] == value["a"] and loaded[b"b"] == value[b"b"]
        np.testing.assert_array_equal(loaded["c"], value["c"])
        np.testing.assert_array_equal(loaded["d"], value["d"])
        assert loaded["d"].dtype == np.float64


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:len(b) // 2], "truncated or corrupted"),
    (lambda b: b"", "truncated or corrupted"),
], ids=["half", "empty"])
def test_truncated_cifar_batch(data_env, damage, message):
    directory = data_env[0] / "cifar-10-batches-py"
    write_cifar(directory)
    target = directory / "test_batch"
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(ValueError, match=message) as err:
        cifar10.load_data()
    assert str(target) in str(err.value)


def test_cifar_batch_with_wrong_content(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"shape \(N, 3072\)"):
        cifar10.load_batch(path)
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}))
    with pytest.raises(ValueError, match=r"integers in \[0, 10\)"):
        cifar10.load_batch(path)
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="not a CIFAR-10 batch"):
        cifar10.load_batch(path)


# ----------------------------------------------------------------------------- digits

def test_digits_fixed_split_scaled_to_uint8():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    assert x_train.shape == (1500, 8, 8) and x_test.shape == (297, 8, 8)
    assert y_train.shape == (1500,) and y_test.shape == (297,)
    assert x_train.dtype == y_train.dtype == np.uint8
    reference = sklearn_datasets.load_digits()
    np.testing.assert_array_equal(np.concatenate([x_train, x_test]),
                                  np.rint(reference.images * 255 / 16).astype(np.uint8))
    np.testing.assert_array_equal(np.concatenate([y_train, y_test]), reference.target)
    assert x_train.max() == 255 and set(np.unique(y_test)) == set(range(10))
    (again, _), _ = digits.load_data()
    np.testing.assert_array_equal(again, x_train)
