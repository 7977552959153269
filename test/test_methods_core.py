"""The one method core: the class-map hook, `explain()` results, log-softmax and inference-mode layers,
the function-form cache, and the public re-exports."""

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

import lib.methods
from lib.errors import InputError
from lib.methods import CAM, ClassMap, Explanation, GradCAM, GuidedBackprop, GuidedGradCAM, TopK
from lib.methods.grad_cam import grad_cam
from lib.methods.keras_internals import cache_of

SIZE = 20


def small_net(top=None, augment=False):
    """conv-relu (c1), conv-relu (c2, 10x10), global average pooling, dense logits (fc), then `top`.

    With `augment`, a RandomFlip, a RandomTranslation and a Dropout sit inside the model, the flip
    inside a nested Sequential model; they share the other layers with the plain net of the same seed.
    """
    keras.utils.set_random_seed(1)
    layers = {
        "c1": keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c1"),
        "pool": keras.layers.MaxPooling2D(name="pool"),
        "c2": keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2"),
        "gap": keras.layers.GlobalAveragePooling2D(name="gap"),
        "fc": keras.layers.Dense(5, name="fc"),
    }
    inp = keras.Input((SIZE, SIZE, 3))
    x = inp
    if augment:
        flip = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=3)], name="augment")
        x = keras.layers.RandomTranslation(0.2, 0.2, seed=4)(flip(x))
    x = layers["pool"](layers["c1"](x))
    x = layers["c2"](x)
    if augment:
        x = keras.layers.Dropout(0.5, seed=5)(x)
    x = layers["fc"](layers["gap"](x))
    if top == "log_softmax_op":
        x = keras.ops.log_softmax(x)
    elif top == "log_softmax_activation":
        x = keras.layers.Activation("log_softmax")(x)
    elif top == "softmax":
        x = keras.layers.Softmax()(x)
    return keras.Model(inp, x)


