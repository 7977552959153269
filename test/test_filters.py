"""Filters and feature maps: exact kernels, equality with a direct sub-model, selection rules."""

import gc
import weakref

import keras
import numpy as np
import pytest

from lib.errors import InputError, LayerError
from lib.methods.filters import FeatureMaps, feature_maps, filter_tiles, layer_filters
from lib.methods.keras_internals import cache_of


def small_cnn():
    """conv1 (3->6, 3x3) -> pool -> conv2 (6->16, 3x3) -> global pool -> dense, on 12x12 RGB."""
    images = keras.Input((12, 12, 3), name="images")
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(images)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(images, keras.layers.Dense(4, name="fc")(x), name="small")


def nested_cnn():
    """A 'pre' convolution, then a functional 'body' model (inner convs), then a classifier."""
    body_in = keras.Input((None, None, 4))
    y = keras.layers.Conv2D(5, 3, activation="relu", name="inner1")(body_in)
    body = keras.Model(body_in, keras.layers.Conv2D(7, 3, name="inner2")(y), name="body")
    images = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(4, 1, name="pre")(images)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(body(x))
    return keras.Model(images, keras.layers.Dense(2, name="fc")(x), name="outer"), body


@pytest.fixture(scope="module")
def model():
    return small_cnn()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(0, 255, (3, 12, 12, 3)).astype(np.float32)


def test_layer_filters_is_the_kernel_transposed(model):
    conv = model.get_layer("conv1")
    kernel = np.arange(3 * 3 * 3 * 6, dtype=np.float32).reshape(3, 3, 3, 6)  # (kh, kw, in, out)
    conv.kernel.assign(kernel)
    for layer in ("conv1", conv):
        weights = layer_filters(model, layer)
        assert weights.dtype == np.float32 and weights.shape == (6, 3, 3, 3)
        np.testing.assert_array_equal(weights, kernel.transpose(3, 0, 1, 2))
        np.testing.assert_array_equal(weights[2, 1, 0], kernel[1, 0, :, 2])  # filter 2, row 1, col 0


def test_layer_filters_inside_a_nested_model():
    outer, body = nested_cnn()
    expected = keras.ops.convert_to_numpy(body.get_layer("inner2").kernel).transpose(3, 0, 1, 2)
    np.testing.assert_array_equal(layer_filters(outer, "inner2"), expected)


def test_layer_filters_rejects_non_conv_layers_and_lists_the_conv_ones(model):
    with pytest.raises(LayerError, match="'pool1' is a MaxPooling2D, not a Conv2D; pick one of conv1, conv2"):
        layer_filters(model, "pool1")
    with pytest.raises(LayerError, match="no layer 'conv9'.*conv1, conv2"):
        layer_filters(model, "conv9")


def test_filter_tiles_colour_first_layer_and_scalings():
    weights = np.random.default_rng(0).normal(size=(8, 7, 7, 3)).astype(np.float32)
    tiles = filter_tiles(weights)  # each tile spans exactly [0, 1]
    assert tiles.shape == (8, 7, 7, 3)
    np.testing.assert_allclose(tiles.min(axis=(1, 2, 3)), 0)
    np.testing.assert_allclose(tiles.max(axis=(1, 2, 3)), 1)
    joint = filter_tiles(weights, scale="joint")  # one affine map for all tiles
    np.testing.assert_allclose(joint, (weights - weights.min()) / np.ptp(weights), atol=1e-6)
    np.testing.assert_array_equal(filter_tiles(weights, input_order="bgr"), tiles[..., ::-1])
    weights[3] = 2.0
    assert np.all(filter_tiles(weights)[3] == 0.5)  # constant tile: mid-gray, not NaN


def test_filter_tiles_gray_per_input_channel():
    weights = np.random.default_rng(0).normal(size=(4, 3, 3, 6)).astype(np.float32)
    tiles = filter_tiles(weights)
    assert tiles.shape == (4, 6, 3, 3)
    np.testing.assert_allclose(tiles.reshape(24, 9).min(axis=1), 0)
    np.testing.assert_array_equal(filter_tiles(weights, channels=[5, 1]), tiles[:, [5, 1]])
    with pytest.raises(InputError, match="out of range"):
        filter_tiles(weights, channels=[6])


def test_feature_maps_equal_a_direct_sub_model(model, images):
    maps, ids = feature_maps(model, "conv2", images, select="all")
    direct = keras.Model(model.input, model.get_layer("conv2").output)(images)
    np.testing.assert_array_equal(ids, np.arange(16))
    assert maps.dtype == np.float32 and maps.shape == (3, 5, 5, 16)
    np.testing.assert_allclose(maps, direct, rtol=1e-5, atol=1e-5)


