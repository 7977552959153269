"""Weight loaders: every format maps every weight to the right layer, and bad files fail cleanly.

Most tests use a narrow VGG19 built by the same builder (8 channels, fc width 16, 32x32 inputs), which
has the same layer names and the same 16 + 3 weighted layers as the full network; one slow test checks
the full-size logits against `keras.applications.VGG19`.
"""

import hashlib
import io
import os
import pickle
import re
import struct
import subprocess
import sys
import urllib.error

import h5py
import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format

from lib.errors import MissingFileError, WeightsError
from lib.nets import weights
from lib.nets.googlenet import googlenet
from lib.nets.safe_npy import load_npy_dict
from lib.nets.vgg import VGG19_CONVS_PER_BLOCK, vgg19
from lib.nets.weights import load_googlenet_weights, load_vgg19_weights

NARROW = {"widths": (8,) * 5, "fc_width": 16, "input_shape": (32, 32, 3)}
TOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels.h5"
# Our layer name -> keras.applications.VGG19's.
KERAS_NAMES = {
    **{
        f"conv{b}_{c}": f"block{b}_conv{c}"
        for b, n in enumerate(VGG19_CONVS_PER_BLOCK, start=1)
        for c in range(1, n + 1)
    },
    "fc6": "fc1",
    "fc7": "fc2",
    "fc8": "predictions",
}


def narrow_vgg(classes=10, **kwargs):
    return vgg19(classes=classes, **{**NARROW, **kwargs})


def random_arrays(model, seed=1):
    """`{layer: [kernel, bias]}` of random values (non-zero biases, so a lost bias shows)."""
    rng = np.random.default_rng(seed)
    return {
        layer.name: [rng.normal(size=w.shape).astype("float32") for w in layer.weights]
        for layer in model.layers
        if layer.weights
    }


def model_arrays(model):
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def assert_weights_equal(model, expected):
    loaded = model_arrays(model)
    assert loaded.keys() == expected.keys()
    for name, arrays in expected.items():
        assert len(loaded[name]) == len(arrays), name
        for got, want in zip(loaded[name], arrays, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=name)


def keras_named_vgg(arrays, classes=10):
    """A narrow model with keras.applications.VGG19's layer names, holding `arrays`."""
    images = keras.Input(NARROW["input_shape"])
    x = images
    for b, n in enumerate(VGG19_CONVS_PER_BLOCK, start=1):
        for c in range(1, n + 1):
            x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=f"block{b}_conv{c}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(16, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(16, activation="relu", name="fc2")(x)
    x = keras.layers.Dense(classes, name="predictions")(x)
    model = keras.Model(images, x, name="vgg19")
    for ours, theirs in KERAS_NAMES.items():
        model.get_layer(theirs).set_weights(arrays[ours])
    return model


def write_legacy_h5(path, arrays, weight_name, root="", extra_layers=("input_1", "block1_pool")):
    """The Keras 2 layout: `layer_names` at the root, `weight_names` per layer group."""
    with h5py.File(path, "w") as f:
        group = f.create_group(root) if root else f
        names = [*extra_layers, *(KERAS_NAMES[n] for n in arrays)]
        group.attrs["layer_names"] = [n.encode() for n in names]
        for name in extra_layers:
            group.create_group(name).attrs["weight_names"] = np.array([], dtype="S1")
        for ours, layer_arrays in arrays.items():
            name = KERAS_NAMES[ours]
            layer_group = group.create_group(name)
            names = [weight_name.format(layer=name, var=var) for var in ("kernel", "bias")]
            layer_group.attrs["weight_names"] = [n.encode() for n in names]
            for n, array in zip(names, layer_arrays, strict=True):
                layer_group.create_dataset(n, data=array)


@pytest.fixture(scope="module")
def untouched():
    """A narrow VGG19 shared by the loads that must fail (and so leave it as it is)."""
    return narrow_vgg()


@pytest.fixture(scope="module")
def expected(untouched):
    return random_arrays(untouched)


@pytest.fixture
def npy_file(tmp_path, expected):
    path = tmp_path / "vgg19.npy"
    np.save(path, expected, allow_pickle=True)
    return path


def test_tensorflow_vgg_npy_sets_every_weight(npy_file, expected):
    assert_weights_equal(narrow_vgg(weights=str(npy_file)), expected)


def test_keras3_weights_h5_sets_every_weight(tmp_path, expected):
    path = tmp_path / "vgg19.weights.h5"
    keras_named_vgg(expected).save_weights(path)
    assert_weights_equal(narrow_vgg(weights=path), expected)


