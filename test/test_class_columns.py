"""The chosen classes' scores through their own columns of the last linear layer (`ClassColumns`): equal
to the logits, found only for heads where the classes stay apart, and Grad-CAM through them equal to
the formula on gradients that Keras and a plain tape give."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_methods_cam_variants import activations_and_gradients, finish, grad_cam_plus_plus

from lib.methods import GradCAM, GradCAMPlusPlus, LayerCAM
from lib.methods.class_columns import ClassColumns
from lib.methods.graph import ModelGraph

SIZE, CLASSES = 16, 6
IDS = np.array([[0, 5], [3, 3], [2, 1]], np.int32)


def net(head, name="net"):
    """conv-relu "c1" -> conv-relu "c2" -> `head(x)`, as one functional model."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="c2")(x)
    return keras.Model(inp, head(x), name=name)


def nin_head(x):  # SqueezeNet's: 1x1 convolution to the classes, ReLU, global average pooling, softmax
    x = keras.layers.Conv2D(CLASSES, 1, name="classes")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.layers.Softmax()(x)


def dense_head(x):  # VGG's and EfficientNet's: pooling, then a Dense with a fused softmax
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10, activation="relu")(x)
    return keras.layers.Dense(CLASSES, activation="softmax", name="classes")(x)


def images(n=3):
    return np.random.default_rng(0).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def columns_of(model, layer="c2"):
    graph = ModelGraph(model)
    base, head = graph.split(graph.resolve(layer)[0])
    return graph, base, head, ClassColumns.of(graph, head)


@pytest.mark.parametrize("head", [nin_head, dense_head])
def test_the_scores_equal_the_logits_at_the_chosen_classes(head):
    graph, base, head_steps, columns = columns_of(net(head))
    assert columns is not None and columns.linear.name == "classes"
    values = graph.run(head_steps, graph.run(base, {graph.input_key: tf.constant(images())}))
    expected = np.take_along_axis(values[graph.logits_key].numpy(), IDS, axis=1)
    np.testing.assert_allclose(
        columns.scores(values, tf.constant(IDS)).numpy(), expected, rtol=1e-5, atol=1e-6
    )


def mixing_heads():
    """Heads whose last step mixes the classes, or whose last linear layer is not a 1x1 one."""

    def batch_norm_after(x):
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(CLASSES, 1)(x))
        return keras.layers.BatchNormalization()(x)

    def wide_convolution(x):
        return keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(CLASSES, 3)(x))

    def flatten_after(x):
        return keras.layers.Flatten()(keras.layers.Conv2D(CLASSES, 1)(keras.layers.MaxPooling2D(8)(x)))

    return [batch_norm_after, wide_convolution, flatten_after]


@pytest.mark.parametrize("head", mixing_heads())
def test_no_columns_where_the_head_mixes_the_classes(head):
    assert columns_of(net(head))[3] is None


def test_no_columns_for_a_layer_at_or_above_the_class_layer():
    assert columns_of(net(nin_head), layer="classes")[3] is None


FORMULAS = {
    GradCAM: lambda a, g: np.einsum("nhwc,nkc->nkhw", a, g.mean(axis=(2, 3))),
    GradCAMPlusPlus: grad_cam_plus_plus,
    LayerCAM: lambda a, g: np.einsum("nhwc,nkhwc->nkhw", a, np.maximum(g, 0)),
}


@pytest.mark.parametrize("method", FORMULAS)
@pytest.mark.parametrize("head", [nin_head, dense_head])
def test_class_maps_through_the_columns_equal_the_formula_on_keras_gradients(method, head):
    model, x = net(head), images()
    features = keras.Model(model.input, model.get_layer("c2").output)
    a, g = activations_and_gradients(features, _logits_above(model, "c2"), x, IDS)
    explainer = method(model, "c2")
    assert explainer._columns is not None  # the path under test
    maps = explainer(x, IDS)
    assert (maps.max(axis=(2, 3)) == 1).sum() >= 4  # most of the 6 maps are not all zero
    np.testing.assert_allclose(maps, finish(FORMULAS[method](a, g)), atol=1e-5)


def _logits_above(model, layer):
    """Keras' own calls from `layer`'s output to the logits (before the final softmax, fused or a layer)."""
    last = model.layers[-1]
    below = keras.Model(model.get_layer(layer).output, last.input)
    if isinstance(last, keras.layers.Softmax):
        return lambda a: below(a)
    return lambda a: tf.matmul(below(a), last.kernel) + last.bias
