"""Pointing game, energy in mask and the grid pointing game on hand-made maps, generated images with
exact masks and grids; bootstrap intervals."""

import numpy as np
import pytest

from lib.dataflow import photos
from lib.dataflow.shapes import generate
from lib.errors import InputError
from lib.metrics import bootstrap, energy_in_mask, grid_pointing_game, pointing_game
from lib.metrics.localisation import centre_prior

IMAGES = np.zeros((1, 8, 8, 3), np.float32)


def masks_and_maps():
    masks = np.zeros((1, 8, 8), np.int64)
    masks[0, :4, :4] = 1  # class 0 top-left
    masks[0, 4:, 4:] = 3  # class 2 bottom-right
    maps = np.zeros((1, 3, 8, 8), np.float32)
    maps[0, 0, 1, 1] = 1.0  # class 0: peak on its object
    maps[0, 1, 1, 6] = 1.0  # class 2: peak on the background
    maps[0, 2, 5, 5] = 1.0  # class 1 is absent: not counted
    return maps, masks, np.array([[0, 2, 1]])


def pointing(maps, masks, ids, tolerance=0):
    return pointing_game(None, IMAGES, ids, maps=maps, masks=masks, tolerance=tolerance)


def energy(maps, masks, ids):
    return energy_in_mask(None, IMAGES, ids, maps=maps, masks=masks)


def test_pointing_game_counts_hits_over_present_classes():
    maps, masks, ids = masks_and_maps()
    result = pointing(maps, masks, ids)
    assert result.mean == 0.5
    np.testing.assert_array_equal(result.values, [[1, 0, np.nan]])


def test_pointing_game_tolerance_and_ties():
    maps, masks, ids = masks_and_maps()
    maps[0, 1, 1, 6] = 0
    maps[0, 1, 3, 4] = 1.0  # class 2's peak one pixel above its object's corner (4, 4)
    assert pointing(maps, masks, ids).mean == 0.5 and pointing(maps, masks, ids, tolerance=1).mean == 1.0
    maps[0, 1, 7, 7] = 1.0  # a tie: one of the maximal points is on the object
    assert pointing(maps, masks, ids).mean == 1.0


def test_the_default_tolerance_is_15_pixels_at_224_scaled_to_the_image():
    masks = np.zeros((1, 112, 112), np.int64)
    masks[0, 50:60, 50:60] = 1
    maps = np.zeros((1, 2, 112, 112))
    maps[0, 0, 50, 66] = 1  # 7 px right of the object: within 7.5 px
    maps[0, 1, 50, 68] = 1  # 9 px: outside
    images = np.zeros((1, 112, 112, 3))
    result = pointing_game(None, images, [[0, 0]], maps=maps, masks=masks)
    np.testing.assert_array_equal(result.values, [[1, 0]])


def test_a_constant_map_points_nowhere():
    maps, masks, ids = masks_and_maps()
    maps[:] = 0
    assert pointing(maps, masks, ids).mean == 0.0 and energy(maps, masks, ids).mean == 0.0


def test_energy_in_mask_is_the_share_of_positive_mass_on_the_object():
    maps, masks, ids = masks_and_maps()
    maps[0, 0, 7, 7] = 3.0  # a quarter of class 0's mass is on its object
    maps[0, 0, 2, 2] = -5.0  # negative values do not count
    assert energy(maps, masks, ids).mean == pytest.approx((0.25 + 0.0) / 2)


def test_on_generated_images_the_true_mask_scores_one_and_a_uniform_map_its_baseline():
    images, labels, masks = generate(40, seed=77, objects_per_image=2)
    truth = np.stack([masks == labels[:, k, None, None] + 1 for k in range(2)], axis=1).astype(float)
    for metric in (pointing_game, energy_in_mask):
        exact = metric(None, images, labels, maps=truth, masks=masks)
        assert exact.mean == 1.0 and exact.interval == (1.0, 1.0)
    uniform = energy_in_mask(None, images, labels, maps=np.ones_like(truth), masks=masks)
    np.testing.assert_allclose(uniform.values, uniform.baseline.values)
    area = np.mean([(masks[n] == labels[n, k] + 1).mean() for n in range(40) for k in range(2)])
    assert uniform.mean == pytest.approx(area)  # a uniform map's share is the object's area
    centred = pointing_game(None, images, labels, maps=centre_prior(truth.shape), masks=masks)
    np.testing.assert_array_equal(centred.values, centred.baseline.values)
    assert 0 < centred.mean < 1


def test_grid_pointing_game_is_the_share_in_the_class_cell_and_a_quarter_for_a_uniform_map():
    _, cells = photos.compose_grid([np.zeros((8, 8, 3))] * 4, cell=16)
    ids = np.array([[3, 7, 1, 5]])
    maps = np.zeros((1, 4, 32, 32))
    maps[0, :, :16, :16] = 1  # every class's mass is in cell 0 (top-left)
    result = grid_pointing_game(None, np.zeros((1, 32, 32, 3)), ids, maps=maps, cells=cells)
    np.testing.assert_allclose(result.values, [[1, 0, 0, 0]])
    assert result.baseline.mean == pytest.approx(0.25)


def test_bad_inputs_raise_input_error():
    maps, masks, ids = masks_and_maps()
    with pytest.raises(InputError, match="do not match"):
        pointing(maps, masks[:, :4], ids)
    with pytest.raises(InputError, match="class_ids"):
        pointing(maps, masks, ids[:, :2])
    with pytest.raises(InputError, match="not both or neither"):
        pointing_game(None, IMAGES, ids, masks=masks)
    with pytest.raises(InputError, match="masks="):
        pointing_game(None, IMAGES, ids, maps=maps)
    with pytest.raises(InputError, match="maps have shape"):
        pointing_game(None, np.zeros((1, 9, 9, 3)), ids, maps=maps, masks=masks)


def test_bootstrap_intervals_contain_the_mean_and_shrink_with_more_images():
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 80, 320):
        values = rng.uniform(0, 1, (n, 2))
        values[rng.uniform(size=(n, 2)) < 0.2] = np.nan  # undefined pairs are left out
        mean, (low, high) = bootstrap(values, seed=1)
        assert mean == pytest.approx(np.nanmean(values)) and low < mean < high
        widths.append(high - low)
    assert widths[0] > 1.6 * widths[1] > 1.6**2 * widths[2]  # about 1 / sqrt(N): half per 4x images
    assert np.isnan(bootstrap(np.full((3, 1), np.nan))[0])
