"""Deconvnet against an explicit unpool-with-switches + transposed-convolution pass; receptive fields."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lib.errors import InputError
from lib.methods.deconvnet import Deconvnet
from lib.methods.graph import ModelGraph
from lib.methods.receptive_field import receptive_field


def conv_relu_pool_conv():
    inp = keras.Input((12, 12, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    return keras.Model(inp, keras.layers.Conv2D(4, 3, name="c2")(x))  # c2: (N, 4, 4, 4)


def explicit_deconvnet(model, image, row, col, channel, value):
    """Zeiler-Fergus by hand: seed, transposed c2, unpool through the switches, rectify, transposed c1."""
    w1, b1 = model.get_layer("c1").get_weights()
    w2 = model.get_layer("c2").get_weights()[0]
    a1 = np.maximum(tf.nn.conv2d(image[None], w1, 1, "SAME").numpy()[0] + b1, 0)  # (12, 12, 3)
    seed = np.zeros((1, 4, 4, 4), np.float32)
    seed[0, row, col, channel] = value
    pooled_signal = tf.nn.conv2d_transpose(seed, w2, (1, 6, 6, 3), 1, "VALID").numpy()[0]
    unpooled = np.zeros_like(a1)
    for i, j, c in np.ndindex(6, 6, 3):
        window = a1[2 * i : 2 * i + 2, 2 * j : 2 * j + 2, c]
        di, dj = np.unravel_index(np.argmax(window), (2, 2))  # the switch: where the max was
        unpooled[2 * i + di, 2 * j + dj, c] = pooled_signal[i, j, c]
    rectified = np.maximum(unpooled, 0)
    return tf.nn.conv2d_transpose(rectified[None], w1, (1, 12, 12, 2), 1, "SAME").numpy()[0]


def pictures(n, size=12, channels=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, channels)).astype(np.float32)


def test_deconvnet_equals_an_explicit_unpooling_and_transposed_convolution():
    model, x = conv_relu_pool_conv(), pictures(2)
    rec = Deconvnet(model, "c2")(x, k=3)
    assert rec.maps.shape == (2, 3, 12, 12, 2)
    for n, k in np.ndindex(2, 3):
        (row, col), channel = rec.positions[n, k], rec.channels[n, k]
        expected = explicit_deconvnet(model, x[n], row, col, channel, rec.values[n, k])
        np.testing.assert_allclose(rec.maps[n, k], expected, rtol=1e-5, atol=1e-6)
    acts = model(x).numpy()
    rows, cols = rec.positions[..., 0], rec.positions[..., 1]
    np.testing.assert_array_equal(acts[np.arange(2)[:, None], rows, cols, rec.channels], rec.values)
    np.testing.assert_allclose(rec.values[:, 0], acts.max(axis=(1, 2, 3)), rtol=1e-6)


def test_reconstructions_stay_inside_the_receptive_field():
    model, x = conv_relu_pool_conv(), pictures(2, seed=1)
    rec = Deconvnet(model, "c2")(x, channel=1, k=4)
    assert (rec.channels == 1).all()
    for n, k in np.ndindex(2, 4):
        top, left, bottom, right = rec.boxes[n, k]
        inside = np.zeros((12, 12), bool)
        inside[top:bottom, left:right] = True
        assert not rec.maps[n, k][~inside].any() and rec.maps[n, k][inside].any()


def footprint_net():
    """Linear with positive weights: every pixel of a unit's receptive field has a positive gradient."""
    inp = keras.Input((40, 40, 1))
    x = keras.layers.Conv2D(2, 3, strides=2, padding="same", name="s2")(inp)  # 20x20
    x = keras.layers.ZeroPadding2D(((1, 0), (2, 1)), name="pad")(x)  # 21x23
    a = keras.layers.Conv2D(2, 3, dilation_rate=2, name="dilated")(x)  # 17x19
    b = keras.layers.Cropping2D(2, name="crop")(x)  # 17x19
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.AveragePooling2D(3, strides=2, padding="same", name="avg")(x)  # 9x10
    x = keras.layers.Conv2D(1, 3, padding="same", name="top")(x)
    model = keras.Model(inp, x)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([np.full(w.shape, 0.1, np.float32) for w in layer.get_weights()])
    return model


@pytest.mark.parametrize("unit", [(0, 0), (4, 5), (8, 9)])
def test_receptive_field_is_the_gradient_footprint(unit):
    model = footprint_net()
    x = tf.ones((1, 40, 40, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = model(x)[0, unit[0], unit[1], 0]
    rows, cols = np.nonzero(tape.gradient(out, x).numpy()[0, :, :, 0])
    graph = ModelGraph(model)
    field = receptive_field(graph, graph.resolve("top")[0], (40, 40))
    assert field.length == (9, 10)
    top, left, bottom, right = field.box(*unit)
    assert (rows.min(), cols.min()) == (max(top, 0), max(left, 0))
    assert (rows.max() + 1, cols.max() + 1) == (min(bottom, 40), min(right, 40))


def test_top_activations_match_a_brute_force_search():
    model, x = conv_relu_pool_conv(), pictures(7, seed=2)
    method = Deconvnet(model, "c2")
    top = method.top_activations(x, k=5, batch_size=3)
    peaks = model(x).numpy().max(axis=(1, 2))  # (7, 4): each (image, channel)'s peak
    order = np.argsort(-peaks.ravel(), kind="stable")[:5]
    np.testing.assert_allclose(top.values, peaks.ravel()[order], rtol=1e-6)
    np.testing.assert_array_equal(top.image_index, order // 4)
    np.testing.assert_array_equal(top.channels, order % 4)
    field = method.field((12, 12))
    assert top.patches.shape == top.reconstructions.shape == (5, *field.size, 2) == (5, 8, 8, 2)
    for i, (n, c) in enumerate(zip(top.image_index, top.channels, strict=True)):
        t, le, b, r = field.box(*top.positions[i])
        padded = np.pad(x[n], ((10, 10), (10, 10), (0, 0)))
        np.testing.assert_array_equal(top.patches[i], padded[t + 10 : b + 10, le + 10 : r + 10])
        full = np.pad(method(x[n : n + 1], channel=int(c), k=1).maps[0, 0], ((10, 10), (10, 10), (0, 0)))
        np.testing.assert_allclose(top.reconstructions[i], full[t + 10 : b + 10, le + 10 : r + 10], atol=1e-6)
    again = method.top_activations(iter([x[:2], x[2:]]), k=5)  # any iterable of batches
    np.testing.assert_array_equal(again.image_index, top.image_index)


def test_top_activations_of_one_channel():
    model, x = conv_relu_pool_conv(), pictures(6, seed=3)
    top = Deconvnet(model, "c2").top_activations(x, channel=2, k=3, batch_size=4)
    peaks = model(x).numpy()[..., 2].max(axis=(1, 2))
    assert (top.channels == 2).all()
    np.testing.assert_allclose(top.values, np.sort(peaks)[::-1][:3], rtol=1e-6)


def test_bad_channel_or_k_raise_input_error():
    method, x = Deconvnet(conv_relu_pool_conv(), "c2"), pictures(1)
    for kwargs, message in [({"channel": 4}, "channels 0..3"), ({"k": 5}, "from 1 to 4"), ({"k": 0}, "k=0")]:
        with pytest.raises(InputError, match=message):
            method(x, **kwargs)
    with pytest.raises(InputError, match="no images"):
        method.top_activations(iter([]))
    with pytest.raises(InputError, match="k=0"):
        method.top_activations(x, k=0)
