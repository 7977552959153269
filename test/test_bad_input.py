"""Issue 6, "Bad input never crashes a run or loses work": one test per item of the issue's list.

From `lib`, bad input raises one of `lib.errors` (each also a `ValueError` or `FileNotFoundError`) with a
one-line message naming the value and the fix. From a script it is one `error: ...` line on stderr and exit
status 2; warnings print as `warning: ...` lines, and we assert those too. Scripts run in-process through
`cli.run` (the same code path as `__main__`, much faster), except where the real process matters: no
traceback on stderr, and a real Ctrl-C. Some items are tested in depth elsewhere (test_images.py,
test_weights.py, test_methods_*.py, test_cam_training.py); here each gets its one exact case.
"""

import functools
import importlib.util
import io
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import warnings
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from matplotlib.figure import Figure
from PIL import Image

from lib import cli, plot
from lib.dataflow.images import check_images, list_images, load_images, read_image
from lib.errors import InputError, LayerError, MissingFileError, VizError, WeightsError
from lib.methods.filters import FeatureMaps, layer_filters
from lib.methods.grad_cam import GradCAM
from lib.methods.guided_backprop import GuidedBackprop
from lib.methods.targets import parse_class_ids
from lib.nets import weights
from lib.nets.vgg import vgg19
from lib.nets.weights import load_vgg19_weights

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("gradcam", "guided_backpropagation", "deconv", "vizfilter", "cam")
GOOD_SAMPLES = ("04_ring.png", "09_disk_ring.png")
NARROW_VGG = dict(classes=10, widths=(8,) * 5, fc_width=16, input_shape=(32, 32, 3))
RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------------------------- helpers


@functools.cache
def script(name):
    """`example/<name>.py` as a module, to call its `parse_args` and `main` in-process."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "example" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def q(path):
    """`path` as a regular expression that matches it literally."""
    return re.escape(str(path))


def _warning_to_stderr(message, category, filename, lineno, file=None, line=None):
    # What Python does outside pytest, which records warnings instead of printing them.
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_script(capsys, name, *argv):
    """(exit status, stdout, stderr lines) of `example/<name>.py argv`; warnings print as in a script."""
    module = script(name)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # hidden outside __main__ too
        warnings.showwarning = _warning_to_stderr
        status = cli.run(module.main, module.parse_args([str(a) for a in argv]))
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


def script_process(*argv, **kwargs):
    """`example/<script>.py argv` as a process started from a shell (where TensorFlow's log level is not
    yet set: `import lib` then sets it and keeps TensorFlow's start-up lines off stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, ROOT / "example" / argv[0], *argv[1:]]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A shell's background jobs ignore SIGINT, and Python then installs no KeyboardInterrupt
        # handler: give the script the Ctrl-C a terminal would, whatever started the tests.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kwargs,
    )


def files(folder):
    """Every name in `folder`, hidden ones included (temporary files would start with a dot)."""
    return sorted(os.listdir(folder)) if Path(folder).exists() else []


def save(path, array, mode=None):
    Image.fromarray(array, mode).save(path)
    return path


