"""One test per function of `lib.methods.keras_internals`, each asserting the property the graph runner
relies on, so that a Keras release that moves a private name fails here under that function's name.
They run on the lowest and the highest allowed Keras (`test_keras_floor.py` runs the lowest)."""

import gc
import weakref

import keras
import numpy as np
import pytest

from lib.methods import keras_internals as internals


class Reduce(keras.layers.Layer):
    """Sums over `axis`, a non-tensor argument of the call."""

    def call(self, x, axis):
        return keras.ops.sum(x, axis=axis)


class Block(keras.layers.Layer):
    """A custom layer with a Conv2D and a nested block holding a ReLU, which the runner cannot reach."""

    def __init__(self, inner=True, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(2, 1, name="block_conv")
        self.inner = Block(inner=False, name="inner") if inner else None
        self.relu = keras.layers.ReLU(name="block_relu")

    def call(self, x):
        return self.relu(self.conv(x))


def functional_with_a_shared_layer():
    """input -> dense -> relu op -> the same dense again -> log_softmax op."""
    inp = keras.Input((4,), name="x")
    dense = keras.layers.Dense(4, name="shared")
    out = keras.ops.log_softmax(dense(keras.ops.relu(dense(inp))))
    return keras.Model(inp, out), dense


def sequential(built=True):
    layers = [keras.layers.Dense(3, name="d1"), keras.layers.Dense(2, name="d2")]
    return keras.Sequential(([keras.Input((4,))] if built else []) + layers)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


def graph_nodes(functional):
    """The nodes of `functional` in call order, input nodes left out."""
    nodes = internals.nodes_by_depth(functional)
    return [n for depth in sorted(nodes, reverse=True) for n in nodes[depth] if not n.is_input]


def node_of(functional, op_type):
    return next(n for n in graph_nodes(functional) if isinstance(n.operation, op_type))


def test_nodes_by_depth_lists_every_layer_call_in_call_order():
    model, dense = functional_with_a_shared_layer()
    ops = [n.operation for n in graph_nodes(model)]
    assert ops[0] is dense and ops[2] is dense  # a shared layer appears once per call
    assert [internals.op_name(op) for op in ops[1::2]] == ["relu", "logsoftmax"]
    nodes = internals.nodes_by_depth(model)
    assert all(n.is_input for n in nodes[max(nodes)])
    assert [t for n in nodes[0] for t in n.outputs] == model.outputs


def test_is_functional_only_for_models_with_a_node_graph():
    model, dense = functional_with_a_shared_layer()
    assert internals.is_functional(model)
    assert not internals.is_functional(sequential())  # its graph is inside, see functional_of
    assert not internals.is_functional(Subclassed())
    assert not internals.is_functional(dense)


def test_functional_of_gives_the_graph_of_a_built_sequential_and_none_otherwise():
    model, _ = functional_with_a_shared_layer()
    assert internals.functional_of(model) is model
    seq = sequential()
    fn = internals.functional_of(seq)
    assert [n.operation for n in graph_nodes(fn)] == seq.layers
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(fn(x), seq(x))
    assert internals.functional_of(sequential(built=False)) is None
    assert internals.functional_of(Subclassed()) is None


def test_node_input_tensors_are_the_symbolic_inputs_in_call_order():
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    model = keras.Model([a, b], keras.layers.Subtract()([b, a]))
    node = node_of(model, keras.layers.Subtract)
    assert [id(t) for t in internals.node_input_tensors(node)] == [id(b), id(a)]


def test_fill_node_arguments_replaces_tensors_and_keeps_non_tensor_arguments():
    inp = keras.Input((2, 3))
    model = keras.Model(inp, Reduce()(inp, axis=2))
    node = node_of(model, Reduce)
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    tensor = keras.ops.convert_to_tensor(x)
    args, kwargs = internals.fill_node_arguments(node, {id(inp): tensor})
    assert args[0] is tensor and kwargs == {"axis": 2}
    np.testing.assert_allclose(node.operation(*args, **kwargs), x.sum(axis=2))


@pytest.mark.parametrize(
    "op",
    [
        keras.layers.Dropout(0.5),
        keras.layers.BatchNormalization(),
        keras.layers.RandomFlip("horizontal"),
        keras.Sequential([keras.layers.RandomFlip("horizontal")]),
    ],
    ids=lambda op: type(op).__name__,
)
def test_accepts_training_for_layers_that_training_false_makes_inert(op):
    assert internals.accepts_training(op)
    x = np.random.default_rng(0).uniform(size=(2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(op(x, training=False), x, rtol=1e-3, atol=1e-3)


def test_accepts_training_is_false_for_conv2d_and_keras_ops_operations():
    assert not internals.accepts_training(keras.layers.Conv2D(2, 3))
    model, _ = functional_with_a_shared_layer()
    ops = [n.operation for n in graph_nodes(model) if not isinstance(n.operation, keras.layers.Layer)]
    assert len(ops) == 2 and not any(internals.accepts_training(op) for op in ops)


def test_op_name_of_keras_ops_nodes():
    inp = keras.Input((4,))
    outs = [keras.ops.log_softmax(inp), keras.ops.relu(inp), keras.ops.softmax(inp)]
    model = keras.Model(inp, outs)
    names = sorted(internals.op_name(n.operation) for n in graph_nodes(model))
    assert names == ["logsoftmax", "relu", "softmax"]


def test_sublayers_finds_nested_layers_but_not_the_layer_itself():
    block = Block(name="outer")
    found = internals.sublayers(block)
    assert block not in found
    assert {layer.name for layer in found} >= {"block_conv", "block_relu", "inner"}
    assert sum(isinstance(layer, keras.layers.ReLU) for layer in found) == 2  # the inner block's too
    assert internals.sublayers(keras.layers.Conv2D(2, 1)) == []
    assert internals.sublayers("not a layer") == []


@pytest.mark.parametrize("activation", ["relu", "softmax"])
def test_without_activation_shares_the_variables_and_skips_the_activation(activation):
    layer = keras.layers.Dense(3, activation=activation)
    x = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    layer(x)
    view = internals.without_activation(layer)
    assert view.kernel is layer.kernel and view.bias is layer.bias
    np.testing.assert_allclose(view(x), x @ layer.kernel.numpy() + layer.bias.numpy(), rtol=1e-5, atol=1e-6)
    assert layer.activation is keras.activations.get(activation)  # the user's layer keeps its activation
    layer.kernel.assign(2 * layer.kernel)  # a later weight update is seen through the view
    np.testing.assert_allclose(view(x), x @ layer.kernel.numpy() + layer.bias.numpy(), rtol=1e-5, atol=1e-6)


class MyDense(keras.layers.Dense):
    pass


def built(layer):
    layer.build((None, 4))
    return layer


def test_is_plain_float_dense_only_for_an_unmodified_float32_dense():
    assert internals.is_plain_float_dense(built(keras.layers.Dense(2)))
    assert not internals.is_plain_float_dense(built(MyDense(2)))
    assert not internals.is_plain_float_dense(built(keras.layers.Dense(2, dtype="mixed_float16")))
    assert not internals.is_plain_float_dense(keras.layers.Conv1D(2, 1))
    lora = built(keras.layers.Dense(2))
    lora.enable_lora(1)
    assert not internals.is_plain_float_dense(lora)
    quantized = built(keras.layers.Dense(2))
    quantized.quantize("int8")
    assert not internals.is_plain_float_dense(quantized)  # its kernel is int8


def test_cache_of_lives_and_dies_with_the_model():
    model, _ = functional_with_a_shared_layer()
    n_layers, n_weights = len(model.layers), len(model.weights)
    cache = internals.cache_of(model)
    cache["predict"] = model.predict  # refers back to the model
    cache["layer"] = keras.layers.Dense(7)  # not tracked as a sublayer of the model
    assert internals.cache_of(model) is cache
    assert internals.cache_of(functional_with_a_shared_layer()[0]) == {}
    assert (len(model.layers), len(model.weights)) == (n_layers, n_weights)
    ref = weakref.ref(model)
    del model, cache
    gc.collect()
    assert ref() is None