def images(n=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def activations_and_logits(model, x, layer="c2"):
    features = keras.Model(model.input, model.get_layer(layer).output)(x).numpy()
    logits = keras.Model(model.input, model.get_layer("fc").output)(x).numpy()
    return features, logits


def bilinear(maps, size):
    """NumPy bilinear resize of (..., h, w) to (..., H, W), half-pixel centres (tf.image.resize's rule)."""

    def axis(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, src - low

    (r0, r1, fr), (c0, c1, fc) = axis(maps.shape[-2], size[0]), axis(maps.shape[-1], size[1])
    rows = maps[..., r0, :] * (1 - fr)[:, None] + maps[..., r1, :] * fr[:, None]
    return rows[..., c0] * (1 - fc) + rows[..., c1] * fc


class OnesCAM(ClassMap):
    """Every channel weighs 1: the map is the rectified sum of the channels, whatever the class."""

    def channel_weights(self, activations, gradients):
        return tf.ones_like(gradients[:, :, 0, 0, :])


class OnesEverywhere(ClassMap):
    """The same through the other hook: a weight of 1 at every position and channel."""

    def spatial_weights(self, activations, gradients):
        return tf.ones_like(gradients)


@pytest.mark.parametrize("method", [OnesCAM, OnesEverywhere])
def test_overriding_one_hook_gives_the_rectified_resized_channel_sum(method):
    model, x = small_net(), images()
    features, _ = activations_and_logits(model, x)  # (N, 10, 10, 8)
    expected = bilinear(np.maximum(features.sum(-1), 0), (SIZE, SIZE))  # (N, H, W)
    expected /= expected.max(axis=(1, 2), keepdims=True)
    maps = method(model, "c2")(x, class_ids=[0, 3])
    assert maps.shape == (3, 2, SIZE, SIZE)
    for k in range(2):
        np.testing.assert_allclose(maps[:, k], expected, atol=1e-5)


def test_a_class_map_without_its_hook_says_which_to_override():
    with pytest.raises(
        NotImplementedError, match="ClassMap must override channel_weights or spatial_weights"
    ):
        ClassMap(small_net(), "c2")(images(1))


@pytest.mark.parametrize(
    "make",
    [lambda m: GradCAM(m, "c2"), lambda m: GuidedGradCAM(m, "c2"), CAM, GuidedBackprop],
    ids=["grad_cam", "guided_grad_cam", "cam", "guided_backprop"],
)
def test_explain_reports_the_top_classes_and_the_logits_of_a_plain_forward_pass(make):
    model, x = small_net(top="softmax"), images(4)
    _, logits = activations_and_logits(model, x)
    probabilities = model(x, training=False).numpy()
    method = make(model)
    result = method.explain(x)
    assert isinstance(result, Explanation)
    top = logits.argmax(-1)[:, None]
    np.testing.assert_array_equal(result.class_ids, top)
    np.testing.assert_allclose(result.scores, np.take_along_axis(logits, top, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.probabilities, np.take_along_axis(probabilities, top, 1), atol=1e-6)
    np.testing.assert_array_equal(result.maps, method(x))
    assert result.layer == (None if isinstance(method, GuidedBackprop) else "c2")


def test_explain_with_given_classes_and_with_a_callable():
    model, x = small_net(), images(2)
    _, logits = activations_and_logits(model, x)
    result = GradCAM(model, "c2").explain(x, class_ids=[[4, 1], [2, 2]])
    np.testing.assert_array_equal(result.class_ids, [[4, 1], [2, 2]])
    np.testing.assert_allclose(result.scores, np.take_along_axis(logits, result.class_ids, 1), rtol=1e-5)
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(
        result.probabilities, np.take_along_axis(softmax, result.class_ids, 1), atol=1e-6
    )
    margin = GradCAM(model, "c2").explain(x, class_ids=lambda z: z[:, :1] - z[:, 1:2])
    assert margin.class_ids is None and margin.probabilities is None
    np.testing.assert_allclose(margin.scores[:, 0], logits[:, 0] - logits[:, 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [lambda m: GuidedGradCAM(m, "c2"), CAM], ids=["guided_grad_cam", "cam"])
def test_top_k_classes_are_found_in_the_same_pass(make):
    model, x = small_net(), images(4)
    _, logits = activations_and_logits(model, x)
    method = make(model)
    result = method.explain(x, TopK(3))
    expected = np.argsort(-logits, axis=1)[:, :3]
    np.testing.assert_array_equal(result.class_ids, expected)
    np.testing.assert_allclose(result.maps, method(x, expected), atol=1e-6)
    assert np.all(np.diff(result.scores, axis=1) <= 0)
    for k in (0, 6, True):
        with pytest.raises(InputError, match="pass a number of classes from 1 to 5"):
            method.explain(x, TopK(k))


def test_guided_grad_cam_carries_its_grad_cam_maps():
    model, x = small_net(), images(3)
    result = GuidedGradCAM(model, "c2").explain(x, class_ids=[1, 2])
    np.testing.assert_allclose(result.grad_cam, GradCAM(model, "c2")(x, [1, 2]), atol=1e-6)
    guided = GuidedBackprop(model)(x, [1, 2])
    np.testing.assert_allclose(result.maps, guided * result.grad_cam[..., None], rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("top", ["log_softmax_op", "log_softmax_activation"])
def test_a_final_log_softmax_is_skipped_like_a_softmax(top):
    x = images(3)
    plain, with_top = GradCAM(small_net(), "c2"), GradCAM(small_net(top=top), "c2")
    assert with_top.graph.softmax is not None
    a, b = plain.explain(x, [0, 4]), with_top.explain(x, [0, 4])
    np.testing.assert_allclose(b.scores, a.scores, rtol=1e-6)  # logits, not log-probabilities
    np.testing.assert_allclose(b.maps, a.maps, atol=1e-6)


def test_a_fused_log_softmax_is_skipped():
    model = small_net()
    fused = keras.Sequential([keras.Input((SIZE, SIZE, 3)), *model.layers[1:-1]])
    fused.add(keras.layers.Dense(5, activation="log_softmax", name="fc_log"))
    fused.get_layer("fc_log").set_weights(model.get_layer("fc").get_weights())
    x = images(2)
    np.testing.assert_allclose(
        GradCAM(fused, "c2").explain(x, [3]).scores, GradCAM(model, "c2").explain(x, [3]).scores, rtol=1e-6
    )


@pytest.mark.parametrize(
    "make",
    [lambda m: GradCAM(m, "c2"), lambda m: GuidedGradCAM(m, "c2"), CAM, GuidedBackprop],
    ids=["grad_cam", "guided_grad_cam", "cam", "guided_backprop"],
)
def test_augmentation_and_dropout_inside_the_model_are_inert(make):
    x = images(3)
    plain, augmented = small_net(), small_net(augment=True)
    for name in ("c1", "c2", "fc"):
        augmented.get_layer(name).set_weights(plain.get_layer(name).get_weights())
    expected = make(plain)(x, [0, 2])
    method = make(augmented)
    for _ in range(2):  # flips, shifts and dropout are random: any of them would change the maps
        np.testing.assert_allclose(method(x, [0, 2]), expected, rtol=1e-5, atol=1e-7)


def test_the_function_form_reuses_its_method_and_frees_it_with_the_model():
    model, x = small_net(), images(2)
    first = grad_cam(model, x, layer="c2")
    (method,) = cache_of(model).values()
    np.testing.assert_array_equal(grad_cam(model, x, layer="c2"), first)
    assert list(cache_of(model).values()) == [method] and method.tracing_count == 1
    ref = weakref.ref(model)
    del model, method
    gc.collect()
    assert ref() is None


def test_the_public_names_are_the_modules_own():
    from lib.methods import cam, deconvnet, filters, guided_backprop
    from lib.methods import grad_cam as grad_cam_module

    assert lib.methods.GradCAM is grad_cam_module.GradCAM
    assert lib.methods.GuidedGradCAM is grad_cam_module.GuidedGradCAM
    assert lib.methods.CAM is cam.CAM and lib.methods.GuidedBackprop is guided_backprop.GuidedBackprop
    assert lib.methods.Deconvnet is deconvnet.Deconvnet and lib.methods.FeatureMaps is filters.FeatureMaps
    assert all(hasattr(lib.methods, name) for name in lib.methods.__all__)