def png_header(width, height):
    """A PNG that claims `width` x `height` pixels but holds none: ~60 bytes, whatever the size."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def truncated(path, file_format):
    """A real image file of `file_format` cut in half."""
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, file_format)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def assert_complete(path):
    """`path` is a whole PNG, .npy or .mat file: it decodes to the end."""
    if path.suffix == ".png":
        with Image.open(path) as image:
            image.load()
    elif path.suffix == ".npy":
        assert np.isfinite(np.load(path)).all()
    else:
        scipy.io.loadmat(path)


def _interrupt_once_written(process, out):
    """Sends Ctrl-C (SIGINT) to `process` as soon as its first .npy file is in `out`."""
    deadline = time.monotonic() + 150
    while not list(out.glob("*.npy")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)


@pytest.fixture(scope="module", autouse=True)
def processes(tmp_path_factory):
    """The two script runs that need a real process, started with the first test so that they overlap
    the in-process tests: {"error": (process, missing --images), "ctrl-c": (process, --out folder)}."""
    root = tmp_path_factory.mktemp("processes")
    folder, out, missing = root / "images", root / "out", root / "failed" / "photos"
    folder.mkdir()
    missing.parent.mkdir()
    samples = sorted(cli.SAMPLES_DIR.glob("*.png"))
    for i in range(24):
        shutil.copy(samples[i % len(samples)], folder / f"{i:02d}.png")
    interrupted = script_process("gradcam.py", "--images", folder, "--out", out, "--batch-size", "1")
    failed = script_process("gradcam.py", "--images", missing, "--out", missing.parent / "out")
    threading.Thread(target=_interrupt_once_written, args=(interrupted, out), daemon=True).start()
    yield {"error": (failed, missing), "ctrl-c": (interrupted, out)}
    for process in (interrupted, failed):
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def small():
    """conv1 (ReLU) -> conv2 (ReLU) -> global average pooling -> fc: 5 classes of 8x8 RGB images."""
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
    y = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, keras.layers.Dense(5, name="fc")(y), name="small")


@pytest.fixture(scope="module")
def gradcam(small):
    return GradCAM(small, "conv2")


def pixels(n=2):
    return RNG.uniform(0, 255, (n, 8, 8, 3)).astype(np.float32)


# ----------------------------------------------------------------------------------------------- images


def test_a_path_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "nowhere.png"
    for read in (read_image, list_images, load_images):
        with pytest.raises(MissingFileError, match=f"'{q(missing)}' does not exist") as error:
            read(missing)
        assert isinstance(error.value, FileNotFoundError)
    status, out, err = run_script(capsys, "gradcam", "--images", missing, "--out", tmp_path / "out")
    assert (status, out, err) == (2, "", [f"error: path '{missing}' does not exist; check it"])
    assert files(tmp_path / "out") == []


@pytest.mark.parametrize("content", [(), ("notes.txt", "._hidden.jpg")], ids=["empty", "no-images"])
def test_an_empty_folder_or_one_without_images(tmp_path, content):
    for name in content:
        (tmp_path / name).write_text("not an image")
    with pytest.raises(
        InputError, match=rf"no images \(jpg, jpeg, png, bmp, gif, tif, tiff\) in folder '{q(tmp_path)}'"
    ):
        load_images(tmp_path)


@pytest.mark.parametrize(("name", "file_format"), [("cut.jpg", "JPEG"), ("cut.png", "PNG")])
def test_a_truncated_jpeg_or_png(tmp_path, name, file_format):
    path = truncated(tmp_path / name, file_format)
    with pytest.raises(InputError, match=rf"cannot read image '{q(path)}': .*runcated.*; re-save the file"):
        read_image(path)


def test_a_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are notes")
    with pytest.raises(
        InputError, match=f"cannot read image '{q(path)}': not an image format Pillow can identify"
    ):
        read_image(path)


@pytest.mark.parametrize(
    ("mode", "array", "expected"),
    [
        ("L", np.full((3, 4), 77, np.uint8), (77, 77, 77)),
        ("RGBA", np.tile(np.uint8([255, 0, 0, 128]), (3, 4, 1)), (255, 127, 127)),  # on white
        ("P", np.zeros((3, 4), np.uint8), (10, 20, 30)),  # palette index 0
        ("I;16", np.full((3, 4), 100 * 257, np.uint16), (100, 100, 100)),  # 16 bits scaled
    ],
)
def test_grayscale_rgba_palette_and_16_bit_pngs_are_converted(tmp_path, mode, array, expected):
    image = Image.fromarray(array) if mode != "P" else Image.fromarray(array, "P")
    if mode == "P":
        image.putpalette([10, 20, 30] + [0] * 765)
    image.save(tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as saved:
        assert saved.mode == mode
    rgb = read_image(tmp_path / "x.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 4, 3)
    assert (rgb == expected).all()


def test_a_1x1_image_is_resized(tmp_path):
    path = save(tmp_path / "one.png", np.uint8([[[200, 100, 50]]]))
    result = load_images([path], size=64)
    assert result.images.shape == (1, 64, 64, 3) and (result.images == [200, 100, 50]).all()


@pytest.mark.parametrize(
    ("side", "message"),
    [(8000, "8000x8000 = 64 Mpx, above the 50 Mpx limit"), (20000, "400 Mpx, above the 50 Mpx limit")],
)
def test_a_huge_image_is_refused_from_its_header_with_the_limit_named(tmp_path, side, message):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(side, side))  # no pixel data: decoding would fail with "cannot read"
    start = time.perf_counter()
    with pytest.raises(InputError, match=f"image '{q(path)}' is {message}; downscale it first"):
        read_image(path)
    assert time.perf_counter() - start < 1


def test_images_of_different_sizes_in_one_batch(tmp_path, gradcam):
    paths = [save(tmp_path / "a.png", RNG.integers(0, 256, (6, 5, 3), np.uint8))]
    paths.append(save(tmp_path / "b.png", RNG.integers(0, 256, (4, 5, 3), np.uint8)))
    with pytest.raises(
        InputError, match=rf"'{q(paths[1])}' is 4x5 \(height x width\); pass size=\(height, width\)"
    ):
        load_images(paths)
    assert load_images(paths, size=8).images.shape == (2, 8, 8, 3)
    arrays_ = [np.zeros((8, 8, 3), np.float32), np.zeros((9, 8, 3), np.float32)]
    for call in (check_images, gradcam):
        with pytest.raises(InputError, match=r"image 0 has shape \(8, 8, 3\), image 1 has \(9, 8, 3\)"):
            call(arrays_)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_an_array_from_a_notebook(gradcam, value):
    images = pixels()
    images[1, 2, 3, 0] = value
    with pytest.raises(InputError, match="images contain NaN or Inf at 1 positions; replace them"):
        gradcam(images)


# ------------------------------------------------------------------------------------ models and layers


def test_an_unknown_layer_lists_the_valid_spatial_layers(small):
    with pytest.raises(LayerError, match=r"^no layer 'conv9' in the model; pick one of conv1, conv2$"):
        GradCAM(small, "conv9")


@pytest.mark.parametrize(("layer", "shape"), [("gap", r"\(None, 4\)"), ("fc", r"\(None, 5\)")])
def test_a_layer_with_no_spatial_axes(small, layer, shape):
    with pytest.raises(
        LayerError,
        match=rf"layer '{layer}' has output shape {shape}, no \(N, h, w, C\) axes; pick one of conv1, conv2",
    ):
        GradCAM(small, layer)


def test_a_model_without_relu_for_guided_backprop():
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, activation="tanh", name="conv")(x)
    model = keras.Model(x, keras.layers.Dense(3, name="fc")(keras.layers.Flatten()(y)))
    with pytest.raises(LayerError, match="no ReLU between the input and 'fc'; guided backpropagation would"):
        GuidedBackprop(model)


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("vgg19", "a str"),
        (np.zeros(3), "a numpy ndarray"),
        (keras.layers.Conv2D(2, 3), "a keras Conv2D"),
        (lambda x: x, "a function"),
    ],
    ids=["str", "array", "layer", "function"],
)
@pytest.mark.parametrize(
    "method",
    [GradCAM, GuidedBackprop, lambda m: FeatureMaps(m, "conv1"), lambda m: layer_filters(m, "conv1")],
    ids=["GradCAM", "GuidedBackprop", "FeatureMaps", "layer_filters"],
)
def test_a_model_that_is_not_a_keras_model(model, kind, method):
    with pytest.raises(InputError, match=f"^model is {kind}, not a keras.Model; pass a Keras 3 model"):
        method(model)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.fc = keras.layers.Dense(5)

    def call(self, x):
        return self.fc(self.pool(self.conv(x)))


def test_a_subclassed_model_says_it_needs_a_functional_graph_and_what_to_do():
    model = Subclassed()
    model(pixels(1))
    for method in (GradCAM, GuidedBackprop, lambda m: FeatureMaps(m, "conv")):
        with pytest.raises(
            LayerError,
            match=r"'subclassed' is a subclassed keras.Model \(Subclassed\).*functional graph; rebuild it "
            r"with inputs = keras.Input\(\(H, W, 3\)\) and keras.Model\(inputs, model.call\(inputs\)\)",
        ):
            method(model)
    inputs = keras.Input((8, 8, 3))  # the advice works
    assert GradCAM(keras.Model(inputs, model.call(inputs)), "conv")(pixels(1)).shape == (1, 1, 8, 8)


# ---------------------------------------------------------------------------------------------- classes


@pytest.mark.parametrize(
    ("class_ids", "message", "argv"),
    [
        (5, r"class id 5 is outside 0..4", ["8"]),
        ([[1, 2], [3]], "class_ids is ragged; give every image the same number K of classes", None),
        ([0, -1], r"class id -1 is outside 0..4", ["0", "-1"]),
        ({1, 2}, r"class_ids=\{1, 2\}; pass an int, a list of ints or N lists of ints", None),
    ],
    ids=["out-of-range", "k-lists-of-different-lengths", "negative", "not-ints"],
)
def test_bad_class_ids(gradcam, capsys, tmp_path, class_ids, message, argv):
    with pytest.raises(InputError, match=f"^{message}"):
        gradcam(pixels(2), class_ids)
    if argv is None:  # the script's --class-id takes K ints for every image
        return
    status, out, err = run_script(capsys, "gradcam", "--class-id", *argv, "--out", tmp_path)
    assert (status, out) == (2, "")
    bad = argv[0] if len(argv) == 1 else argv[1]
    assert err == [f"error: class id {bad} is outside 0..7; pass ids of the model's classes"]
    assert files(tmp_path) == []


# ---------------------------------------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def vgg():
    """A narrow VGG19 (same layer names as the full one) that every failed load must leave unchanged."""
    return vgg19(**NARROW_VGG)


@pytest.fixture(scope="module")
def vgg_arrays(vgg):
    return {layer.name: layer.get_weights() for layer in vgg.layers if layer.weights}


def assert_unchanged(model, arrays):
    for layer in model.layers:
        for got, want in zip(layer.get_weights(), arrays.get(layer.name, []), strict=True):
            np.testing.assert_array_equal(got, want)


def test_a_missing_weights_file(tmp_path, vgg):
    with pytest.raises(MissingFileError, match=f"weights file '{q(tmp_path)}/vgg19.npy' does not exist"):
        load_vgg19_weights(vgg, tmp_path / "vgg19.npy")


@pytest.mark.parametrize("kind", ["text", "plain-array", "other-hdf5"])
def test_a_weights_file_of_the_wrong_format(tmp_path, vgg, vgg_arrays, kind):
    import h5py

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
        load_vgg19_weights(vgg, path)
    assert_unchanged(vgg, vgg_arrays)


@pytest.mark.parametrize("suffix", [".npy", ".weights.h5"])
def test_a_truncated_weights_file(tmp_path, vgg, vgg_arrays, suffix):
    path = tmp_path / f"vgg19{suffix}"
    if suffix == ".npy":
        np.save(path, vgg_arrays, allow_pickle=True)
    else:
        vgg.save_weights(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match=f"'{q(path)}' is truncated or not a"):
        load_vgg19_weights(vgg, path)
    assert_unchanged(vgg, vgg_arrays)


class Payload:
    """Pickles as `os.system(command)`: what a malicious weights file does to `np.load(allow_pickle=True)`."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_npy_whose_pickle_would_run_code_is_refused_before_anything_runs(tmp_path, vgg, vgg_arrays):
    marker = tmp_path / "ran"
    path = tmp_path / "vgg19.npy"
    np.save(path, {**vgg_arrays, "conv1_1": [Payload(f"touch '{marker}'"), np.ones(8)]}, allow_pickle=True)
    with pytest.raises(WeightsError, match=rf"refusing to load '{q(path)}': its pickle asks for \w+\.system"):
        load_vgg19_weights(vgg, path)
    assert not marker.exists()
    assert_unchanged(vgg, vgg_arrays)


