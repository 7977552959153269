"""lib/sanity.py: randomised copies, the cascade of steps, rank correlations and their table."""

import functools
import warnings

import keras
import numpy as np
import pytest

from lib.errors import InputError
from lib.nets import bundled
from lib.sanity import (
    cascade,
    correlation_table,
    map_correlations,
    mean_correlations,
    randomised,
    rank_correlation,
)

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def model():
    return bundled.load("shapes_vgg")


def same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))


def test_randomised_copy_keeps_the_lower_layers_and_leaves_the_model_alone(model):
    before = [w.copy() for w in model.get_weights()]
    twin = randomised(model, top=2)  # conv4_2 and fc8
    assert twin is not model
    for layer in model.layers:
        assert same_weights(layer, twin.get_layer(layer.name)) == (layer.name not in ("conv4_2", "fc8"))
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    again = randomised(model, top=2).get_layer("fc8").get_weights()[0]
    np.testing.assert_array_equal(again, twin.get_layer("fc8").get_weights()[0])  # fixed seed
    other = randomised(model, top=2, seed=1).get_layer("fc8").get_weights()[0]
    assert not np.array_equal(other, again)


def test_randomised_builds_the_copy_with_the_given_builder(model):
    built = []

    def build():
        built.append(1)
        return bundled.build("shapes_vgg")

    twin = randomised(model, top=7, build=build)
    assert built == [1]
    assert not any(same_weights(layer, twin.get_layer(layer.name)) for layer in model.layers if layer.weights)
    keep_all = randomised(model, top=0, build=functools.partial(bundled.build, "shapes_vgg"))
    assert same_weights(keep_all, model)


@pytest.mark.parametrize("top", [-1, 8])
def test_randomised_refuses_a_count_outside_the_weighted_layers(model, top):
    with pytest.raises(InputError, match=rf"top={top}; pass 0 .. 7, the model's weighted layers"):
        randomised(model, top)


def test_cascade_randomises_the_classifier_then_the_top_half_then_everything(model):
    assert cascade(model) == [("classifier random", 1), ("top 3/7 random", 3), ("all random", 7)]
    x = keras.Input((4, 4, 3))
    y = keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(keras.layers.Conv2D(2, 3, name="conv")(x)))
    assert cascade(keras.Model(x, y)) == [("classifier random", 1), ("all random", 2)]


def test_rank_correlation_is_spearmans_and_nan_for_a_constant_map():
    a = RNG.uniform(size=(8, 8))
    assert rank_correlation(a, np.exp(3 * a)) == pytest.approx(1.0)  # any increasing transform
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert np.isnan(rank_correlation(a, np.zeros((8, 8))))
    assert abs(rank_correlation(a, RNG.uniform(size=(8, 8)))) < 0.3


def test_map_correlations_compare_each_randomised_map_with_the_trained_one():
    trained_gbp, trained_cam = RNG.normal(size=(8, 8, 3)), RNG.uniform(size=(8, 8))
    gbps = np.stack([trained_gbp, -2 * trained_gbp, RNG.normal(size=(8, 8, 3))])  # (S + 1, H, W, 3)
    cams = np.stack([trained_cam, trained_cam[::-1], np.zeros((8, 8))])  # (S + 1, H, W)
    (gbp_1, cam_1), (gbp_2, cam_2) = map_correlations(gbps, cams)
    assert gbp_1 == pytest.approx(1.0)  # magnitude over colours: sign and scale do not matter
    assert abs(gbp_2) < 0.3 and abs(cam_1) < 0.5
    assert np.isnan(cam_2)  # an all-zero Grad-CAM has no ranks


def test_mean_correlations_ignore_constant_maps_without_a_warning():
    per_image = [[(0.9, np.nan), (0.5, np.nan)], [(0.7, np.nan), (np.nan, np.nan)]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        means = mean_correlations(per_image)
    assert means.shape == (2, 2)
    np.testing.assert_allclose(means[:, 0], [0.8, 0.5])
    assert np.isnan(means[:, 1]).all()


def test_correlation_table():
    steps = [("classifier random", 1), ("all random", 7)]
    assert correlation_table(steps, np.array([[0.934, 0.376], [0.3, -0.2]])) == (
        "| randomised | guided backprop | Grad-CAM |\n"
        "| --- | --- | --- |\n"
        "| classifier random | 0.93 | 0.38 |\n"
        "| all random | 0.30 | -0.20 |"
    )