def node_counts(model):
    layers = [model, *model.layers, *model.get_layer("body").layers]
    return [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers]


def test_feature_maps_inside_a_nested_model():
    outer, body = nested_cnn()
    before = node_counts(outer)
    x = np.random.default_rng(2).uniform(0, 255, (2, 10, 10, 3)).astype(np.float32)
    maps, _ = feature_maps(outer, "inner1", x, select="all")
    assert node_counts(outer) == before  # the user's model gains no nodes
    pre = outer.get_layer("pre")(x)
    direct = body.get_layer("inner1")(pre)
    np.testing.assert_allclose(maps, direct, rtol=1e-5, atol=1e-4)
    whole, _ = feature_maps(outer, "body", x, select="all")  # the nested model's own output
    np.testing.assert_allclose(whole, body(pre), rtol=1e-5, atol=1e-4)


def test_feature_maps_of_a_base_model_fed_by_the_input():
    base = small_cnn()
    images = keras.Input((12, 12, 3))
    outer = keras.Model(images, keras.layers.Dense(2)(base(images)))
    x = np.random.default_rng(4).uniform(0, 255, (2, 12, 12, 3)).astype(np.float32)
    direct = keras.Model(base.input, base.get_layer("pool1").output)(x)
    np.testing.assert_allclose(feature_maps(outer, "pool1", x, select="all")[0], direct, rtol=1e-5, atol=1e-5)


def test_random_selection_is_deterministic_by_seed(model, images):
    maps_a, ids_a = feature_maps(model, "conv2", images, num_maps=5, seed=7)
    maps_b, ids_b = feature_maps(model, "conv2", images, num_maps=5, seed=7)
    _, ids_c = feature_maps(model, "conv2", images, num_maps=5, seed=8)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(maps_a, maps_b)
    assert len(set(ids_a)) == 5 and list(ids_a) == sorted(ids_a) and list(ids_a) != list(ids_c)
    all_maps, _ = feature_maps(model, "conv2", images, select="all")
    np.testing.assert_array_equal(maps_a, all_maps[..., ids_a])


def test_strongest_selects_largest_mean_activation(model, images):
    conv2 = model.get_layer("conv2")
    bias = np.linspace(-1, 1, 16, dtype=np.float32)[np.random.default_rng(3).permutation(16)]
    conv2.bias.assign(bias * 50)  # spreads the channel means so the ranking is clear-cut
    all_maps, _ = FeatureMaps(model, "conv2")(images, select="all")
    means = all_maps.mean(axis=(0, 1, 2))
    maps, ids = FeatureMaps(model, "conv2")(images, num_maps=4, select="strongest")
    assert means[ids].min() > np.delete(means, ids).max()
    assert np.all(np.diff(means[ids]) <= 0)  # strongest first
    np.testing.assert_array_equal(maps, all_maps[..., ids])


def test_probe_is_built_once_and_traced_once(model, images):
    probe = FeatureMaps(model, "conv1")
    probe(images[:1])
    probe(images)  # another batch size: the input signature leaves the batch axis free
    assert probe.tracing_count == 1


def test_function_form_caches_without_keeping_the_model_alive(images):
    temp = small_cnn()
    feature_maps(temp, "conv1", images)
    (first,) = cache_of(temp).values()
    feature_maps(temp, "conv1", images, num_maps=2)
    assert list(cache_of(temp).values()) == [first] and first.tracing_count == 1
    ref = weakref.ref(temp)
    del temp, first
    gc.collect()
    assert ref() is None


def test_bad_layers_and_arguments_are_explained(model, images):
    with pytest.raises(
        LayerError, match="'fc' has output shape .*no .N, h, w, C. axes; pick one of conv1, pool1, conv2"
    ):
        FeatureMaps(model, "fc")
    with pytest.raises(LayerError, match="no layer 'conv7' in the model; pick one of conv1, pool1, conv2"):
        FeatureMaps(model, "conv7")
    probe = FeatureMaps(model, "conv1")
    with pytest.raises(InputError, match="outside 1..6"):
        probe(images, num_maps=7)
    with pytest.raises(InputError, match="conflicts with select='all'"):
        probe(images, num_maps=2, select="all")
    with pytest.raises(InputError, match="select='best'"):
        probe(images, select="best")
    with pytest.raises(
        InputError, match=r"images have shape \(5, 5, 3\) but the model expects \(12, 12, 3\)"
    ):
        probe(images[:, :5, :5])
    np.testing.assert_array_equal(probe(images[0], select="all")[0], probe(images[:1], select="all")[0])