@pytest.mark.parametrize("fault", ["missing", "wrong-shape"])
def test_a_layer_missing_or_of_the_wrong_shape_names_the_layer_and_both_shapes(
    tmp_path, vgg, vgg_arrays, fault
):
    path = tmp_path / "vgg19.npy"
    if fault == "missing":
        np.save(path, {k: v for k, v in vgg_arrays.items() if k != "conv2_2"}, allow_pickle=True)
        message = f"'{q(path)}' has no weights for layer 'conv2_2' of 'vgg19'"
    else:
        np.save(path, {**vgg_arrays, "conv3_1": [np.ones((3, 3, 8, 5)), np.ones(5)]}, allow_pickle=True)
        message = (
            rf"layer 'conv3_1' expects shapes \(3, 3, 8, 8\), \(8,\) but '{q(path)}' "
            r"holds \(3, 3, 8, 5\), \(5,\)"
        )
    with pytest.raises(WeightsError, match=message):
        load_vgg19_weights(vgg, path)
    assert_unchanged(vgg, vgg_arrays)  # all or nothing


def test_imagenet_offline_says_where_to_put_the_file(tmp_path, monkeypatch, vgg):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_HOME", raising=False)

    def offline(url):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(weights, "_open_url", offline)
    with pytest.raises(
        WeightsError,
        match=r"cannot download the ImageNet VGG19 weights \(.*no network.*\); put "
        r"vgg19_weights_tf_dim_ordering_tf_kernels.h5 from https://storage.googleapis.com/\S+ "
        r"in ~/.keras/models/",
    ):
        load_vgg19_weights(vgg, "imagenet")
    assert files(tmp_path / ".keras" / "models") == []  # no partial download left


