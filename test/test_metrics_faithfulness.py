"""Deletion, insertion, average drop and increase in confidence: exact on a linear model against NumPy,
ordered as expected on generated images (true mask > random map > reversed mask), batch sizes,
seeds, tie order, retracing and one-line errors."""

import keras
import numpy as np
import pytest

from lib.dataflow.shapes import generate
from lib.errors import InputError
from lib.metrics.faithfulness import (
    average_drop,
    blur,
    causal_curves,
    deletion,
    increase_in_confidence,
    insertion,
    pixel_ranks,
)
from lib.nets.bundled import load

H, W, CLASSES = 4, 5, 3


@pytest.fixture(scope="module")
def linear():
    """A linear model (Flatten -> Dense, logits) with its weights, images and random maps."""
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((H, W, 3)), keras.layers.Flatten(), keras.layers.Dense(CLASSES)])
    kernel, bias = rng.normal(size=(H * W * 3, CLASSES)) / 50, rng.normal(size=CLASSES)
    model.layers[-1].set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    images = rng.uniform(0, 255, (3, H, W, 3)).astype(np.float32)
    maps = rng.random((3, 2, H, W))
    ids = np.array([[0, 2], [1, 1], [2, 0]])
    return model, kernel.reshape(H, W, 3, CLASSES), bias, images, maps, ids


@pytest.fixture(scope="module")
def shapes():
    """Generated images, their classes, the true-mask maps and the bundled VGG."""
    images, labels, masks = generate(12, seed=5)
    truth = (masks == labels[:, None, None] + 1)[:, None].astype(np.float64)
    return load("shapes_vgg"), images, labels[:, None], truth


def background(images):
    """Each image's median colour: removing the object to it leaves no silhouette behind."""
    return np.median(images, axis=(1, 2), keepdims=True)


def logits_of(kernel, bias, images):  # (M, H, W, 3) -> (M, classes)
    return np.einsum("mhwc,hwcz->mz", images.astype(np.float64), kernel) + bias


def running_logits(kernel, bias, first, rest, maps, ids, counts):
    """(N, K, T) logits of the class when the `count` highest pixels come from `first`, in NumPy."""
    curves = np.empty((*ids.shape, len(counts)))
    for n, k in np.ndindex(*ids.shape):
        order = np.argsort(-maps[n, k].ravel(), kind="stable")
        gain = np.einsum("hwc,hwc->hw", first[n] - rest[n], kernel[..., ids[n, k]]).ravel()[order]
        start = logits_of(kernel, bias, rest[n : n + 1])[0, ids[n, k]]
        curves[n, k] = start + np.concatenate([[0], np.cumsum(gain)])[counts]
    return curves


