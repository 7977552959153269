"""Every example takes any model from the shell: `--model net.keras`, `--list-layers`, one-line errors.

The model is a small CNN built here and saved as a .keras file: conv1 (ReLU), a nested Sequential block
(conv2, ReLU, pooling), conv3 (ReLU), global average pooling, and a dense layer to 5 classes; once with a
48x48 input, once with a free input size (None, None, 3), whose images keep their own size (64x64 for the
bundled samples).
"""

import re

import keras
import numpy as np
import pytest
import scipy.io
from example_support import assert_picture, files, image_folder, load_example, run_script
from PIL import Image

from lib import cli
from lib.errors import InputError
from lib.methods.graph import ModelGraph
from lib.nets import bundled, imagenet

SCRIPTS = ("vizfilter", "gradcam", "cam", "guided_backpropagation", "deconv")
SAMPLES = ("04_ring.png", "09_disk_ring.png")  # 64x64
# What each script writes for a run on SAMPLES, besides per-layer files.
FIGURES = {
    "vizfilter": ["filters_conv1.png", "04_ring_conv3_maps.png", "09_disk_ring_conv3_maps.png"],
    "gradcam": ["04_ring_gradcam.png", "09_disk_ring_gradcam.png", "gradcam_overview.png"],
    "cam": ["04_ring_cam.png", "09_disk_ring_cam.png", "cam_overview.png"],
    "guided_backpropagation": ["09_disk_ring_guided_backprop.png", "guided_backpropagation_overview.png"],
    "deconv": ["conv3_feat.png", "conv3_im.png", "conv3_top4.png", "block_relu2_top4.png"],
}
EXTRA_ARGS = {"deconv": ["--k", "4"]}


def small_cnn(size, classes=5):
    """The test CNN for (size, size, 3) images; size None gives a free input size."""
    x = keras.Input((size, size, 3))
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    block = keras.Sequential(
        [
            keras.Input((size, size, 8)),
            keras.layers.Conv2D(16, 3, padding="same", name="conv2"),
            keras.layers.ReLU(name="relu2"),
            keras.layers.MaxPooling2D(name="pool2"),
        ],
        name="block",
    )
    y = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3")(block(y))
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, keras.layers.Dense(classes, name="fc")(y), name="net")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """{"fixed": 48x48 model file, "free": free-size model file}."""
    root = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    paths = {"fixed": root / "fixed" / "net.keras", "free": root / "free" / "net.keras"}
    for kind, size in (("fixed", 48), ("free", None)):
        paths[kind].parent.mkdir()
        small_cnn(size).save(paths[kind])
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("images"), SAMPLES)


def run(name, *argv):
    """(status, stdout, stderr) of `example/<name>.py argv`."""
    status, out, err, _ = run_script(load_example(name), *argv)
    return status, out, err


def check_run(name, model, images, out):
    status, stdout, stderr = run(
        name, "--model", model, "--images", images, "--out", out, *EXTRA_ARGS.get(name, [])
    )
    assert status == 0, stderr
    written = files(out)
    assert set(FIGURES[name]) <= set(written), written
    for png in [name for name in written if name.endswith(".png")]:
        assert_picture(out / png, min_side=100, max_side=3000, min_std=5)
    return written


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_example_runs_a_model_file_with_a_fixed_input_size(model_files, images, tmp_path, name):
    check_run(name, model_files["fixed"], images, tmp_path)
    if name == "gradcam":  # the images were resized to the model's input size
        assert np.load(tmp_path / "09_disk_ring_gradcam.npy").shape == (2, 48, 48)
        assert np.load(tmp_path / "09_disk_ring_guided_gradcam.npy").shape == (2, 48, 48, 3)


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_every_example_runs_a_model_file_with_a_free_input_size(model_files, images, tmp_path, name):
    check_run(name, model_files["free"], images, tmp_path)
    if name == "gradcam":  # the images kept their own size
        assert np.load(tmp_path / "09_disk_ring_gradcam.npy").shape == (2, 64, 64)


