"""Grad-CAM, Guided Grad-CAM, CAM and guided backpropagation: equivalences that could fail; and
the NaN/Inf checks that every method shares."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lib.errors import InputError, LayerError
from lib.methods.cam import CAM
from lib.methods.deconvnet import Deconvnet
from lib.methods.grad_cam import GradCAM, GuidedGradCAM, grad_cam
from lib.methods.guided_backprop import GuidedBackprop

SIZE = 24


def layers_of_gap_net(classes=4):
    return [
        keras.layers.Conv2D(6, 3, activation="relu", name="c1"),
        keras.layers.MaxPooling2D(name="p1"),
        keras.layers.Conv2D(8, 3, activation="relu", padding="same", name="c2"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(classes, name="fc"),
    ]


def chain(x, layers):
    for layer in layers:
        x = layer(x)
    return x


def gap_net(softmax=True):
    """conv-relu, pool, conv-relu, global average pooling, dense (+ softmax)."""
    inp = keras.Input((SIZE, SIZE, 3))
    x = chain(inp, layers_of_gap_net())
    return keras.Model(inp, keras.layers.Softmax()(x) if softmax else x)


def fc_net():
    """A VGG-like top: ReLUs above the explained layer, so Guided Grad-CAM must split base and head."""
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="c2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="fc6")(x)
    return keras.Model(inp, keras.layers.Dense(4, activation="softmax", name="fc8")(x))


def images(n=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


IDS = [[0, 2], [1, 3], [3, 0]]
METHODS = {
    "grad_cam": lambda m: GradCAM(m, "c2"),
    "guided_grad_cam": lambda m: GuidedGradCAM(m, "c2"),
    "cam": CAM,
    "guided_backprop": GuidedBackprop,
}


def test_grad_cam_equals_cam_on_a_gap_network():
    model, x = gap_net(), images()
    ids = [[0, 1, 2, 3]] * 3
    a, b = GradCAM(model, "c2")(x, ids), CAM(model)(x, ids)
    assert a.shape == (3, 4, SIZE, SIZE) and a.dtype == np.float32
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert (a.max(axis=(2, 3)) == 1).sum() >= 6  # most maps are non-trivial, scaled to peak 1


@pytest.mark.parametrize("name", METHODS)
def test_a_batch_equals_one_image_at_a_time_and_k_classes_equal_k_calls(name):
    method, x = METHODS[name](fc_net() if name == "guided_grad_cam" else gap_net()), images()
    together = method(x, IDS)
    one_by_one = np.concatenate([method(x[i : i + 1], IDS[i : i + 1]) for i in range(3)])
    class_by_class = np.concatenate([method(x, [row[k : k + 1] for row in IDS]) for k in range(2)], axis=1)
    scale = np.abs(together).max()
    np.testing.assert_allclose(one_by_one, together, atol=1e-5 * scale)
    np.testing.assert_allclose(class_by_class, together, atol=1e-5 * scale)


def test_guided_grad_cam_is_guided_backprop_times_grad_cam_with_relus_above_the_layer():
    model, x = fc_net(), images()
    expected = GuidedBackprop(model)(x, IDS) * GradCAM(model, "c1")(x, IDS)[..., None]
    method = GuidedGradCAM(model, "c1")
    assert method._guided_head  # fc6's ReLU is above c1: the head runs twice, with both rules
    np.testing.assert_allclose(method(x, IDS), expected, atol=1e-6 * np.abs(expected).max())


def count_layer_runs(method):
    """Wrap the method's graph runner to count, per layer, how often the traced pass executes it."""
    counts, run = {}, method.graph.run

    def counting(steps, values, call=None):
        for step in steps:
            counts[step.name] = counts.get(step.name, 0) + 1
        return run(steps, values, call)

    method.graph.run = counting
    return counts


@pytest.mark.parametrize(
    ("net", "layer", "above", "guided_runs"), [(gap_net, "c2", "fc", 1), (fc_net, "c1", "fc6", 2)]
)
def test_k_classes_share_one_forward_pass(net, layer, above, guided_runs):
    for method in (GradCAM(net(), layer), GuidedGradCAM(net(), layer)):
        counts = count_layer_runs(method)
        method(images(2), [0, 1, 2])  # traced once, so counts are layer executions per call
        assert counts[layer] == 1
        # Guided Grad-CAM runs the part above the layer again only if it has ReLUs (normal + guided)
        assert counts[above] == (guided_runs if isinstance(method, GuidedGradCAM) else 1)


def test_second_call_with_the_same_shapes_does_not_retrace():
    for method in (GradCAM(gap_net(), "c2"), GuidedGradCAM(gap_net(), "c2"), CAM(gap_net())):
        method(images(2), [1, 2])
        method(images(2, seed=1), [0, 3])
        assert method.tracing_count == 1
        for i in range(5):
            method(images(1, seed=i))
        assert method.tracing_count == 2 and len(method._functions) == 2  # ids, and top class


