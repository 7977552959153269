"""Integrated Gradients, SmoothGrad and VarGrad against formulas and plain loops: IG is exact on a
linear model and is the documented quadrature of the analytic gradient of a quadratic one, for each
form of baseline; it equals a Python loop of tape gradients for every chunk size and is complete on
SqueezeNet; SmoothGrad and VarGrad equal the NumPy mean and variance of the wrapped method on the
documented noisy copies, their noise scales with each image's range, and they converge."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lib.errors import InputError
from lib.methods import CAM, GradCAM, GuidedGradCAM, TopK, smoothgrad
from lib.methods.deconvnet import Deconvnet
from lib.methods.gradient_input import GradientTimesInput
from lib.methods.guided_backprop import GuidedBackprop
from lib.methods.integrated_gradients import IntegratedGradients
from lib.methods.saliency import Saliency
from lib.methods.smoothgrad import SmoothGrad, VarGrad

SIZE = 12


def relu_net():
    """conv-relu, max-pool, conv-relu, global average pooling, dense logits (5 classes).

    The dense biases are large, so that the top class of an image can differ from the top class of
    its darker or noisy copies (a ReLU network without biases has the same top class for all a x).
    """
    keras.utils.set_random_seed(1)
    bias = keras.initializers.RandomNormal(0, 20)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Dense(5, name="fc", bias_initializer=bias)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, x)


def linear_net():
    """Logits W^T vec(x) + c: a constant gradient W."""
    keras.utils.set_random_seed(2)
    inp = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inp, keras.layers.Dense(4, name="fc")(keras.layers.Flatten()(inp)))


def quadratic_net():
    """Logits f_k = (A_k . x + a_k) (B_k . x + b_k): a gradient linear in x."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((SIZE, SIZE, 3))
    flat = keras.layers.Flatten()(inp)
    u = keras.layers.Dense(3, name="u", kernel_initializer=keras.initializers.RandomNormal(0, 0.01))(flat)
    v = keras.layers.Dense(3, name="v", kernel_initializer=keras.initializers.RandomNormal(0, 0.01))(flat)
    return keras.Model(inp, keras.layers.Multiply()([u, v]))