def test_keras3_file_without_layer_names_is_read_in_layer_order(tmp_path, expected):
    path = tmp_path / "vgg19.weights.h5"
    keras_named_vgg(expected).save_weights(path)
    with h5py.File(path, "r+") as f:
        for group in f["layers"].values():
            del group["vars"].attrs["name"]
    assert_weights_equal(narrow_vgg(weights=path), expected)


def test_weights_saved_from_our_own_model_load_back(tmp_path, expected):
    path = tmp_path / "ours.weights.h5"
    model = narrow_vgg()
    weights.assign_weights(model, expected, "test")
    model.save_weights(path)
    assert_weights_equal(narrow_vgg(weights=path), expected)


@pytest.mark.parametrize(
    ("weight_name", "root"),
    [("{layer}/{var}:0", ""), ("{layer}_{var}_1:0", "model_weights")],
    ids=["keras2-weights", "keras1-names-full-model-file"],
)
def test_legacy_keras_h5_sets_every_weight(tmp_path, untouched, expected, weight_name, root):
    path = tmp_path / "vgg19_weights.h5"
    write_legacy_h5(path, expected, weight_name, root)
    assert_weights_equal(narrow_vgg(weights=path), expected)
    if not root:  # the layout we write is one Keras itself reads
        reference = keras_named_vgg(random_arrays(untouched, seed=2))
        reference.load_weights(path)
        for ours, theirs in KERAS_NAMES.items():
            for got, want in zip(reference.get_layer(theirs).get_weights(), expected[ours], strict=True):
                np.testing.assert_array_equal(got, want, err_msg=theirs)


def caffe_name(name):
    """Our `inception_3a_1x1` / `conv1_7x7_s2` -> caffe's `inception_3a/1x1` / `conv1/7x7_s2`."""
    head, _, tail = name.partition("_")
    if head == "inception":
        block, _, tail = tail.partition("_")
        return f"inception_{block}/{tail}"
    return f"{head}/{tail}"


def test_caffe_tensorflow_googlenet_npy_sets_every_weight(tmp_path):
    model = googlenet(width=0.125, last_block="3b", input_shape=(64, 64, 3), classes=10)
    expected = random_arrays(model)
    content = {
        # caffe names with '/', alternating {"weights", "biases"} dicts and [W, b] lists
        caffe_name(name) if i % 2 else name: {"weights": w, "biases": b} if i % 3 else [w, b]
        for i, (name, (w, b)) in enumerate(expected.items())
    }
    content["loss1/classifier"] = {"weights": np.ones((4, 4)), "biases": np.ones(4)}  # aux head
    path = tmp_path / "googlenet.npy"
    np.save(path, content, allow_pickle=True)
    assert any("/" in name for name in content) and any(isinstance(v, list) for v in content.values())
    load_googlenet_weights(model, path)
    assert_weights_equal(model, expected)


def test_model_without_top_ignores_the_files_top(npy_file, expected):
    model = narrow_vgg(weights=npy_file, include_top=False)
    assert_weights_equal(model, {k: v for k, v in expected.items() if not k.startswith("fc")})


def test_other_class_count_needs_explicit_skip(npy_file, expected):
    model = narrow_vgg(classes=20)
    before = model_arrays(model)
    with pytest.raises(
        WeightsError, match=r"'fc8'.*\(16, 20\).*\(16, 10\).*classes=10.*skip_weights=\('fc8',\)"
    ):
        load_vgg19_weights(model, npy_file)
    assert_weights_equal(model, before)
    load_vgg19_weights(model, npy_file, skip_weights=("fc8",))
    assert_weights_equal(model, {**expected, "fc8": before["fc8"]})


def test_wrong_shape_names_layer_and_shapes_and_changes_nothing(tmp_path, expected):
    path = tmp_path / "vgg19.npy"
    np.save(path, {**expected, "conv3_1": [np.ones((3, 3, 8, 5)), np.ones(5)]}, allow_pickle=True)
    model = narrow_vgg()
    before = model_arrays(model)
    with pytest.raises(WeightsError) as error:
        load_vgg19_weights(model, path)
    message = str(error.value)
    assert "'conv3_1'" in message and "(3, 3, 8, 8)" in message and "(3, 3, 8, 5)" in message
    assert str(path) in message and "\n" not in message
    assert_weights_equal(model, before)  # conv1_1 .. conv2_2 were valid, yet nothing was assigned


def test_missing_layer_names_layer_and_file(tmp_path, expected):
    path = tmp_path / "vgg19.npy"
    np.save(path, {k: v for k, v in expected.items() if k != "conv2_2"}, allow_pickle=True)
    with pytest.raises(WeightsError, match=rf"'{path}' has no weights for layer 'conv2_2'"):
        narrow_vgg(weights=path)


