"""Bounds on every layer's values from the weights (`lib.methods.bounds`), and the methods' use of them:
a batch they cover runs without the per-layer NaN/Inf check, with the same maps; any other is checked."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lib.errors import InputError
from lib.methods import GradCAM, GuidedBackprop
from lib.methods.bounds import LIMIT, PixelBound, value_bounds
from lib.methods.finite import NOT_FINITE
from lib.methods.graph import ModelGraph
from lib.nets.layers import CaffePreprocess, LocalResponseNorm

SIZE = 12


def every_rule_net():
    """A small network with a layer of each kind the bounds have a rule for; kernels up to 3x, biases set."""
    keras.utils.set_random_seed(5)
    inp = keras.Input((SIZE, SIZE, 3))
    x = CaffePreprocess(name="pre")(inp)
    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="a")(x)
    b = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="b")(x)
    b = keras.layers.BatchNormalization(name="bn")(b)
    b = keras.layers.ReLU(max_value=6.0, name="relu6")(b)
    b = keras.layers.Conv2D(8, 1, activation="tanh", name="c")(b)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.LeakyReLU(negative_slope=0.3, name="leaky")(x)
    x = keras.layers.Concatenate(name="cat")([x, keras.layers.Conv2D(4, 1, activation="elu", name="d")(x)])
    x = LocalResponseNorm(name="lrn")(keras.layers.MaxPooling2D(name="pool")(x))
    gate = keras.layers.Dense(12, activation="sigmoid", name="gate")(keras.layers.GlobalAveragePooling2D()(x))
    x = keras.layers.Multiply(name="mul")([x, keras.layers.Reshape((1, 1, 12))(gate)])
    x = keras.layers.Flatten(name="flat")(keras.layers.AveragePooling2D(2, name="avg")(x))
    x = keras.layers.Dense(16, activation="silu", name="fc1")(x)
    model = keras.Model(inp, keras.layers.Dense(5, name="fc2")(x))
    bn = model.get_layer("bn")
    rng = np.random.default_rng(0)
    bn.set_weights([rng.uniform(0.5, 2, 6), rng.normal(0, 1, 6), rng.normal(0, 3, 6), rng.uniform(0.1, 2, 6)])
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:  # biases, which Keras starts at zero
            layer.bias.assign(rng.normal(0, 2, layer.bias.shape))
        if layer.name in ("a", "d", "fc1", "fc2"):
            layer.kernel.assign(layer.kernel * 3)
    return model


@pytest.mark.parametrize("m", [1.0, 255.0, 1e4])
def test_every_value_of_the_network_is_within_its_bound(m):
    """Random images and the corner images +-m: no channel of any layer exceeds a * m + c."""
    model = every_rule_net()
    graph = ModelGraph(model)
    bounds, limited = value_bounds(graph)
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.uniform(-m, m, (6, SIZE, SIZE, 3)),
            m * rng.choice([-1.0, 1.0], (6, SIZE, SIZE, 3)),
            np.full((1, SIZE, SIZE, 3), m),
            np.full((1, SIZE, SIZE, 3), -m),
        ]
    ).astype(np.float32)
    with graph.unchecked():
        values = graph.run(graph.steps, {graph.input_key: tf.constant(x)})
    checked = 0
    for key, bound in bounds.items():
        value = np.abs(values[key].numpy())
        peak = value.reshape(-1, value.shape[-1]).max(axis=0)  # per channel
        name = graph.producer(key).name if graph.producer(key) else "input"
        np.testing.assert_array_less(peak, bound.a * m + bound.c + 1e-3, err_msg=name)
        checked += 1
    assert checked == len(graph.steps) + 1 and limited  # every value, and the inner limits of bn and lrn


@pytest.mark.parametrize(
    "layer",
    [
        lambda: keras.layers.Conv2D(4, 1, bias_initializer="random_normal"),
        lambda: keras.layers.Dense(4, bias_initializer="random_normal"),
        lambda: keras.layers.DepthwiseConv2D(1, depth_multiplier=2, bias_initializer="random_normal"),
        lambda: keras.layers.BatchNormalization(
            moving_mean_initializer="random_normal",
            moving_variance_initializer="ones",
            gamma_initializer="random_normal",
            beta_initializer="random_normal",
        ),  # fmt: skip
        lambda: keras.layers.Rescaling(-2.0, offset=3.0),
        lambda: CaffePreprocess(),
    ],
)
def test_the_bound_of_an_affine_layer_is_attained(layer):
    """For one pixel of 3 channels, |value| is largest at a corner of the box |x| <= m: over the 8
    corners the largest value of each channel equals its bound, so no term of the rule is missing."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((1, 1, 3))
    graph = ModelGraph(keras.Model(inp, layer()(inp)))
    bounds, _ = value_bounds(graph)
    m = 7.0
    corners = m * np.array(np.meshgrid(*[[-1.0, 1.0]] * 3)).reshape(3, -1).T.reshape(8, 1, 1, 3)
    values = graph.run(graph.steps, {graph.input_key: tf.constant(corners, tf.float32)})[graph.logits_key]
    peak = np.abs(values.numpy()).reshape(8, -1).max(axis=0)
    bound = bounds[graph.logits_key]
    np.testing.assert_allclose(peak, np.broadcast_to(bound.a * m + bound.c, peak.shape), rtol=1e-5)


