"""Builders: published layer names, parameter counts and shapes; preprocessing and LRN against references."""

import keras
import numpy as np
import pytest

from lib.nets.googlenet import INCEPTION_BLOCKS, googlenet
from lib.nets.layers import CaffePreprocess, LocalResponseNorm
from lib.nets.vgg import vgg19

VGG19_NAMES = [
    *(f"conv{b}_{i}" for b, n in zip(range(1, 6), (2, 2, 4, 4, 4), strict=True) for i in range(1, n + 1)),
    *(f"pool{b}" for b in range(1, 6)),
    "fc6",
    "fc7",
    "fc8",
]

# Table 1 of Szegedy et al. 2014 for a 224x224 input: (height, width, channels).
GOOGLENET_TABLE1 = {
    "conv1_7x7_s2": (112, 112, 64),
    "pool1_3x3_s2": (56, 56, 64),
    "conv2_3x3": (56, 56, 192),
    "pool2_3x3_s2": (28, 28, 192),
    "inception_3a_output": (28, 28, 256),
    "inception_3b_output": (28, 28, 480),
    "pool3_3x3_s2": (14, 14, 480),
    "inception_4a_output": (14, 14, 512),
    "inception_4b_output": (14, 14, 512),
    "inception_4c_output": (14, 14, 512),
    "inception_4d_output": (14, 14, 528),
    "inception_4e_output": (14, 14, 832),
    "pool4_3x3_s2": (7, 7, 832),
    "inception_5a_output": (7, 7, 832),
    "inception_5b_output": (7, 7, 1024),
}


@pytest.fixture(scope="module")
def full_vgg19():
    return vgg19()


@pytest.fixture(scope="module")
def full_googlenet():
    return googlenet()


def test_vgg19_names_and_parameter_count_match_the_published_network(full_vgg19):
    names = {layer.name for layer in full_vgg19.layers}
    assert set(VGG19_NAMES) <= names
    assert full_vgg19.count_params() == 143_667_240
    assert full_vgg19.count_params() == keras.applications.VGG19(weights=None).count_params()
    assert full_vgg19.get_layer("fc8").activation is keras.activations.linear


def test_googlenet_parameter_count_and_table1_shapes(full_googlenet):
    assert full_googlenet.count_params() == 6_998_552
    for name, shape in GOOGLENET_TABLE1.items():
        assert tuple(full_googlenet.get_layer(name).output.shape[1:]) == shape, name
    branches = ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj", "output")
    names = {layer.name for layer in full_googlenet.layers}
    assert {f"inception_{b}_{s}" for b in INCEPTION_BLOCKS for s in branches} <= names
    assert {"conv1_7x7_s2", "conv2_3x3_reduce", "pool5_7x7_s1", "loss3_classifier"} <= names


def test_headless_models_accept_any_image_size():
    images = np.random.default_rng(0).uniform(0, 255, (1, 67, 45, 3)).astype("float32")
    small_vgg = vgg19(include_top=False, widths=(4, 4, 4, 4, 4))
    assert small_vgg(images).shape == (1, 2, 1, 4)
    small_googlenet = googlenet(include_top=False, width=0.1)
    assert small_googlenet(images).shape[1:3] == (3, 2)


def test_narrow_variants_come_from_the_same_builders():
    vgg = vgg19(classes=8, input_shape=(64, 64, 3), widths=(8, 16), convs_per_block=(1, 2), top="gap")
    assert [layer.name for layer in vgg.layers if layer.name.startswith(("conv", "pool"))] == [
        "conv1_1",
        "pool1",
        "conv2_1",
        "conv2_2",
    ]
    assert vgg.get_layer("conv2_2").output.shape[1:] == (32, 32, 16)
    assert vgg.output.shape[1:] == (8,)
    net = googlenet(classes=8, input_shape=(64, 64, 3), width=0.25, last_block="3b")
    assert net.get_layer("inception_3b_output").output.shape[1:] == (8, 8, 120)
    assert "inception_4a_output" not in {layer.name for layer in net.layers}


def test_preprocessing_matches_keras_caffe_mode():
    images = np.random.default_rng(1).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    expected = keras.applications.vgg19.preprocess_input(images.copy())
    np.testing.assert_allclose(CaffePreprocess()(images), expected, rtol=1e-6, atol=1e-4)


def test_local_response_norm_matches_the_caffe_formula():
    x = np.random.default_rng(2).normal(0, 30, (1, 2, 3, 7)).astype("float32")
    size, alpha, beta, k = 5, 1e-4, 0.75, 1.0
    expected = np.empty_like(x)
    for c in range(x.shape[-1]):
        window = x[..., max(0, c - size // 2) : c + size // 2 + 1]
        expected[..., c] = x[..., c] / (k + alpha / size * (window**2).sum(-1)) ** beta
    np.testing.assert_allclose(LocalResponseNorm(size, alpha, beta, k)(x), expected, rtol=1e-5)


def test_models_clone_and_save_with_their_custom_layers(tmp_path):
    net = googlenet(classes=3, input_shape=(32, 32, 3), width=0.1, last_block="3a")
    images = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    clone = keras.models.clone_model(net)
    clone.set_weights(net.get_weights())
    np.testing.assert_allclose(clone(images), net(images), rtol=1e-5, atol=1e-5)
    path = tmp_path / "net.keras"
    net.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(images), net(images), rtol=1e-5, atol=1e-5)


def test_builder_loads_all_but_the_named_layers(tmp_path):
    narrow = dict(input_shape=(32, 32, 3), widths=(4, 4, 4, 4, 4), fc_width=8)
    source = vgg19(classes=10, **narrow)
    path = tmp_path / "narrow.weights.h5"
    source.save_weights(path)
    model = vgg19(weights=str(path), classes=3, skip_weights=("fc8",), **narrow)
    for name in ("conv1_1", "conv5_4", "fc6", "fc7"):
        for loaded, saved in zip(
            model.get_layer(name).get_weights(), source.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(loaded, saved)
    assert model.get_layer("fc8").get_weights()[0].shape == (8, 3)