def test_skip_of_an_unknown_layer_is_an_error(untouched, npy_file):
    with pytest.raises(WeightsError, match=r"'fc9'.*conv1_1, conv1_2"):
        load_vgg19_weights(untouched, npy_file, skip_weights=("fc9",))


def test_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match="does not exist") as error:
        narrow_vgg(weights=tmp_path / "vgg19.npy")
    assert isinstance(error.value, FileNotFoundError)


class Payload:
    """Pickles as a call of `func(arg)`: what a malicious weights file would do."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("attack", ["system", "exec"])
def test_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path, untouched, attack):
    marker = tmp_path / "ran"
    payload = {
        "system": Payload(os.system, f"touch '{marker}'"),
        "exec": Payload(exec, f"open({str(marker)!r}, 'w').close()"),
    }[attack]
    path = tmp_path / "vgg19.npy"
    np.save(path, {"conv1_1": [payload, np.ones(8)]}, allow_pickle=True)
    with pytest.raises(WeightsError, match=rf"refusing to load '{path}': its pickle asks for \w+\.{attack}"):
        load_vgg19_weights(untouched, path)
    assert not marker.exists()
    np.load(path, allow_pickle=True)  # the payload is live: numpy's own loader runs it
    assert marker.exists()


class Python2Pickler(pickle._Pickler):
    """Writes what Python 2 wrote for tensorflow-vgg's and caffe-tensorflow's files: protocol 2,
    every str and bytes as a BINSTRING, and numpy's `numpy.core` module names."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_binstring(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = save_binstring
    dispatch[type] = save_global


def test_python2_pickled_npy_loads(tmp_path, expected):
    holder = np.empty((), dtype=object)
    holder[()] = expected
    path = tmp_path / "vgg19.npy"
    with open(path, "wb") as f:
        npy_format.write_array_header_1_0(f, npy_format.header_data_from_array_1_0(holder))
        Python2Pickler(f, protocol=2).dump(holder)
    assert b"numpy.core.multiarray\n_reconstruct" in path.read_bytes()
    assert_weights_equal(narrow_vgg(weights=path), expected)


def test_damaged_pickle_that_crashes_numpy_is_refused(npy_file):
    data = npy_file.read_bytes()
    # the object dtype's state loses an entry: numpy's own loader segfaults on it (numpy 2.4)
    damaged = data.replace(b"\x8c\x01|\x94NNN", b"\x8c\x01|\x94NNb", 1)
    assert damaged != data
    npy_file.write_bytes(damaged)
    with pytest.raises(WeightsError, match="truncated or not a .npy file"):
        load_npy_dict(npy_file)
    code = f"import numpy; numpy.load({str(npy_file)!r}, allow_pickle=True)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode != 0


def test_pickle_declaring_a_huge_memo_is_refused_without_allocating(tmp_path):
    holder = np.empty((), dtype=object)
    path = tmp_path / "bomb.npy"
    with open(path, "wb") as f:
        npy_format.write_array_header_1_0(f, npy_format.header_data_from_array_1_0(holder))
        # an empty dict stored at memo index 2**31 - 1: the C unpickler would size its memo (16 GB) first
        f.write(
            pickle.PROTO + b"\x04" + pickle.EMPTY_DICT + pickle.LONG_BINPUT + struct.pack("<I", 2**31 - 1)
        )
        f.write(pickle.STOP)
    with pytest.raises(WeightsError, match="memo index 2147483647 beyond the data"):
        load_npy_dict(path)


@pytest.mark.parametrize("keep", [3, 9, 40, 0.5, -1])
def test_truncated_npy(untouched, npy_file, keep):
    data = npy_file.read_bytes()
    npy_file.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(WeightsError, match="is truncated or not a .npy file"):
        load_npy_dict(npy_file)
    with pytest.raises(WeightsError, match="truncated"):
        load_vgg19_weights(untouched, npy_file)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_npy_gives_a_dict_or_our_error(npy_file, data):
    original = npy_file.read_bytes()
    damaged = bytearray(original[: data.draw(st.integers(0, len(original)))])
    for _ in range(data.draw(st.integers(0, 3)) if damaged else 0):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    path = npy_file.with_name("damaged.npy")
    path.write_bytes(bytes(damaged))
    try:
        assert isinstance(load_npy_dict(path), dict)
    except WeightsError as error:
        assert "\n" not in str(error)


