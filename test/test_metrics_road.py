"""ROAD: the noisy linear imputation solves its system exactly and leaves kept pixels alone; MoRF of
the true mask drops the probability faster than a random order on generated images; batch sizes,
seeds and one-line errors."""

import numpy as np
import pytest

from lib.dataflow.shapes import generate
from lib.errors import InputError
from lib.metrics.road import NEIGHBOURS, impute, road
from lib.nets.bundled import load


@pytest.fixture(scope="module")
def shapes():
    images, labels, masks = generate(8, seed=9)
    truth = (masks == labels[:, None, None] + 1)[:, None].astype(np.float64)
    return load("shapes_vgg"), images, labels[:, None], truth


def neighbour_mean(image, r, c):
    """The weighted mean of pixel (r, c)'s neighbours inside the image, 1/6 direct and 1/12 diagonal."""
    total, weights = np.zeros(image.shape[-1]), 0.0
    for dr, dc, weight in NEIGHBOURS:
        if 0 <= r + dr < image.shape[0] and 0 <= c + dc < image.shape[1]:
            total, weights = total + weight * image[r + dr, c + dc], weights + weight
    return total / weights


def test_the_neighbour_weights_are_the_reference_ones():
    assert sorted(w for _, _, w in NEIGHBOURS) == [1 / 12] * 4 + [1 / 6] * 4
    assert {(dr, dc) for dr, dc, _ in NEIGHBOURS} == {(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)} - {
        (0, 0)
    }


def test_without_noise_each_removed_pixel_is_the_weighted_mean_of_its_neighbours():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (9, 11, 3))
    removed = rng.random((9, 11)) < 0.6
    removed[0, :] = True  # a border row: its pixels have 5 or 3 neighbours
    filled = impute(image, removed, noise=0.0).astype(np.float64)
    np.testing.assert_array_equal(filled[~removed], image[~removed].astype(np.float32))
    for r, c in zip(*np.nonzero(removed), strict=True):
        np.testing.assert_allclose(filled[r, c], neighbour_mean(filled, r, c), rtol=1e-4, atol=1e-3)
    assert np.abs(filled[removed] - image[removed]).mean() > 1  # the removed values are gone


def test_noise_touches_only_the_removed_pixels_and_has_its_standard_deviation():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (64, 64, 3))
    removed = rng.random((64, 64)) < 0.5
    clean = impute(image, removed, 0.0)
    noisy = impute(image, removed, 3.0, np.random.default_rng(7))
    np.testing.assert_array_equal(noisy[~removed], clean[~removed])
    assert np.std(noisy[removed] - clean[removed]) == pytest.approx(3.0, rel=0.05)
    np.testing.assert_array_equal(noisy, impute(image, removed, 3.0, np.random.default_rng(7)))


def test_a_constant_image_stays_constant_and_nothing_removed_is_the_image():
    image = np.full((6, 7, 3), 42.0)
    removed = np.zeros((6, 7), bool)
    np.testing.assert_array_equal(impute(image, removed), image)
    removed[1:5, 2:6] = True
    np.testing.assert_allclose(impute(image, removed), image, rtol=1e-6)


def test_morf_of_the_true_mask_drops_faster_than_a_random_order_and_lerf_keeps_it(shapes):
    model, images, ids, truth = shapes
    morf = road(model, images, ids, maps=truth, percentages=(10, 30, 60))
    lerf = road(model, images, ids, maps=truth, order="lerf", percentages=(10, 30, 60))
    assert morf.mean < morf.baseline.mean and lerf.mean > lerf.baseline.mean > morf.mean
    assert (morf.curves.mean(axis=(0, 1)) < morf.baseline.curves.mean(axis=(0, 1))).all()
    assert not morf.higher_is_better and lerf.higher_is_better
    assert morf.curves.shape == (8, 1, 3) and list(morf.steps) == [10, 30, 60]
    np.testing.assert_allclose(morf.values, morf.curves.mean(axis=-1))


def test_batch_sizes_give_the_same_curves_and_seeds_reproduce(shapes):
    model, images, ids, truth = shapes
    options = {"maps": truth[:3], "percentages": (20, 70), "noise": 5.0}
    small, large = (road(model, images[:3], ids[:3], batch_size=b, **options) for b in (4, 32))
    np.testing.assert_allclose(small.curves, large.curves, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(small.baseline.curves, large.baseline.curves, rtol=1e-5, atol=1e-6)
    again = road(model, images[:3], ids[:3], batch_size=32, **options)
    np.testing.assert_array_equal(again.curves, large.curves)
    other = road(model, images[:3], ids[:3], batch_size=32, seed=1, **options)
    assert not np.array_equal(other.curves, large.curves)  # new noise


@pytest.mark.parametrize(
    "options",
    [
        {"order": "most"},
        {"percentages": (50, 100)},
        {"percentages": (60, 20)},
        {"percentages": ()},
        {"noise": -1},
    ],
)
def test_bad_inputs_raise_one_line_input_errors(options):
    images = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(InputError) as error:
        road(None, images, [[0]], maps=np.ones((1, 1, 8, 8)), **options)
    assert "\n" not in str(error.value) and "pass" in str(error.value)