def images(n=3, seed=0, low=0.0, high=255.0, tinted=False):
    """Uniform random pixels; `tinted` scales each image's channels by random factors (varied top classes)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, (n, SIZE, SIZE, 3))
    return (x * rng.uniform(0, 1, (n, 1, 1, 3)) if tinted else x).astype(np.float32)


def path_rule(m):
    """The documented quadrature, written again: nodes a_j = u_j^3 at the midpoints u_j = (j + 1/2)/m,
    weights u_j^2 / sum u^2."""
    u = (np.arange(m) + 0.5) / m
    return u**3, u**2 / np.sum(u**2)


def dense(model, name):
    kernel, bias = model.get_layer(name).get_weights()
    return kernel.astype(np.float64), bias.astype(np.float64)


GREY = np.full((SIZE, SIZE, 3), 90.0, np.float32) + np.arange(SIZE)[:, None, None]  # a shaded image
BASELINES = {
    "black": (None, lambda x: np.zeros_like(x)),
    "number": (127.5, lambda x: np.full_like(x, 127.5)),
    "image": (GREY, lambda x: np.broadcast_to(GREY, x.shape)),
    "callable": (lambda x: 0.25 * x, lambda x: 0.25 * x),
}


@pytest.mark.parametrize("form", BASELINES)
def test_ig_of_a_linear_model_is_its_gradient_times_input_minus_baseline(form):
    model, x = linear_net(), images()
    baseline, expected_baseline = BASELINES[form]
    kernel, _ = dense(model, "fc")  # (H * W * 3, 4)
    ids = [[0, 3], [2, 1], [3, 3]]
    maps = IntegratedGradients(model, steps=3, baseline=baseline)(x, ids)
    delta = (x - expected_baseline(x)).astype(np.float64)
    for n, row in enumerate(ids):
        for k, c in enumerate(row):
            expected = kernel[:, c].reshape(SIZE, SIZE, 3) * delta[n]
            np.testing.assert_allclose(maps[n, k], expected, rtol=1e-5, atol=1e-6)
    if form == "black":  # then it is Gradient x Input
        np.testing.assert_allclose(maps, GradientTimesInput(model)(x, ids), rtol=1e-5, atol=1e-6)


def test_ig_of_a_callable_score_on_a_linear_model_sums_to_its_difference():
    model, x = linear_net(), images(2)
    margin = lambda z: z[:, :1] - z[:, 2:3]  # noqa: E731
    result = IntegratedGradients(model, steps=2).explain(x, margin)
    logits, at_black = model(x).numpy(), model(np.zeros_like(x)).numpy()
    expected = (logits[:, 0] - logits[:, 2]) - (at_black[:, 0] - at_black[:, 2])
    assert result.class_ids is None
    np.testing.assert_allclose(result.maps.sum(axis=(2, 3, 4))[:, 0], expected, rtol=1e-4)


@pytest.mark.parametrize("form", BASELINES)
def test_ig_of_a_quadratic_model_is_the_quadrature_of_its_analytic_gradient(form):
    model, x, steps = quadratic_net(), images(2), 7
    baseline, expected_baseline = BASELINES[form]
    (ka, ba), (kb, bb) = dense(model, "u"), dense(model, "v")
    result = IntegratedGradients(model, steps=steps, baseline=baseline, batch_size=5).explain(x, [0, 2])
    b = expected_baseline(x).reshape(2, -1).astype(np.float64)
    delta = x.reshape(2, -1) - b
    nodes, weights = path_rule(steps)
    for n in range(2):
        for k, c in enumerate([0, 2]):
            mean_gradient = 0
            for a, w in zip(nodes, weights, strict=True):
                z = b[n] + a * delta[n]  # grad of (A.z + a)(B.z + b) = A (B.z + b) + B (A.z + a)
                mean_gradient += w * (ka[:, c] * (z @ kb[:, c] + bb[c]) + kb[:, c] * (z @ ka[:, c] + ba[c]))
            expected = (delta[n] * mean_gradient).reshape(SIZE, SIZE, 3)
            np.testing.assert_allclose(
                result.maps[n, k], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()
            )
    # The sum is f(x) - f(b) up to the rule's O(1/m^2) error on the gradient's linear part: along the
    # path g(a) = grad f(b) . d + a d^T H d, and sum_j w_j a_j - 1/2 = -1.2e-4 at 64 steps.
    result = IntegratedGradients(model, steps=64, baseline=baseline).explain(x, [0, 2])
    f_x = model(x).numpy()[:, [0, 2]]
    f_b = model(expected_baseline(x).astype(np.float32)).numpy()[:, [0, 2]]
    np.testing.assert_allclose(result.scores, f_x, rtol=1e-5)
    curvature = 2 * (delta @ ka[:, [0, 2]]) * (delta @ kb[:, [0, 2]])  # d^T H d, (N, 2)
    error = np.abs(result.maps.sum(axis=(2, 3, 4)) - (f_x - f_b))
    np.testing.assert_array_less(error, 1.3e-4 * np.abs(curvature) + 1e-5 * np.abs(f_x - f_b))


def loop_ig(model, x, ids, steps):
    """Integrated Gradients from black, one tape and one path point at a time, summed in NumPy."""
    total = np.zeros((len(x), SIZE, SIZE, 3))
    for a, w in zip(*path_rule(steps), strict=True):
        point = tf.constant(a * x)
        with tf.GradientTape() as tape:
            tape.watch(point)
            score = tf.reduce_sum(tf.gather(model(point), ids, axis=1, batch_dims=1))
        total += w * tape.gradient(score, point).numpy()
    return x * total


@pytest.mark.parametrize("batch_size", [1, 4, 7, 30, 31, 1000])
def test_ig_equals_a_loop_of_tape_gradients_for_every_chunk_size(batch_size):
    model, x = relu_net(), images()
    expected = loop_ig(model, x, model(x).numpy().argmax(-1), steps=10)
    maps = IntegratedGradients(model, steps=10, batch_size=batch_size)(x)
    assert maps.shape == (3, 1, SIZE, SIZE, 3) and maps.dtype == np.float32
    np.testing.assert_allclose(maps[:, 0], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_ig_keeps_the_clean_top_class_along_the_path_and_reports_the_clean_image():
    model, x = relu_net(), images(4, tinted=True)
    logits = model(x).numpy()
    path_top = np.stack([model(a * x).numpy().argmax(-1) for a in path_rule(8)[0]])
    assert (path_top != logits.argmax(-1)).any()  # the top class does change along some path
    method = IntegratedGradients(model, steps=8)
    result = method.explain(x)
    top = logits.argmax(-1)[:, None]
    np.testing.assert_array_equal(result.class_ids, top)
    np.testing.assert_allclose(result.scores, np.take_along_axis(logits, top, 1), rtol=1e-5)
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(result.probabilities, np.take_along_axis(softmax, top, 1), atol=1e-6)
    np.testing.assert_array_equal(result.maps, method(x, top))
    top2 = method.explain(x, TopK(2))
    np.testing.assert_array_equal(top2.class_ids, np.argsort(-logits, -1)[:, :2])


def test_ig_of_a_batch_equals_one_image_at_a_time_and_k_classes_equal_k_calls():
    model, x, ids = relu_net(), images(), [[0, 2], [1, 3], [4, 0]]
    method = IntegratedGradients(model, steps=6, batch_size=5)
    together = method(x, ids)
    one_by_one = np.concatenate([method(x[i : i + 1], ids[i : i + 1]) for i in range(3)])
    class_by_class = np.concatenate([method(x, [row[k : k + 1] for row in ids]) for k in range(2)], axis=1)
    scale = np.abs(together).max()
    np.testing.assert_allclose(one_by_one, together, atol=1e-6 * scale)
    np.testing.assert_allclose(class_by_class, together, atol=1e-6 * scale)


def test_the_path_loop_is_compiled_once_not_unrolled():
    model, x = relu_net(), tf.constant(images(2))
    sizes = []
    for steps in (2, 40):
        method = IntegratedGradients(model, steps=steps, batch_size=3)
        method(x.numpy())
        method(x.numpy() + 1)
        assert method.tracing_count == 1
        (function,) = method._functions.values()
        sizes.append(len(function.get_concrete_function(x).graph.get_operations()))
    assert sizes[0] == sizes[1]  # 20x the steps, 27 chunks instead of 2: the same graph


@pytest.mark.slow
def test_ig_is_complete_within_one_percent_at_64_steps_on_squeezenet():
    from lib.dataflow import images as image_io
    from lib.dataflow import photos
    from lib.nets import squeezenet

    model = squeezenet(weights="imagenet")
    x = np.stack(
        [image_io.resize(photos.load(name), size=(227, 227)) for name in ("coffee", "chelsea", "camera")]
    )
    result = IntegratedGradients(model, steps=64).explain(x)
    at_black = model(np.zeros_like(x), training=False).numpy()
    expected = result.scores[:, 0] - np.take_along_axis(at_black, result.class_ids, 1)[:, 0]
    np.testing.assert_array_equal(result.class_ids[:, 0], [967, 285, 872])  # espresso, Egyptian cat, tripod
    np.testing.assert_allclose(result.maps.sum(axis=(1, 2, 3, 4)), expected, rtol=0.01)


def noisy_copies(x, samples, noise, seed):
    """The documented noise, (N, S, H, W, 3): x_n + noise * (max x_n - min x_n) * normal(seed=[seed, s])."""
    z = np.stack([tf.random.stateless_normal(x.shape[1:], [seed, s]).numpy() for s in range(samples)])
    sigma = noise * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))
    return x[:, None] + sigma[:, None, None, None, None] * z[None]


def test_smoothgrad_squared_and_vargrad_are_numpy_statistics_of_the_wrapped_maps_on_the_noisy_copies():
    model, x, samples = relu_net(), images(2, seed=1, tinted=True), 6
    wrapped = Saliency(model)
    copies = noisy_copies(x, samples, 0.3, seed=5).reshape(-1, SIZE, SIZE, 3)
    clean_top = np.repeat(model(x).numpy().argmax(-1), samples)[:, None]
    assert (model(copies).numpy().argmax(-1) != clean_top[:, 0]).any()  # noise changes some top class
    per_sample = wrapped(copies, clean_top).reshape(2, samples, 1, SIZE, SIZE, 3).astype(np.float64)
    options = dict(samples=samples, noise=0.3, seed=5, batch_size=4)
    smooth = SmoothGrad(wrapped, **options).explain(x)
    np.testing.assert_array_equal(smooth.class_ids[:, 0], model(x).numpy().argmax(-1))
    scale = np.abs(per_sample).max()
    np.testing.assert_allclose(smooth.maps, per_sample.mean(1), atol=1e-5 * scale)
    squared = SmoothGrad(wrapped, squared=True, **options)(x)
    np.testing.assert_allclose(squared, (per_sample**2).mean(1), atol=1e-5 * scale**2)
    np.testing.assert_allclose(VarGrad(wrapped, **options)(x), per_sample.var(1), atol=1e-5 * scale**2)


@pytest.mark.parametrize(
    "make",
    [Saliency, GuidedBackprop, GradientTimesInput, lambda m: IntegratedGradients(m, steps=4, batch_size=5)],
    ids=["saliency", "guided_backprop", "gradient_input", "integrated_gradients"],
)
def test_with_zero_noise_smoothgrad_is_the_wrapped_method_and_vargrad_is_zero(make):
    model, x = relu_net(), images()
    wrapped = make(model)
    expected = wrapped(x, [1, 4])
    np.testing.assert_allclose(
        SmoothGrad(wrapped, samples=5, noise=0, batch_size=4)(x, [1, 4]), expected, rtol=1e-6
    )
    squared = SmoothGrad(wrapped, samples=3, noise=0.0, squared=True)(x, [1, 4])
    np.testing.assert_allclose(squared, expected**2, rtol=1e-5)
    np.testing.assert_allclose(VarGrad(wrapped, samples=4, noise=0.0, batch_size=3)(x, [1, 4]), 0, atol=1e-12)


def test_guided_grad_cam_can_be_smoothed():
    model, x = relu_net(), images(2)
    wrapped = GuidedGradCAM(model, "c2")
    smooth = SmoothGrad(wrapped, samples=2, noise=0.0).explain(x)
    np.testing.assert_allclose(smooth.maps, wrapped(x), rtol=1e-6)
    assert smooth.layer == "c2"


def test_the_noise_is_relative_to_each_image_range():
    """Gradient x Input of a linear model is W * (x + sigma z): its VarGrad is W^2 sigma^2 var(z)."""
    model, samples = linear_net(), 2000
    x = np.concatenate([images(1), images(1, seed=1, low=100, high=140)])  # ranges about 255 and 40
    kernel, _ = dense(model, "fc")
    w2 = kernel[:, 1].reshape(SIZE, SIZE, 3) ** 2
    variance = VarGrad(GradientTimesInput(model), samples=samples, noise=0.1, batch_size=500)(x, 1)[:, 0]
    sigma = 0.1 * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))
    np.testing.assert_allclose((variance / w2).mean(axis=(1, 2, 3)), sigma**2, rtol=0.02)


def test_smoothgrad_converges_two_seeds_agree_better_with_more_samples():
    model, x = relu_net(), images(2)

    def disagreement(samples):
        a, b = (SmoothGrad(Saliency(model), samples=samples, noise=0.2, seed=s)(x) for s in (0, 1))
        return np.linalg.norm(a - b) / np.linalg.norm(a)

    few, many = disagreement(4), disagreement(64)
    assert many < 0.5 * few  # about 1/4 expected: the error of a mean falls as 1/sqrt(S)


@pytest.mark.parametrize("method", [SmoothGrad, VarGrad])
def test_smoothgrad_is_the_same_for_every_chunk_size_and_image_by_image(method):
    model, x = relu_net(), images()
    maps = [method(Saliency(model), samples=5, seed=3, batch_size=b)(x, [0, 2]) for b in (1, 4, 15, 100)]
    for other in maps[1:]:
        np.testing.assert_allclose(other, maps[0], rtol=1e-4, atol=1e-6 * np.abs(maps[0]).max())
    single = method(Saliency(model), samples=5, seed=3, batch_size=4)
    one_by_one = np.concatenate([single(x[i : i + 1], [0, 2]) for i in range(3)])
    np.testing.assert_allclose(one_by_one, maps[0], rtol=1e-4, atol=1e-6 * np.abs(maps[0]).max())


@pytest.mark.parametrize("batch_size", [1, 4, 100])
def test_noise_drawn_in_each_chunk_equals_the_patterns_kept_with_the_pass(monkeypatch, batch_size):
    model, x = relu_net(), images()
    kept = SmoothGrad(Saliency(model), samples=5, seed=3, batch_size=batch_size)(x, [0, 2])
    monkeypatch.setattr(smoothgrad, "PATTERN_BYTES", 0)  # too little memory: every chunk draws its own
    drawn = SmoothGrad(Saliency(model), samples=5, seed=3, batch_size=batch_size)
    np.testing.assert_array_equal(drawn(x, [0, 2]), kept)
    assert drawn._patterns(x.shape[1:]) is None


def test_smoothgrad_runs_the_wrapped_pass_inside_its_own_and_traces_once():
    model, x = relu_net(), images(2)
    wrapped = IntegratedGradients(model, steps=3)
    smooth = SmoothGrad(wrapped, samples=4)
    smooth(x)
    smooth(x + 1)
    assert smooth.tracing_count == 1 and wrapped.tracing_count == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda m: IntegratedGradients(m, steps=0), "steps=0 is invalid; pass a positive integer"),
        (lambda m: IntegratedGradients(m, steps=2.5), "steps=2.5 is invalid"),
        (lambda m: IntegratedGradients(m, batch_size=0), "batch_size=0 is invalid"),
        (lambda m: IntegratedGradients(m, baseline=np.zeros((5, 5, 3))), r"baseline has shape \(5, 5, 3\)"),
        (lambda m: IntegratedGradients(m, baseline=np.full((SIZE, SIZE, 3), np.nan)), "baseline holds NaN"),
        (lambda m: IntegratedGradients(m, baseline="black"), "baseline of type str"),
        (
            lambda m: IntegratedGradients(m, baseline=lambda x: x[:1])(images(2)),
            "the baseline callable returned",
        ),
        (lambda m: SmoothGrad(Saliency(m), noise=-0.1), "noise=-0.1; pass a fraction"),
        (lambda m: SmoothGrad(Saliency(m), noise=float("inf")), "noise=inf"),
        (lambda m: SmoothGrad(Saliency(m), samples=0), "samples=0 is invalid"),
        (lambda m: VarGrad(Saliency(m), samples=True), "samples=True is invalid"),
        (lambda m: SmoothGrad(Saliency(m), seed=1.5), "seed=1.5; pass an int"),
        (lambda m: SmoothGrad(GradCAM(m, "c2")), "SmoothGrad wraps an input-space method .* not a GradCAM"),
        (lambda m: VarGrad(CAM(m)), "VarGrad wraps an input-space method .* not a CAM"),
        (lambda m: SmoothGrad(Deconvnet(m, "c2")), "not a Deconvnet"),
        (lambda m: SmoothGrad(m), "not a Functional"),
    ],
)
def test_bad_arguments_are_one_line_input_errors(make, message):
    with pytest.raises(InputError, match=message) as caught:
        make(relu_net())
    assert "\n" not in str(caught.value)