def test_a_model_file_gives_its_input_size_and_class_names(model_files, tmp_path):
    fixed, free = cli.load_subject(str(model_files["fixed"])), cli.load_subject(str(model_files["free"]))
    assert (fixed.name, fixed.image_size, fixed.path) == ("net.keras", (48, 48), model_files["fixed"])
    assert fixed.class_names == ("class 0", "class 1", "class 2", "class 3", "class 4")
    assert free.image_size is None
    small_cnn(32, classes=1000).save(tmp_path / "imagenet.keras")
    assert cli.load_subject(str(tmp_path / "imagenet.keras")).class_names == imagenet.class_names()


def layer_rows(stdout):
    """{layer name: (type, output shape, spatial)} from the `--list-layers` table."""
    rows = [re.fullmatch(r"(\S+)\s+(\w+)\s+(\(.*\))\s+(yes|no)", line) for line in stdout.splitlines()]
    return {row[1]: (row[2], row[3], row[4] == "yes") for row in rows if row}


@pytest.mark.parametrize("name", SCRIPTS)
def test_list_layers_prints_every_layer_with_its_shape_and_whether_it_is_spatial(model_files, tmp_path, name):
    out = tmp_path / "out"
    status, stdout, stderr = run(name, "--model", model_files["fixed"], "--list-layers", "--out", out)
    assert (status, stderr) == (0, "")
    assert layer_rows(stdout) == {
        "conv1": ("Conv2D", "(None, 48, 48, 8)", True),
        "block/conv2": ("Conv2D", "(None, 48, 48, 16)", True),
        "block/relu2": ("ReLU", "(None, 48, 48, 16)", True),
        "block/pool2": ("MaxPooling2D", "(None, 24, 24, 16)", True),
        "conv3": ("Conv2D", "(None, 24, 24, 16)", True),
        "gap": ("GlobalAveragePooling2D", "(None, 16)", False),
        "fc": ("Dense", "(None, 5)", False),
    }
    assert "input (None, 48, 48, 3)" in stdout.splitlines()[0]
    assert not out.exists()  # nothing else was done


def test_list_layers_of_a_named_model_matches_its_graph(tmp_path):
    status, stdout, _ = run("gradcam", "--model", "shapes_vgg", "--list-layers", "--out", tmp_path / "out")
    assert status == 0
    graph = ModelGraph(bundled.load("shapes_vgg"))
    rows = layer_rows(stdout)
    assert list(rows) == [step.name for step in graph.steps]
    assert [name for name, (_, _, spatial) in rows.items() if spatial] == graph.spatial_names()
    assert all(rows[step.name][1] == str(step.shapes[0]) for step in graph.steps)


@pytest.mark.parametrize("name", ["vizfilter", "gradcam", "deconv"])
def test_a_nested_layer_named_as_list_layers_prints_it_is_a_valid_layer(model_files, images, tmp_path, name):
    argv = ["--model", model_files["fixed"], "--images", images / SAMPLES[0], "--layer", "block/relu2"]
    status, stdout, stderr = run(name, *argv, "--out", tmp_path, *EXTRA_ARGS.get(name, []))
    assert status == 0, stderr
    assert "block/relu2" in stdout.splitlines()[0]  # "Grad-CAM of net.keras at layer block/relu2, ..."


def write_bad_models(root):
    """{case: (path, phrase of the error)} of model files that cannot be used."""
    root.mkdir()
    (root / "junk.keras").write_text("not a model")
    (root / "junk.h5").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "notes.txt").write_text("not a model")
    keras.Sequential([keras.Input((10,)), keras.layers.Dense(3)]).save(root / "dense.keras")
    gray = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten()])
    gray.add(keras.layers.Dense(3))
    gray.save(root / "gray.keras")
    lam = [keras.Input((8, 8, 3)), keras.layers.Lambda(lambda t: t * 2), keras.layers.Conv2D(2, 3)]
    keras.Sequential([*lam, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)]).save(
        root / "lambda.keras"
    )
    keras.Sequential([keras.Input((10,)), keras.layers.Dense(3)]).save_weights(root / "only.weights.h5")
    return {
        "missing": (root / "nowhere.keras", f"model file '{root / 'nowhere.keras'}' does not exist"),
        "not-a-zip": (root / "junk.keras", "is not a .keras (zip) archive"),
        "not-hdf5": (root / "junk.h5", "is not an HDF5 file"),
        "extension": (root / "notes.txt", "is neither a model name (shapes_vgg, "),
        "folder": (root, "is neither a model name"),
        "not-an-image-model": (root / "dense.keras", "takes input of shape (None, 10)"),
        "gray-input": (root / "gray.keras", "takes input of shape (None, 8, 8, 1)"),
        "lambda-in-safe-mode": (
            root / "lambda.keras",
            "in safe mode (Requested the deserialization of a `Lambda`",
        ),
        "weights-only": (root / "only.weights.h5", "No model config found"),
    }


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    return write_bad_models(tmp_path_factory.mktemp("bad") / "models")