@pytest.mark.parametrize("steps", [H * W, 7])
def test_deletion_of_a_linear_model_is_the_running_sum_of_weight_times_input(linear, steps):
    model, kernel, bias, images, maps, ids = linear
    counts = np.arange(steps + 1) * H * W // steps
    result = deletion(model, images, ids, maps=maps, steps=steps, score="logit")
    removed = np.zeros_like(images)
    # count pixels, the highest first, come from the zero baseline; the others are the image's
    expected = running_logits(kernel, bias, removed, images, maps, ids, counts)
    np.testing.assert_allclose(result.curves, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(result.steps, counts / (H * W))
    if steps == H * W:  # RISE's auc on equal steps
        auc = (expected.sum(-1) - expected[..., 0] / 2 - expected[..., -1] / 2) / steps
        np.testing.assert_allclose(result.values, auc, rtol=1e-5, atol=1e-5)
    assert not result.higher_is_better and result.baseline.values.shape == ids.shape


def test_deletion_probabilities_and_a_baseline_value_follow_the_softmax_of_the_running_sums(linear):
    model, kernel, bias, images, maps, ids = linear
    counts = np.arange(H * W + 1)
    result = deletion(model, images, ids, maps=maps, steps=H * W, baseline=(10.0, 50.0, 200.0))
    filled = np.broadcast_to(np.float32([10, 50, 200]), images.shape)
    for n, k in np.ndindex(*ids.shape):
        order = np.argsort(-maps[n, k].ravel())
        for t in (0, 5, 13, 20):
            x = images[n].reshape(-1, 3).copy()
            x[order[: counts[t]]] = filled[n].reshape(-1, 3)[order[: counts[t]]]
            logits = logits_of(kernel, bias, x.reshape(1, H, W, 3))[0]
            softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            assert result.curves[n, k, t] == pytest.approx(softmax[ids[n, k]], rel=1e-5, abs=1e-6)


def test_insertion_of_a_linear_model_adds_the_original_pixels_to_the_blurred_image(linear):
    model, kernel, bias, images, maps, ids = linear
    result = insertion(model, images, ids, maps=maps, steps=H * W, score="logit")
    expected = running_logits(kernel, bias, images, blur(images), maps, ids, np.arange(H * W + 1))
    np.testing.assert_allclose(result.curves, expected, rtol=1e-5, atol=1e-4)
    assert result.higher_is_better


def test_the_blur_is_rises_kernel_normalised_so_constant_images_stay_constant():
    flat = np.full((1, 16, 16, 3), 80.0, np.float32)
    np.testing.assert_allclose(blur(flat), flat, rtol=1e-5)
    impulse = np.zeros((1, 21, 21, 3), np.float32)
    impulse[0, 10, 10] = 1
    spread = blur(impulse)[0, :, :, 0]
    assert spread.sum() == pytest.approx(1, abs=1e-5) and spread[10, 10] == spread.max()
    assert spread[10, 4] == 0 and spread[10, 5] > 0  # an 11 x 11 kernel: 5 pixels on each side


def test_on_shapes_the_true_mask_beats_a_random_map_and_the_reversed_mask_loses_to_both(shapes):
    model, images, ids, truth = shapes
    for metric, options in ((deletion, {"baseline": background}), (insertion, {})):
        best = metric(model, images, ids, maps=truth, steps=16, **options)
        worst = metric(model, images, ids, maps=-truth, steps=16, **options)
        sign = 1 if best.higher_is_better else -1
        assert sign * best.mean > sign * best.baseline.mean > sign * worst.mean, metric.__name__
        assert best.curves.shape == (12, 1, 17) and best.baseline.mean == worst.baseline.mean


def probabilities_of(kernel, bias, images, ids):
    logits = logits_of(kernel, bias, images)
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    return (softmax / softmax.sum(1, keepdims=True))[np.arange(len(images)), ids]


def test_average_drop_and_increase_in_confidence_equal_their_formulas_in_numpy(linear):
    model, kernel, bias, images, maps, ids = linear
    maps = maps - 0.3  # negative parts are cut
    maps[1, 0] = 0.0  # an all-zero map gives a black image
    drop = average_drop(model, images, ids, maps=maps)
    rise = increase_in_confidence(model, images, ids, maps=maps)
    expected_drop, expected_rise = np.empty(ids.shape), np.empty(ids.shape)
    for n, k in np.ndindex(*ids.shape):
        positive = np.maximum(maps[n, k], 0)
        mask = positive / positive.max() if positive.max() > 0 else positive
        y = probabilities_of(kernel, bias, images[n : n + 1], ids[n, k : k + 1])[0]
        o = probabilities_of(kernel, bias, images[n : n + 1] * mask[None, ..., None], ids[n, k : k + 1])[0]
        expected_drop[n, k], expected_rise[n, k] = 100 * max(0, y - o) / y, 100 * (o > y)
    np.testing.assert_allclose(drop.values, expected_drop, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(rise.values, expected_rise)
    assert drop.mean == pytest.approx(expected_drop.mean(), rel=1e-4)
    assert not drop.higher_is_better and rise.higher_is_better and drop.baseline is not None


@pytest.mark.parametrize("metric", [deletion, insertion, average_drop, increase_in_confidence])
def test_batch_sizes_give_the_same_values_and_seeds_reproduce(linear, metric):
    model, _, _, images, maps, ids = linear
    options = {"steps": 9} if metric in (deletion, insertion) else {}
    one, many = (metric(model, images, ids, maps=maps, batch_size=b, **options) for b in (1, 64))
    np.testing.assert_allclose(one.values, many.values, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(one.baseline.values, many.baseline.values, rtol=1e-6, atol=1e-7)
    again = metric(model, images, ids, maps=maps, batch_size=64, **options)
    np.testing.assert_array_equal(again.baseline.values, many.baseline.values)
    other = metric(model, images, ids, maps=maps, batch_size=64, seed=1, **options)
    if metric in (deletion, insertion):  # a new random order; the soft masks' 0/100 may tie
        assert not np.array_equal(other.baseline.values, many.baseline.values)


def test_ties_come_in_a_seeded_order_after_every_higher_pixel():
    maps = np.zeros((2, 1, 6, 6))
    maps[:, 0, 2:4, 2:4] = 1.0  # four tied pixels on top, 32 tied below
    ranks = pixel_ranks(maps, seed=3)
    assert sorted(ranks[0, 0].ravel()) == list(range(36))
    assert set(ranks[0, 0, 2:4, 2:4].ravel()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(ranks, pixel_ranks(maps, seed=3))
    assert not np.array_equal(ranks, pixel_ranks(maps, seed=4))
    assert not np.array_equal(ranks[0, 0, 0], np.arange(6) + 4)  # not simply row-major


def test_a_second_call_with_the_same_shapes_does_not_retrace(linear):
    model, _, _, images, maps, ids = linear
    deletion(model, images, ids, maps=maps, steps=5)
    run = causal_curves(model)._run
    count = run.experimental_get_tracing_count()
    deletion(model, images, ids, maps=maps[::-1].copy(), steps=5)
    assert run.experimental_get_tracing_count() == count


@pytest.mark.parametrize(
    "options",
    [
        {"steps": 0},
        {"score": "softmax"},
        {"baseline": np.zeros((2, 2, 3))},
        {"baseline": np.nan},
        {"batch_size": 0},
        {"maps": np.full((3, 2, H, W), np.nan)},
        {"maps": np.zeros((3, 2, 2, 2))},
        {"maps": None},
    ],
)
def test_bad_inputs_raise_one_line_input_errors(linear, options):
    model, _, _, images, maps, ids = linear
    options = {"maps": maps, **options}
    with pytest.raises(InputError) as error:
        deletion(model, images, ids, **options)
    assert "\n" not in str(error.value) and "pass" in str(error.value)


def test_a_method_gives_the_same_result_as_its_precomputed_maps(shapes):
    from lib.methods.grad_cam import GradCAM

    model, images, ids, _ = shapes
    method = GradCAM(model, "conv4_2")
    given = average_drop(model, images, ids, maps=method(images.astype(np.float32), ids))
    made = average_drop(model, images, ids, method=method)
    np.testing.assert_allclose(made.values, given.values, rtol=1e-6)
    np.testing.assert_array_equal(made.baseline.values, given.baseline.values)