# ---------------------------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("fault", ["cannot-create", "cannot-write"])
def test_an_output_folder_that_cannot_be_created_or_written(tmp_path, monkeypatch, fault):
    if fault == "cannot-create":
        (tmp_path / "file").write_text("x")  # a regular file as parent: chmod would not stop root
        out, reason = tmp_path / "file" / "out", "Not a directory"
    else:

        def denied(*args, **kwargs):  # what a read-only folder does to anyone but root
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(cli.tempfile, "NamedTemporaryFile", denied)
        out, reason = tmp_path / "out", "Permission denied"
    with pytest.raises(InputError, match=rf"^cannot write to output folder '{q(out)}' \({reason}\); pass"):
        cli.prepare_output(out)


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_script_checks_its_output_folder_before_any_work(tmp_path, capsys, monkeypatch, name):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "out"

    def work(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(cli, "load_subject", work)
    status, stdout, err = run_script(
        capsys, name, "--images", cli.SAMPLES_DIR / GOOD_SAMPLES[0], "--out", out
    )
    assert (status, stdout) == (2, "")
    assert err == [f"error: cannot write to output folder '{out}' (Not a directory); pass another --out"]
    assert files(tmp_path) == ["file"] and (tmp_path / "file").read_text() == "x"


def _crash_midway(error):
    def write(file, *args, **kwargs):
        file.write(b"\x89PNG\r\n\x1a\nhalf a file")
        raise error

    return write


@pytest.mark.parametrize(
    "error", [OSError(28, "No space left on device"), KeyboardInterrupt()], ids=["crash", "ctrl-c"]
)
@pytest.mark.parametrize("suffix", [".png", ".npy", ".mat"])
def test_a_crash_during_a_save_leaves_the_old_file_or_nothing_never_a_partial_one(
    tmp_path, monkeypatch, suffix, error
):
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().imshow(RNG.uniform(size=(4, 4)))
    save = {
        ".png": lambda path: plot.save_figure(fig, path, close=False),
        ".npy": lambda path: plot.save_array(path, np.ones((2, 3))),
        ".mat": lambda path: plot.save_mat(path, {"maps": np.ones((2, 3))}),
    }[suffix]
    old = save(tmp_path / f"old{suffix}")
    before = old.read_bytes()
    target = {".png": (fig, "savefig"), ".npy": (np, "save"), ".mat": (scipy.io, "savemat")}[suffix]
    monkeypatch.setattr(*target, _crash_midway(error))
    for path in (old, tmp_path / f"new{suffix}"):
        with pytest.raises(type(error)):
            save(path)
    assert files(tmp_path) == [old.name] and old.read_bytes() == before


def test_ctrl_c_during_a_folder_run_leaves_only_complete_files_and_a_clear_message(processes):
    process, out = processes["ctrl-c"]
    _, err = process.communicate(timeout=180)
    assert process.returncode == 130, err
    assert err.splitlines() == ["interrupted; files already written are complete, nothing partial was left"]
    written = files(out)
    assert written and not [name for name in written if name.startswith(".") or name.endswith(".tmp")]
    assert len(written) < 3 * 24  # it was interrupted, not finished
    for name in written:
        assert_complete(out / name)


def test_an_interrupted_cam_training_resumes_from_its_last_checkpoint(tmp_path):
    # A minimal run; test_cam_training.py::test_an_interrupted_run_resumes_from_its_checkpoint_and_ends_as_an_
    # uninterrupted_one shows in depth that the resumed run ends exactly as an uninterrupted one.
    from lib.dataflow.shapes import write_image_folder
    from lib.methods.cam_training import cam_model, read_checkpoint, train_cam

    write_image_folder(tmp_path / "data", 20, seed=0, size=32)  # 16 training images: 2 steps per epoch
    base = vgg19(include_top=False, widths=(4,), convs_per_block=(1,), input_shape=(32, 32, 3))
    first, options = cam_model(base, 8, conv_width=4), dict(batch_size=8, class_ids=[0], verbose=0)
    train_on_batch, steps = first.train_on_batch, []

    def ctrl_c_in_epoch_2(*args, **kwargs):
        steps.append(1)
        if len(steps) == 3:
            raise KeyboardInterrupt
        return train_on_batch(*args, **kwargs)

    first.train_on_batch = ctrl_c_in_epoch_2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 20 images leave some of the 8 class folders empty
        with pytest.raises(KeyboardInterrupt):
            train_cam(first, tmp_path / "data", 2, tmp_path / "run", **options)
        assert read_checkpoint(tmp_path / "run")["epoch"] == 1
        assert files(tmp_path / "run") == ["checkpoint.json", "epoch-001.state.npz", "epoch-001.weights.h5"]
        history = train_cam(
            cam_model(base, 8, conv_width=4), tmp_path / "data", 2, tmp_path / "run", **options
        )
    assert history.resumed_from == 1 and len(history.loss) == 2
    assert files(tmp_path / "run") == ["checkpoint.json", "epoch-002.state.npz", "epoch-002.weights.h5"]
    (tmp_path / "run" / "checkpoint.json").write_text("{")  # damaged by hand: one clear error, not JSON's
    with pytest.raises(InputError, match=r"checkpoint '.*checkpoint.json' is damaged \(.*\); start afresh"):
        read_checkpoint(tmp_path / "run")


# ------------------------------------------------------------------------------------- scripts, overall


def test_a_script_error_is_one_stderr_line_and_exit_status_2_without_traceback(processes):
    process, missing = processes["error"]
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert (out, err) == ("", f"error: path '{missing}' does not exist; check it\n")
    assert files(missing.parent) == []


def test_debug_shows_the_traceback_then_the_same_line(tmp_path, capsys):
    status, out, err = run_script(capsys, "gradcam", "--layer", "nope", "--out", tmp_path, "--debug")
    assert status == 2 and err[0] == "Traceback (most recent call last):"
    assert err[-2].startswith("lib.errors.LayerError: no layer 'nope'")
    assert err[-1].startswith("error: no layer 'nope' in the model; pick one of")


def test_a_folder_of_good_and_bad_images_maps_every_good_one_and_names_every_bad_one(tmp_path, capsys):
    folder, out = tmp_path / "mixed", tmp_path / "out"
    folder.mkdir()
    shutil.copy(cli.SAMPLES_DIR / GOOD_SAMPLES[1], folder / GOOD_SAMPLES[1])
    save(folder / "rgba.png", np.tile(np.uint8([255, 0, 0, 128]), (30, 40, 1)))
    save(folder / "one.png", np.uint8([[[200, 100, 50]]]))
    truncated(folder / "cut.jpg", "JPEG")
    truncated(folder / "cut.png", "PNG")
    (folder / "notes.jpg").write_text("not an image")
    (folder / "huge.png").write_bytes(png_header(20000, 20000))
    (folder / "empty.png").write_bytes(b"")
    good = ["09_disk_ring", "one", "rgba"]  # a 1x1 and an RGBA image are converted, not refused
    bad = ["cut.jpg", "cut.png", "empty.png", "huge.png", "notes.jpg"]

    status, stdout, err = run_script(capsys, "gradcam", "--images", folder, "--out", out)
    assert status == 0
    assert [line.split("'")[1] for line in err] == [str(folder / name) for name in bad]
    assert all(line.startswith("warning: skipped: ") for line in err)
    summary = stdout.splitlines()[-1]
    assert summary.startswith("3 images, 5 skipped: cut.jpg (cannot read image ")
    where = [summary.find(f"{name} (") for name in bad]
    assert -1 not in where and where == sorted(where)
    expected = [
        f"{stem}{end}" for stem in good for end in ("_gradcam.npy", "_gradcam.png", "_guided_gradcam.npy")
    ]
    assert files(out) == sorted([*expected, "gradcam_overview.png"])
    for stem in good:
        maps = np.load(out / f"{stem}_gradcam.npy")
        assert maps.shape == (2, 64, 64) and maps.min() >= 0 and maps.max() <= 1
        assert_complete(out / f"{stem}_gradcam.png")


# ------------------------------------------------------------------------------- script flags, checked early


def test_deconv_warns_once_about_a_bad_image_whatever_the_number_of_layers(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(cli.SAMPLES_DIR / GOOD_SAMPLES[0], folder / GOOD_SAMPLES[0])
    (folder / "notes.jpg").write_text("not an image")
    argv = ["--images", folder, "--out", tmp_path / "out", "--generate", "0", "--k", "1"]
    status, _, err = run_script(capsys, "deconv", *argv, "--layer", "conv3_2", "conv4_2")
    assert status == 0
    bad = [line for line in err if "notes.jpg" in line]
    assert len(bad) == 1 and bad[0].startswith("warning: skipped: cannot read image")


@pytest.mark.parametrize("value", ["0", "-3"])
@pytest.mark.parametrize("name", ["gradcam", "guided_backpropagation", "deconv", "vizfilter"])
def test_a_batch_size_below_1_is_refused_while_the_flags_are_parsed(tmp_path, capsys, name, value):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        script(name).parse_args(["--batch-size", value, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("usage: ")
    assert err[-1].endswith(f"error: argument --batch-size: {value} is not a positive integer")
    assert not (tmp_path / "out").exists()


def test_deconv_refuses_a_channel_the_layer_does_not_have_before_the_search(tmp_path, capsys):
    out = tmp_path / "out"
    status, stdout, err = run_script(capsys, "deconv", "--id", "999", "--layer", "conv3_2", "--out", out)
    assert (status, stdout) == (2, "")
    assert len(err) == 1
    assert re.fullmatch(
        r"error: --id 999 is not a channel of layer 'conv3_2', which has channels 0\.\.\d+", err[0]
    )
    assert files(out) == []


@pytest.mark.parametrize("name", ["deconv", "vizfilter", "cam"])
def test_missing_images_create_no_output_folder(tmp_path, capsys, name):
    missing, out = tmp_path / "nowhere", tmp_path / "out"
    status, stdout, err = run_script(capsys, name, "--images", missing, "--out", out)
    assert (status, stdout, err) == (2, "", [f"error: path '{missing}' does not exist; check it"])
    assert not out.exists()


def test_cam_refuses_a_top_k_above_the_number_of_classes(tmp_path, capsys):
    out = tmp_path / "out"
    status, stdout, err = run_script(capsys, "cam", "--top-k", "99", "--out", out)
    assert (status, stdout) == (2, "")
    assert err == ["error: --top-k 99 exceeds the model's 8 classes; pass at most 8"]
    assert files(out) == []


@pytest.mark.parametrize("name", ["gradcam", "guided_backpropagation"])
def test_the_closing_line_says_1_image_not_1_images(tmp_path, capsys, name):
    image = cli.SAMPLES_DIR / GOOD_SAMPLES[0]
    status, stdout, _ = run_script(capsys, name, "--images", image, "--out", tmp_path / "out")
    assert status == 0
    assert " for 1 image and " in stdout and "1 images" not in stdout


# ------------------------------------------------------------------------------------ property tests
# Every outcome is a clean result or one of our errors; the deadline catches a hang-like slowdown.

_HEADERS = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    png_header(4, 3)[:33],
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("random_files")


@settings(max_examples=80, deadline=5000)
@given(
    header=st.sampled_from(_HEADERS),
    body=st.binary(max_size=200),
    extension=st.sampled_from(["png", "jpg", "gif", "bmp", "tif"]),
)
def test_random_bytes_into_the_image_reader(scratch, header, body, extension):
    path = scratch / f"random.{extension}"
    path.write_bytes(header + body)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's (re-issued) metadata warnings are fine
            image = read_image(path)
    except VizError as error:
        assert "\n" not in str(error)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


_DTYPES = st.sampled_from(
    ["uint8", "int16", "uint64", "float16", "float32", "float64", "bool", "complex64", "<U1"]
)
_CLASS_IDS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=2),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner),
    max_leaves=6,
)


@settings(max_examples=300, deadline=1000)
@given(class_ids=_CLASS_IDS, num_images=st.integers(1, 3), num_classes=st.none() | st.integers(1, 10))
def test_random_class_ids_into_the_parser(class_ids, num_images, num_classes):
    try:
        ids = parse_class_ids(class_ids, num_images, num_classes)
    except InputError as error:
        assert "\n" not in str(error)
        return
    if class_ids is None:
        assert ids is None
        return
    assert ids.dtype == np.int32 and ids.ndim == 2 and len(ids) == num_images and ids.shape[1] >= 1
    assert ids.min() >= 0 and (num_classes is None or ids.max() < num_classes)


@pytest.fixture(scope="module")
def warm_gradcam(gradcam):
    for n in (1, 2):  # trace once per batch size and target kind, so that timings are steady
        for class_ids in (None, 1, [1, 2]):
            gradcam(pixels(n), class_ids)
    return gradcam


_IMAGES = st.one_of(
    arrays(_DTYPES, array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=9)),
    arrays(_DTYPES, st.sampled_from([(1, 8, 8, 3), (2, 8, 8, 3), (8, 8, 3)])),
)


@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(
    images=_IMAGES, class_ids=st.sampled_from([None, 1, [1, 2], 7, -1, [[0], [1]], [[0, 1], [2]], 1.5, "x"])
)
def test_random_arrays_into_grad_cam(warm_gradcam, images, class_ids):
    try:
        maps = warm_gradcam(images, class_ids)
    except VizError as error:
        assert "\n" not in str(error)
        return
    assert maps.dtype == np.float32 and maps.shape[2:] == (8, 8)
    assert len(maps) == (len(images) if images.ndim == 4 else 1)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