def test_truncated_h5(tmp_path, untouched, expected):
    path = tmp_path / "vgg19.weights.h5"
    keras_named_vgg(expected).save_weights(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="is truncated or not a Keras .h5 weights file"):
        load_vgg19_weights(untouched, path)
    path.write_bytes(data[:4])
    with pytest.raises(WeightsError, match="is empty or truncated"):
        load_vgg19_weights(untouched, path)


def test_files_of_the_wrong_format(tmp_path, untouched):
    text = tmp_path / "vgg19.npy"
    text.write_text("these are not weights\n")
    with pytest.raises(WeightsError, match="neither a .npy nor an HDF5 file"):
        load_vgg19_weights(untouched, text)
    plain = tmp_path / "plain.npy"
    np.save(plain, np.ones((2, 3)))
    with pytest.raises(WeightsError, match=r"holds a float64 array of shape \(2, 3\), not the pickled dict"):
        load_vgg19_weights(untouched, plain)
    other_h5 = tmp_path / "data.h5"
    with h5py.File(other_h5, "w") as f:
        f["x"] = np.ones(3)
    with pytest.raises(WeightsError, match="HDF5 file but not a Keras weights file"):
        load_vgg19_weights(untouched, other_h5)
    with pytest.raises(WeightsError, match="is not None, 'imagenet' or the path"):
        load_vgg19_weights(untouched, 3)
    with pytest.raises(WeightsError, match="no ImageNet download of GoogLeNet"):
        load_googlenet_weights(None, "imagenet")


def offline(url):
    raise urllib.error.URLError("no network")


@pytest.mark.parametrize("include_top", [True, False])
def test_imagenet_offline_says_where_to_put_the_file(tmp_path, monkeypatch, include_top):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setattr(weights, "_open_url", offline)
    fname = TOP_FILE if include_top else TOP_FILE.replace(".h5", "_notop.h5")
    with pytest.raises(WeightsError, match=rf"no network.*put {fname} .* in ~/\.keras/models/") as error:
        narrow_vgg(weights="imagenet", include_top=include_top)
    assert "\n" not in str(error.value)


def test_imagenet_uses_the_keras_cache_without_network(tmp_path, monkeypatch, expected):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(weights, "_open_url", offline)
    (tmp_path / "models").mkdir()
    write_legacy_h5(tmp_path / "models" / TOP_FILE, expected, "{layer}_{var}_1:0")
    assert_weights_equal(narrow_vgg(weights="imagenet"), expected)


class Response(io.BytesIO):
    """An HTTP response that may break after its first chunk."""

    def __init__(self, data, fail=False):
        super().__init__(data)
        self.fail = fail

    def read(self, size=-1):
        if self.fail and self.tell():
            raise ConnectionResetError("connection reset")
        return super().read(min(size, 64))