# Refused from the path and the file's first bytes, before the output folder is made; the other cases
# only once Keras has read the file, after it (as for every script, the output is checked first).
EARLY = ("missing", "not-a-zip", "not-hdf5", "extension", "folder")
CASES = (*EARLY, "not-an-image-model", "gray-input", "lambda-in-safe-mode", "weights-only")


@pytest.mark.parametrize("case", CASES)
def test_a_model_that_cannot_be_used_is_one_error_line_and_exit_status_2(bad_models, images, tmp_path, case):
    path, phrase = bad_models[case]
    with pytest.raises(InputError, match=re.escape(phrase)):
        cli.load_subject(str(path))
    out = tmp_path / "out"
    status, stdout, stderr = run("gradcam", "--model", path, "--images", images, "--out", out)
    assert (status, stdout) == (2, "")
    assert len(stderr.splitlines()) == 1 and stderr.startswith("error: ") and phrase in stderr, stderr
    assert files(out) == [] and out.exists() == (case not in EARLY)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_example_refuses_a_missing_model_before_writing_anything(images, tmp_path, name):
    missing, out = tmp_path / "net.keras", tmp_path / "out"
    for argv in (["--images", images, "--out", out], ["--list-layers"]):
        status, stdout, stderr = run(name, "--model", missing, *argv)
        assert (status, stdout) == (2, "")
        assert stderr == f"error: model file '{missing}' does not exist; check --model\n"
    assert not out.exists()


def test_weights_for_a_model_file_are_refused(model_files):
    with pytest.raises(
        InputError, match=r"^--weights is for the ImageNet models; model file '.*' has its own"
    ):
        cli.load_subject(str(model_files["fixed"]), "imagenet")


def test_deconv_refuses_images_of_different_sizes_for_a_free_size_model(model_files, tmp_path):
    folder = image_folder(tmp_path / "images", SAMPLES[:1])
    Image.new("RGB", (40, 48), (200, 30, 30)).save(folder / "small.png")
    argv = ["--model", model_files["free"], "--images", folder, "--batch-size", "1", "--k", "2"]
    status, _, stderr = run("deconv", *argv, "--out", tmp_path / "out")
    assert status == 2
    assert stderr.splitlines() == [
        "error: 'small' is 48x40, the images before it 64x64: the top-k search needs images of one size; "
        "resize them to one size, or pass --per-image"
    ]


@pytest.mark.slow
def test_cam_trains_a_head_on_a_model_file_and_predicts_from_its_checkpoint(model_files, images, tmp_path):
    argv = ["--train", "--model", model_files["fixed"], "--num-images", "32", "--epochs", "1"]
    argv += ["--train-batch-size", "16", "--conv-width", "8", "--out", tmp_path]
    status, _, stderr = run("cam", *argv)
    assert status == 0, stderr
    assert_picture(tmp_path / "cam_training.png", min_side=100, max_side=3000, min_std=5)
    out = tmp_path / "predict"
    status, stdout, stderr = run(
        "cam", "--checkpoint", tmp_path / "checkpoint", "--images", images, "--out", out
    )
    assert status == 0, stderr
    assert scipy.io.loadmat(out / "cam.mat")["maps"].shape == (2, 3, 48, 48)  # top 3, at the model's size
    assert_picture(out / "cam_overview.png", min_side=100, max_side=3000, min_std=5)


def test_default_layers_spread_over_the_features_of_a_model_without_hand_picked_ones(model_files):
    model = cli.load_subject(str(model_files["fixed"])).model
    assert cli.default_layers(model, 3) == ["conv1", "block/relu2", "conv3"]  # the outputs of ReLUs
    assert cli.default_layers(model, 2) == ["block/relu2", "conv3"]
    middle, last = cli.default_layers(bundled.load("shapes_vgg"), 2)
    assert middle.startswith("conv") and last == bundled.LAST_CONV_LAYER["shapes_vgg"]
