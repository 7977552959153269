"""The gradient CAM variants, Eigen-CAM and the plain input gradients, against their formulas
evaluated directly in NumPy on the activations and gradients of a small network (taken with Keras'
own calls and GradientTape, not the project's graph runner)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_methods_core import bilinear

from lib.methods import (
    CAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    GradientTimesInput,
    HiResCAM,
    LayerCAM,
    Saliency,
    XGradCAM,
)
from lib.methods.eigen_cam import first_right_singular_vectors

SIZE, CLASSES, IDS = 16, 4, [[0, 2], [3, 1], [2, 2]]


def two_part_net():
    """features (conv-relu, pool, conv-relu "c2") then a head with spatially varying gradients."""
    keras.utils.set_random_seed(2)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    features = keras.Model(inp, x, name="features")
    top_in = keras.Input((SIZE // 2, SIZE // 2, 8))
    y = keras.layers.Conv2D(5, 3, padding="same", activation="relu")(top_in)
    y = keras.layers.Dense(CLASSES)(keras.layers.Flatten()(y))
    head = keras.Model(top_in, y, name="head")
    outer = keras.Input((SIZE, SIZE, 3))
    return keras.Model(outer, head(features(outer))), features, head


def images(n=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def activations_and_gradients(features, head, x, ids):
    """A (N, h, w, C) and dY_k/dA (N, K, h, w, C) for the classes `ids` (N, K), by Keras and a tape."""
    activations = features(x)
    grads = []
    for k in range(len(ids[0])):
        with tf.GradientTape() as tape:
            tape.watch(activations)
            logits = head(activations)
            score = tf.reduce_sum(tf.gather(logits, np.asarray(ids)[:, k], axis=1, batch_dims=1))
        grads.append(tape.gradient(score, activations).numpy())
    return activations.numpy().astype(np.float64), np.stack(grads, axis=1).astype(np.float64)


def finish(raw):
    """(N, K, h, w) weighted sums -> rectified, resized to the image, scaled to [0, 1], as a class map."""
    maps = bilinear(np.maximum(raw, 0), (SIZE, SIZE))
    peak = maps.max(axis=(2, 3), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def grad_cam_plus_plus(a, g):
    mass = a.sum(axis=(1, 2))[:, None, None, None, :]
    denominator = 2 * g**2 + mass * g**3
    alpha = np.divide(g**2, denominator, out=np.zeros_like(g), where=denominator != 0)
    return np.einsum("nhwc,nkc->nkhw", a, (alpha * np.maximum(g, 0)).sum(axis=(2, 3)))


def xgrad_cam(a, g):
    mass = a.sum(axis=(1, 2))[:, None, :]
    weights = np.divide(
        (g * a[:, None]).sum(axis=(2, 3)), mass, out=np.zeros_like(mass * g[:, :, 0, 0]), where=mass > 0
    )
    return np.einsum("nhwc,nkc->nkhw", a, weights)


FORMULAS = {
    "grad_cam": (GradCAM, lambda a, g: np.einsum("nhwc,nkc->nkhw", a, g.mean(axis=(2, 3)))),
    "grad_cam_plus_plus": (GradCAMPlusPlus, grad_cam_plus_plus),
    "xgrad_cam": (XGradCAM, xgrad_cam),
    "layer_cam": (LayerCAM, lambda a, g: (np.maximum(g, 0) * a[:, None]).sum(axis=-1)),
    "hires_cam": (HiResCAM, lambda a, g: (g * a[:, None]).sum(axis=-1)),
}


@pytest.mark.parametrize("name", FORMULAS)
def test_each_cam_variant_equals_its_formula_in_numpy(name):
    method, formula = FORMULAS[name]
    model, features, head = two_part_net()
    x = images()
    a, g = activations_and_gradients(features, head, x, IDS)
    assert np.ptp(g, axis=(2, 3)).max() > 0  # gradients vary over positions: the variants differ
    expected = finish(formula(a, g))
    np.testing.assert_allclose(method(model, "c2")(x, IDS), expected, atol=2e-5)


def test_the_variants_differ_from_grad_cam_on_this_network():
    model, _, _ = two_part_net()
    x = images()
    reference = GradCAM(model, "c2")(x, IDS)
    for method in (GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM):
        assert np.abs(method(model, "c2")(x, IDS) - reference).max() > 0.05, method.__name__


def gap_net():
    keras.utils.set_random_seed(3)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Dense(CLASSES)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, keras.layers.Softmax()(x))


def test_on_a_global_average_pooling_network_hires_cam_equals_cam_equals_grad_cam():
    model, x = gap_net(), images(4)
    maps = [m(model, "c2")(x, [1, 3]) for m in (HiResCAM, GradCAM)] + [CAM(model)(x, [1, 3])]
    for other in maps[1:]:
        assert np.corrcoef(maps[0].ravel(), other.ravel())[0, 1] > 0.999
        np.testing.assert_allclose(maps[0], other, atol=1e-5)


def test_eigen_cam_is_the_first_right_singular_vector_projection():
    model, features, _ = two_part_net()
    x = images(3)
    a = features(x).numpy().astype(np.float64)  # (N, h, w, C)
    expected = []
    for image in a:
        matrix = image.reshape(-1, image.shape[-1])  # (h*w, C)
        v = np.linalg.svd(matrix, full_matrices=False)[2][0]
        projection = matrix @ v
        expected.append((projection if projection.sum() >= 0 else -projection).reshape(image.shape[:2]))
    expected = finish(np.array(expected)[:, None])  # (N, 1, H, W)
    result = EigenCAM(model, "c2").explain(x, [[0, 3], [1, 1], [2, 0]])
    assert result.maps.shape == (3, 2, SIZE, SIZE)
    for k in range(2):  # class-agnostic: the same map for every target
        np.testing.assert_allclose(result.maps[:, k], expected[:, 0], atol=2e-5)
    np.testing.assert_array_equal(result.class_ids, [[0, 3], [1, 1], [2, 0]])


@pytest.mark.parametrize("gap", [0.3, 0.9, 0.97])
@pytest.mark.parametrize("signed", [False, True])
def test_the_power_iteration_gives_numpys_first_right_singular_vector(gap, signed):
    """Matrices (169, 512) with s_2 / s_1 = gap, non-negative like ReLU outputs or of both signs."""
    rng = np.random.default_rng(int(gap * 100) + signed)
    u, _ = np.linalg.qr(rng.normal(size=(169, 8)))
    v, _ = np.linalg.qr(np.abs(rng.normal(size=(512, 8))) if not signed else rng.normal(size=(512, 8)))
    matrix = (u * [1, gap, gap**2, 0.3, 0.2, 0.1, 0.05, 0.01]) @ v.T
    matrix = np.abs(matrix) if not signed else matrix
    expected = np.linalg.svd(matrix)[2][0]
    got = first_right_singular_vectors(matrix[None].astype(np.float32))[0]
    np.testing.assert_allclose(got * np.sign(got @ expected), expected, atol=1e-4)


def test_eigen_cam_of_an_all_zero_layer_is_all_zero():
    model, features, _ = two_part_net()
    for variable in features.get_layer("c2").weights:
        variable.assign(tf.zeros_like(variable))
    assert not EigenCAM(model, "c2")(images(2)).any()


def test_saliency_and_gradient_times_input_are_the_input_gradient_and_its_product():
    model, _, _ = two_part_net()
    x = images(2)
    xt = tf.constant(x)
    expected = []
    for c in (1, 3):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            score = tf.reduce_sum(model(xt)[:, c])
        expected.append(tape.gradient(score, xt).numpy())
    expected = np.stack(expected, axis=1)  # (N, 2, H, W, 3)
    np.testing.assert_allclose(Saliency(model)(x, [1, 3]), expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(
        GradientTimesInput(model)(x, [1, 3]), expected * x[:, None], rtol=1e-4, atol=1e-5
    )


def test_gradient_times_input_of_a_linear_model_sums_to_the_logit_minus_the_bias():
    keras.utils.set_random_seed(4)
    inp = keras.Input((SIZE, SIZE, 3))
    dense = keras.layers.Dense(CLASSES)
    model = keras.Model(inp, dense(keras.layers.Flatten()(inp)))
    x = images(3)
    result = GradientTimesInput(model).explain(x, [0, 2])
    bias = dense.bias.numpy()[[0, 2]]
    np.testing.assert_allclose(result.maps.sum(axis=(2, 3, 4)), result.scores - bias, rtol=1e-4)
