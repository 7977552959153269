"""The shared machinery of lib.methods: flattened graphs, layer resolution, logits, class ids."""

import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from lib.errors import InputError, LayerError
from lib.methods.graph import FINITE_PRESERVING, ModelGraph, call_op, is_plain_dense
from lib.methods.targets import parse_class_ids


def conv_net(top="dense_softmax"):
    """A small CNN; `top` says how it ends, so logits can be compared across endings."""
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inp)
    x = keras.layers.MaxPooling2D(name="p1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    dense = keras.layers.Dense(3, activation="softmax" if top == "dense_softmax" else None, name="fc")
    x = dense(x)
    if top == "activation":
        x = keras.layers.Activation("softmax", name="prob")(x)
    elif top == "softmax_layer":
        x = keras.layers.Softmax(name="prob")(x)
    return keras.Model(inp, x)


def nested_net():
    """conv layers inside an inner functional model, inside an outer model with a Sequential head."""
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(5, 3, activation="relu", name="c2")(x)
    inner = keras.Model(inp, x, name="inner")
    head = keras.Sequential(
        [keras.Input((12, 12, 5)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)],
        name="head",
    )
    outer_in = keras.Input((16, 16, 3))
    return keras.Model(outer_in, head(inner(outer_in)), name="outer")


def logits_of(graph, x):
    values = graph.run(graph.ancestors(graph.steps, graph.logits_key), {graph.input_key: x})
    return values[graph.logits_key].numpy()


@pytest.mark.parametrize("top", ["dense_softmax", "activation", "softmax_layer"])
def test_logits_are_taken_before_any_final_softmax(top):
    model = conv_net(top)
    x = tf.random.uniform((2, 16, 16, 3))
    graph = ModelGraph(model)
    dense = model.get_layer("fc")
    features = keras.Model(model.inputs, model.get_layer("gap").output)(x)
    expected = features.numpy() @ dense.kernel.numpy() + dense.bias.numpy()
    np.testing.assert_allclose(logits_of(graph, x), expected, rtol=1e-5, atol=1e-6)
    assert graph.softmax in ("fc", "prob")
    np.testing.assert_allclose(model(x).numpy().sum(-1), 1.0, rtol=1e-5)  # the model still has its softmax


def test_nested_models_are_flattened_and_run_like_the_model():
    model = nested_net()
    graph = ModelGraph(model)
    assert graph.spatial_names() == ["inner/c1", "inner/c2"]
    x = tf.random.uniform((3, 16, 16, 3))
    np.testing.assert_allclose(logits_of(graph, x), model(x).numpy(), rtol=1e-5, atol=1e-6)
    for name in ("c2", "inner/c2", model.get_layer("inner").get_layer("c2")):
        assert graph.resolve(name)[1] == "inner/c2"


def test_running_the_graph_adds_no_nodes_to_the_users_layers():
    model = nested_net()
    counts = [len(layer._inbound_nodes) for layer in model.get_layer("inner").layers]
    graph = ModelGraph(model)
    logits_of(graph, tf.zeros((1, 16, 16, 3)))
    assert [len(layer._inbound_nodes) for layer in model.get_layer("inner").layers] == counts


@pytest.mark.parametrize("activation", [None, "relu", "softmax"])
def test_dense_steps_match_keras_in_values_and_both_gradients(activation):
    """The runner's own Dense (faster input gradient) against the Keras layer, under one tape each."""
    rng = np.random.default_rng(1)
    layer = keras.layers.Dense(5, activation=activation)
    layer.build((None, 40))
    x = tf.constant(rng.normal(size=(6, 40)), tf.float32)
    upstream = tf.constant(rng.normal(size=(6, 5)), tf.float32)
    results = []
    for run in (lambda t: layer(t), lambda t: call_op(layer, (t,), {})):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = run(x)
            loss = tf.reduce_sum(y * upstream)
        results.append([y, *tape.gradient(loss, [x, layer.kernel, layer.bias])])
    for ours, reference in zip(results[1], results[0], strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
    assert is_plain_dense(layer, (x,))
    assert not is_plain_dense(layer, (tf.zeros((2, 3, 40)),))  # Dense on (N, T, features): Keras runs it


def test_layer_none_picks_the_last_spatial_layer_and_says_so():
    with pytest.warns(UserWarning, match="'p1'"):
        assert ModelGraph(conv_net()).resolve(None)[1] == "p1"


def test_unknown_layer_lists_the_spatial_layers():
    with pytest.raises(LayerError, match="no layer 'conv9'.*c1, p1"):
        ModelGraph(conv_net()).resolve("conv9")


def test_non_spatial_layer_is_refused_with_the_choices():
    with pytest.raises(LayerError, match="'fc' has output shape .*pick one of c1, p1"):
        ModelGraph(conv_net()).resolve("fc")


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(
        LayerError, match=r"subclassed keras.Model \(Net\).*keras.Model\(inputs, model.call\(inputs\)\)"
    ):
        ModelGraph(Net())


@pytest.mark.parametrize(
    ("class_ids", "expected"),
    [
        (2, [[2], [2]]),
        (np.int64(1), [[1], [1]]),
        ([0, 2], [[0, 2], [0, 2]]),
        ([[0], [1]], [[0], [1]]),
        (np.array([[0, 1], [2, 0]]), [[0, 1], [2, 0]]),
    ],
)
def test_class_ids_forms(class_ids, expected):
    np.testing.assert_array_equal(parse_class_ids(class_ids, 2, 3), expected)


@pytest.mark.parametrize(
    ("class_ids", "message"),
    [
        (3, "outside 0..2"),
        (-1, "outside 0..2"),
        ([[0, 1], [2]], "ragged"),
        ([[0], [1], [2]], "for 2 images"),
        (True, "bool"),
        (1.0, "pass an int"),
        ([], "pass an int"),
    ],
)
def test_bad_class_ids_raise_input_error(class_ids, message):
    with pytest.raises(InputError, match=message):
        parse_class_ids(class_ids, 2, 3)


def test_the_finite_check_skips_only_finite_preserving_layers_and_still_catches_an_overflow():
    """An overflow in a convolution is caught behind a concatenation and a max-pooling (whose outputs
    are not summed), though the tanh of the convolution after them turns its Inf into a finite logit."""
    inp = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 1, activation="relu", name="a")(inp)
    b = keras.layers.Conv2D(4, 1, activation="relu", name="b")(inp)
    x = keras.layers.MaxPooling2D(name="pool")(keras.layers.Concatenate(name="cat")([a, b]))
    x = keras.layers.Conv2D(3, 1, activation="tanh", name="c")(x)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D(name="gap")(x))
    overflow = np.zeros((1, 1, 3, 4), np.float32)
    overflow[..., 0] = 1e38  # channel 0 of a is Inf for pixels of 10, the others 0 (no 0 * Inf below)
    model.get_layer("a").kernel.assign(overflow)
    from_channel_0 = np.zeros((1, 1, 8, 3), np.float32)
    from_channel_0[0, 0, 0] = 1.0  # c = tanh(Inf) = 1: finite on every CPU, fused kernel or not
    model.get_layer("c").kernel.assign(from_channel_0)
    graph = ModelGraph(model)

    def run(x, check):
        with graph.unchecked() if not check else contextlib.nullcontext():
            values = graph.run(graph.steps, {graph.input_key: x})
        return values[graph.logits_key]

    compiled = {check: tf.function(lambda x, check=check: run(x, check)) for check in (True, False)}
    x = np.full((1, 8, 8, 3), 10, np.float32)
    assert np.isfinite(compiled[False](x)).all()  # unchecked, the overflow ends in finite logits
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
        compiled[True](x)
    np.testing.assert_allclose(compiled[True](x / 1e10), compiled[False](x / 1e10))
    summed = [type(step.op).__name__ for step in graph.steps if not isinstance(step.op, FINITE_PRESERVING)]
    assert sorted(summed) == ["Conv2D", "Conv2D", "Conv2D", "GlobalAveragePooling2D"]


def test_unchecked_traces_run_without_the_check_and_restores_it():
    graph = ModelGraph(conv_net())

    def check_ops(checking_block):
        def run(x):
            with checking_block():
                return graph.run(graph.steps, {graph.input_key: x})[graph.logits_key]

        traced = tf.function(run).get_concrete_function(tf.TensorSpec((1, 16, 16, 3)))
        return sum(op.type.startswith("CheckNumerics") for op in traced.graph.get_operations())

    assert check_ops(graph.unchecked) == 0
    assert check_ops(contextlib.nullcontext) == 1  # one check of all the sums, restored after the block
    with pytest.raises(ValueError), graph.unchecked():
        raise ValueError
    assert graph._checking
