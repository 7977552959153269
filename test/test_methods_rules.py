"""Guided backpropagation and deconvnet rules at ReLUs: exact on a hand-made toy, and on real models."""

import keras
import numpy as np
import pytest

from lib.errors import LayerError
from lib.methods.deconvnet import Deconvnet
from lib.methods.grad_cam import GuidedGradCAM
from lib.methods.guided_backprop import GuidedBackprop
from lib.methods.rules import Rules

# The toy: 4 input values -> 4 hidden units (1x1 convolution, diagonal weights) -> ReLU -> 2 outputs.
X = np.array([1.0, 2.0, -1.0, 0.5], np.float32)
W = np.diag([1.0, 4.0, 1.0, 2.0]).astype(np.float32)
B = np.array([0.5, -0.5, 0.2, -2.0], np.float32)  # pre-activations z = [1.5, 7.5, -0.8, -1.0]
V = np.array([[1.0, -1.0], [-2.0, 2.0], [3.0, -3.0], [-1.0, 1.0]], np.float32)  # g = V[:, class]

# Hand-computed input gradients dx = W @ h, h the rule's signal at z; rows: class 0, class 1.
GUIDED = {
    "relu": [[1, 0, 0, 0], [0, 8, 0, 0]],  # relu(g) * (z > 0)
    "relu6": [[1, 0, 0, 0], [0, 0, 0, 0]],  # relu(g) * (0 < z < 6): unit 1 is saturated at 7.5
    "leaky": [[1, 0, 0.3, 0], [0, 8, 0, 0.2]],  # relu(g) * slope, slope 0.1 where z < 0
}
VARIANTS = {
    "fused": ("relu", lambda x: keras.layers.Conv2D(4, 1, activation="relu", name="hidden")(x)),
    "relu_layer": ("relu", lambda x: keras.layers.ReLU()(_linear(x))),
    "activation": ("relu", lambda x: keras.layers.Activation("relu")(_linear(x))),
    "keras_op": ("relu", lambda x: keras.ops.relu(_linear(x))),
    "relu6_layer": ("relu6", lambda x: keras.layers.ReLU(6.0)(_linear(x))),
    "relu6_fused": ("relu6", lambda x: keras.layers.Conv2D(4, 1, activation="relu6", name="hidden")(x)),
    "leaky": ("leaky", lambda x: keras.layers.LeakyReLU(negative_slope=0.1)(_linear(x))),
}


def _linear(x):
    return keras.layers.Conv2D(4, 1, name="hidden")(x)


def toy(variant):
    inp = keras.Input((1, 1, 4))
    x = VARIANTS[variant][1](inp)
    x = keras.layers.Conv2D(2, 1, use_bias=False, name="out")(x)
    model = keras.Model(inp, keras.layers.Reshape((2,))(x))
    model.get_layer("hidden").set_weights([W[None, None], B])
    model.get_layer("out").set_weights([V[None, None]])
    return model


@pytest.mark.parametrize("variant", VARIANTS)
def test_guided_rule_gives_the_hand_computed_gradients(variant):
    grads = GuidedBackprop(toy(variant))(X[None, None, None], class_ids=[0, 1])  # (1, 2, 1, 1, 4)
    np.testing.assert_array_equal(grads[0, :, 0, 0], np.float32(GUIDED[VARIANTS[variant][0]]))


@pytest.mark.parametrize("variant", VARIANTS)
def test_deconvnet_rule_gives_the_hand_computed_gradients(variant):
    model = toy(variant)
    rec = Deconvnet(model, "out")(X[None, None, None], k=2)
    outputs = model(X[None, None, None]).numpy()[0]
    for k in range(2):
        channel, value = rec.channels[0, k], rec.values[0, k]
        assert value == pytest.approx(outputs[channel])
        expected = W @ np.maximum(value * V[:, channel], 0)  # seed = the activation; relu(g) at the ReLU
        np.testing.assert_allclose(rec.maps[0, k, 0, 0], expected, rtol=1e-6)


def test_model_without_relu_is_refused_instead_of_returning_plain_gradients():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, name="conv")(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    for make in (GuidedBackprop, lambda m: GuidedGradCAM(m, "conv"), lambda m: Deconvnet(m, "conv")):
        with pytest.raises(LayerError, match="no ReLU"):
            make(model)


class Block(keras.layers.Layer):
    """A custom layer whose ReLU the rules cannot reach."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(2, 3, activation="relu")

    def call(self, x):
        return self.conv(x)


def test_other_nonlinearities_and_unreachable_relus_are_reported():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, activation="gelu", name="smooth")(inp)
    x = Block(name="block")(keras.layers.Conv2D(2, 3, activation="relu")(x))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.warns(UserWarning, match="normal gradients at smooth, block"):
        GuidedBackprop(model)


def test_rule_names_are_checked():
    with pytest.raises(ValueError, match="rule='guidde'"):
        Rules("guidde", [])