def test_the_proven_pixel_range_is_where_the_bound_meets_float32s_limit():
    graph = ModelGraph(every_rule_net())
    bound = PixelBound.of(graph)
    bounds, _ = value_bounds(graph)
    largest = max(np.max(b.a * bound.max_pixel + b.c) for b in bounds.values())
    assert 1e3 < bound.max_pixel < np.inf and largest <= LIMIT * (1 + 1e-6)
    assert bound.covers(np.full((1, 2, 2, 3), -bound.max_pixel, np.float32))
    assert not bound.covers(np.full((1, 2, 2, 3), 2 * bound.max_pixel, np.float32))


@pytest.mark.parametrize(
    "unknown",
    [
        lambda x: keras.layers.Lambda(lambda t: t * 2, name="lambda")(x),
        lambda x: keras.layers.Activation("exponential")(x),
        lambda x: keras.layers.Multiply()([x, x]),  # a product of two growing bounds is not affine
        lambda x: keras.layers.Conv2D(3, 1, dtype="mixed_float16")(x),
    ],
)
def test_a_step_without_a_rule_leaves_every_batch_checked(unknown):
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(unknown(x))
    bound = PixelBound.of(
        ModelGraph(keras.Model(inp, keras.layers.Dense(3)(keras.layers.Activation("linear")(x))))
    )
    assert bound.max_pixel == 0.0 and not bound.covers(np.zeros((1, 2, 2, 3), np.float32))


def per_layer_checks(method):
    """The number of CheckNumerics ops in each compiled pass of `method`, by whether it checks layers."""
    found = {}
    for (_, layers_checked), function in method._functions.items():
        (concrete,) = function._list_all_concrete_functions()
        ops = [op for op in concrete.graph.get_operations() if op.type == "CheckNumerics"]
        found[layers_checked] = len(ops)
    return found


@pytest.mark.filterwarnings("ignore:guided rule applies to ReLUs only")  # this network has elu and silu too
@pytest.mark.parametrize("method", [lambda m: GradCAM(m, "cat"), GuidedBackprop])
def test_covered_images_skip_the_layer_check_with_bit_equal_maps(method):
    model = every_rule_net()
    explainer = method(model)
    x = np.random.default_rng(2).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    fast = explainer(x, [1, 3])
    explainer._pixel_bound = PixelBound(0.0)  # as for a network without a bound: the checked pass
    np.testing.assert_array_equal(explainer(x, [1, 3]), fast)
    checks = per_layer_checks(explainer)
    assert checks[True] > checks[False] > 0  # the per-layer sums' checks, on top of the results'


def test_an_overflow_inside_the_network_is_still_refused():
    """Pixels of 10 overflow convolution a, whose Inf a tanh turns into a finite logit: the bound does
    not cover them, so the pass checks every layer and the method refuses the images."""
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 1, activation="relu", name="a")(inp)
    x = keras.layers.Conv2D(3, 1, activation="tanh", name="c")(keras.layers.MaxPooling2D()(x))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    overflow = np.zeros((1, 1, 3, 4), np.float32)
    overflow[..., 0] = 1e38
    model.get_layer("a").kernel.assign(overflow)
    method = GradCAM(model, "c")
    assert method._pixel_bound.max_pixel < 1e-5
    small = np.full((1, 8, 8, 3), 1e-7, np.float32)
    assert np.isfinite(method(small)).all() and tuple(k[1] for k in method._functions) == (True,)
    with pytest.raises(InputError, match="the model gives NaN or Inf"):
        method(np.full((1, 8, 8, 3), 10, np.float32))
    with method.graph.unchecked():  # what the check prevents: the same pass gives finite logits
        logits = method.graph.run(method.graph.steps, {method.graph.input_key: tf.fill((1, 8, 8, 3), 10.0)})
    assert np.isfinite(logits[method.graph.logits_key].numpy()).all() and NOT_FINITE