def test_softmax_model_is_explained_on_logits():
    layers = layers_of_gap_net()
    inp = keras.Input((SIZE, SIZE, 3))
    logits = chain(inp, layers)
    with_softmax = keras.Model(inp, keras.layers.Activation("softmax")(logits))
    logits_model = keras.Model(inp, logits)
    x = images()
    for make in (lambda m: GradCAM(m, "c1"), GuidedBackprop):
        np.testing.assert_array_equal(make(with_softmax)(x, IDS), make(logits_model)(x, IDS))


def test_nested_model_gives_the_maps_of_the_flat_model():
    layers = layers_of_gap_net()
    inner_in = keras.Input((SIZE, SIZE, 3))
    inner = keras.Model(inner_in, chain(inner_in, layers[:3]), name="inner")
    inp = keras.Input((SIZE, SIZE, 3))
    nested = keras.Model(inp, chain(inner(inp), layers[3:]))
    flat_in = keras.Input((SIZE, SIZE, 3))
    flat = keras.Model(flat_in, chain(flat_in, layers))
    x = images()
    for make in (lambda m: GuidedGradCAM(m, "c1"), lambda m: GradCAM(m, "c1")):
        np.testing.assert_allclose(make(nested)(x, IDS), make(flat)(x, IDS), atol=1e-6)
    np.testing.assert_allclose(CAM(nested)(x, IDS), GradCAM(nested, "inner/c2")(x, IDS), atol=1e-4)


def test_a_class_no_part_of_the_layer_supports_gives_an_all_zero_map():
    model = gap_net(softmax=False)
    kernel, bias = model.get_layer("fc").get_weights()
    kernel[:, 0] = -1.0  # post-ReLU features >= 0, so every channel weight of class 0 is negative
    model.get_layer("fc").set_weights([kernel, bias])
    for method in (GradCAM(model, "c2"), CAM(model), GuidedGradCAM(model, "c2")):
        maps = method(images(), 0)
        assert np.isfinite(maps).all() and not maps.any()


def test_the_users_model_is_unchanged_by_every_method():
    model, x = fc_net(), images()
    before, weights = model(x).numpy(), [w.copy() for w in model.get_weights()]
    nodes = [len(layer._inbound_nodes) for layer in model.layers]
    for make in (lambda m: GradCAM(m, "c1"), lambda m: GuidedGradCAM(m, "c2"), GuidedBackprop):
        make(model)(x, IDS)
    np.testing.assert_array_equal(model(x).numpy(), before)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))
    assert [len(layer._inbound_nodes) for layer in model.layers] == nodes
    assert model.get_layer("fc8").activation.__name__ == "softmax"
    assert model.get_layer("c2").activation.__name__ == "relu"


def test_callable_and_function_forms():
    model, x = gap_net(), images()
    method = GradCAM(model, "c2")
    expected = method(x, 2)
    np.testing.assert_array_equal(method(x, lambda logits: tf.gather(logits, [2], axis=1)), expected)
    np.testing.assert_array_equal(grad_cam(model, x, 2, layer="c2"), expected)
    top = np.argmax(model(x).numpy(), axis=1)[:, None]
    np.testing.assert_array_equal(method(x), method(x, top))


def test_cam_needs_pooling_then_dense():
    with pytest.raises(LayerError, match="use GradCAM instead"):
        CAM(fc_net())
    with pytest.raises(LayerError, match="CAM works at 'c2'"):
        CAM(gap_net(), layer="c1")
    with pytest.raises(InputError, match="use GradCAM"):
        CAM(gap_net())(images(), lambda logits: logits)


def test_bad_inputs_raise_input_error():
    method = GradCAM(gap_net(), "c2")
    with pytest.raises(InputError, match="outside 0..3"):
        method(images(), 4)
    with pytest.raises(InputError, match="model expects"):
        method(np.zeros((1, 32, 32, 3), np.float32))


def deconvnet_maps(model):
    deconvnet = Deconvnet(model, "c2")
    return lambda x: deconvnet(x, k=2).maps


@pytest.mark.parametrize("name", [*METHODS, "deconvnet"])
def test_nan_pixels_and_nan_weights_are_refused_by_every_method(name):
    model = gap_net()
    method = METHODS[name](model) if name in METHODS else deconvnet_maps(model)
    bad = images()
    bad[2, 5, 7, 1] = np.nan
    with pytest.raises(InputError, match="images contain NaN or Inf at 1 positions"):
        method(bad)
    assert np.isfinite(method(images())).all()  # the compiled pass still works after the error
    kernel = model.get_layer("c1").kernel
    kernel.assign(tf.fill(kernel.shape, np.nan))
    # checked when the method is made: compiled, TensorFlow's fused conv-bias-ReLU turns NaN into 0
    with pytest.raises(InputError, match=r"weights '.*c1/kernel' of model .* hold NaN or Inf"):
        METHODS[name](model) if name in METHODS else deconvnet_maps(model)


@pytest.mark.parametrize("name", METHODS)
def test_finite_pixels_that_overflow_the_model_are_refused(name):
    """The logits are checked too: max-pooling and the maps' rescaling can turn NaN into a finite map."""
    method = METHODS[name](gap_net())
    with pytest.raises(
        InputError, match=r"the model gives NaN or Inf for images spanning \[3e\+38, 3e\+38\]"
    ):
        method(np.full((1, SIZE, SIZE, 3), 3e38, np.float32))