@pytest.mark.parametrize("outcome", ["ok", "corrupted", "interrupted"])
def test_imagenet_download_lands_whole_or_not_at_all(tmp_path, monkeypatch, expected, outcome):
    source = tmp_path / "served.h5"
    write_legacy_h5(source, expected, "{layer}/{var}:0")
    data = source.read_bytes()
    md5 = hashlib.md5(data).hexdigest() if outcome != "corrupted" else "0" * 32
    monkeypatch.setitem(weights.IMAGENET_VGG19_FILES, True, (TOP_FILE, md5))
    monkeypatch.setattr(weights, "_open_url", lambda url: Response(data, fail=outcome == "interrupted"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    if outcome == "ok":
        assert_weights_equal(narrow_vgg(weights="imagenet"), expected)
        assert os.listdir(tmp_path / "keras" / "models") == [TOP_FILE]
        return
    with pytest.raises(WeightsError, match="corrupted" if outcome == "corrupted" else "connection reset"):
        narrow_vgg(weights="imagenet")
    assert os.listdir(tmp_path / "keras" / "models") == []


@pytest.mark.slow
def test_full_vgg19_logits_equal_keras_applications(tmp_path):
    reference = keras.applications.VGG19(weights=None, classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in reference.layers:  # Keras starts biases at zero; a lost bias must show
        if layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.01, bias.shape).astype("float32")])
    images = rng.uniform(0, 255, (1, 224, 224, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(reference(keras.applications.vgg19.preprocess_input(images.copy())))
    h5_path, npy_path = tmp_path / "vgg19.weights.h5", tmp_path / "vgg19.npy"
    reference.save_weights(h5_path)
    np.save(npy_path, {ours: reference.get_layer(k).get_weights() for ours, k in KERAS_NAMES.items()})
    del reference

    def max_relative_difference(model):
        logits = keras.ops.convert_to_numpy(model(images))
        return np.max(np.abs(logits - expected)) / np.max(np.abs(expected))

    model = vgg19(weights=h5_path)
    assert max_relative_difference(model) < 1e-4
    model.set_weights([np.zeros(w.shape, "float32") for w in model.weights])
    load_vgg19_weights(model, npy_path)
    assert max_relative_difference(model) < 1e-4


# One exact case per kind of bad weights file: the whole message, and the model left as it was. The files
# hold other values than the model's, so that a load that stopped halfway would show.


@pytest.fixture
def before(untouched):
    return model_arrays(untouched)


def test_a_missing_weights_file_is_named(tmp_path, untouched):
    with pytest.raises(
        MissingFileError, match=f"weights file '{re.escape(str(tmp_path))}/vgg19.npy' does not exist"
    ):
        load_vgg19_weights(untouched, tmp_path / "vgg19.npy")


@pytest.mark.parametrize("kind", ["text", "plain-array", "other-hdf5"])
def test_a_weights_file_of_the_wrong_format_changes_nothing(tmp_path, untouched, before, kind):
    path = tmp_path / ("vgg19.h5" if kind == "other-hdf5" else "vgg19.npy")
    if kind == "text":
        path.write_text("these are not weights\n")
    elif kind == "plain-array":
        np.save(path, np.ones((2, 3)))
    else:
        with h5py.File(path, "w") as f:
            f["x"] = np.ones(3)
    message = {
        "text": "is neither a .npy nor an HDF5 file",
        "plain-array": r"holds a float64 array of shape \(2, 3\), not the pickled dict",
        "other-hdf5": "is an HDF5 file but not a Keras weights file",
    }[kind]
    with pytest.raises(WeightsError, match=message):
        load_vgg19_weights(untouched, path)
    assert_weights_equal(untouched, before)


@pytest.mark.parametrize("suffix", [".npy", ".weights.h5"])
def test_a_truncated_weights_file_changes_nothing(tmp_path, untouched, before, expected, suffix):
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".npy":
        np.save(path, expected, allow_pickle=True)
    else:
        donor = narrow_vgg()
        weights.assign_weights(donor, expected, "test")
        donor.save_weights(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match=f"'{re.escape(str(path))}' is truncated or not a"):
        load_vgg19_weights(untouched, path)
    assert_weights_equal(untouched, before)


def test_a_whole_npy_with_one_payload_is_refused_before_anything_runs(tmp_path, untouched, before, expected):
    marker = tmp_path / "ran"
    path = tmp_path / "vgg19.npy"
    payload = Payload(os.system, f"touch '{marker}'")
    np.save(path, {**expected, "conv1_1": [payload, np.ones(8)]}, allow_pickle=True)
    with pytest.raises(
        WeightsError, match=rf"refusing to load '{re.escape(str(path))}': its pickle asks for \w+\.system"
    ):
        load_vgg19_weights(untouched, path)
    assert not marker.exists()
    assert_weights_equal(untouched, before)


@pytest.mark.parametrize("fault", ["missing", "wrong-shape"])
def test_a_layer_missing_or_of_the_wrong_shape_names_the_layer_and_both_shapes(
    tmp_path, untouched, before, expected, fault
):
    path = tmp_path / "vgg19.npy"
    where = re.escape(str(path))
    if fault == "missing":
        np.save(path, {k: v for k, v in expected.items() if k != "conv2_2"}, allow_pickle=True)
        message = f"'{where}' has no weights for layer 'conv2_2' of 'vgg19'"
    else:
        np.save(path, {**expected, "conv3_1": [np.ones((3, 3, 8, 5)), np.ones(5)]}, allow_pickle=True)
        message = rf"layer 'conv3_1' expects shapes \(3, 3, 8, 8\), \(8,\) but '{where}' "
        message += r"holds \(3, 3, 8, 5\), \(5,\)"
    with pytest.raises(WeightsError, match=message):
        load_vgg19_weights(untouched, path)
    assert_weights_equal(untouched, before)  # all or nothing


def test_imagenet_offline_names_the_file_and_leaves_no_partial_download(tmp_path, monkeypatch, untouched):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setattr(weights, "_open_url", offline)
    with pytest.raises(
        WeightsError,
        match=r"cannot download the ImageNet VGG19 weights \(.*no network.*\); put "
        r"vgg19_weights_tf_dim_ordering_tf_kernels.h5 from https://storage.googleapis.com/\S+ "
        r"in ~/.keras/models/",
    ):
        load_vgg19_weights(untouched, "imagenet")
    models = tmp_path / ".keras" / "models"
    assert not models.exists() or os.listdir(models) == []
