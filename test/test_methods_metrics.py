"""Pointing game and energy-in-mask on hand-made maps and masks."""

import numpy as np
import pytest

from lib.errors import InputError
from lib.metrics import energy_in_mask, pointing_game


def masks_and_maps():
    masks = np.zeros((1, 8, 8), np.int64)
    masks[0, :4, :4] = 1  # class 0 top-left
    masks[0, 4:, 4:] = 3  # class 2 bottom-right
    maps = np.zeros((1, 3, 8, 8), np.float32)
    maps[0, 0, 1, 1] = 1.0  # class 0: peak on its object
    maps[0, 1, 1, 6] = 1.0  # class 2: peak on the background
    maps[0, 2, 5, 5] = 1.0  # class 1 is absent: not counted
    return maps, masks, np.array([[0, 2, 1]])


def test_pointing_game_counts_hits_over_present_classes():
    maps, masks, ids = masks_and_maps()
    assert pointing_game(maps, masks, ids) == 0.5
    assert pointing_game(maps, masks, np.array([[0, 2, 1]]), tolerance=0) == 0.5


def test_pointing_game_tolerance_and_ties():
    maps, masks, ids = masks_and_maps()
    maps[0, 1, 1, 6] = 0
    maps[0, 1, 3, 4] = 1.0  # class 2's peak one pixel above its object's corner (4, 4)
    assert pointing_game(maps, masks, ids) == 0.5 and pointing_game(maps, masks, ids, tolerance=1) == 1.0
    maps[0, 1, 7, 7] = 1.0  # a tie: one of the maximal points is on the object
    assert pointing_game(maps, masks, ids) == 1.0


def test_a_constant_map_points_nowhere():
    maps, masks, ids = masks_and_maps()
    maps[:] = 0
    assert pointing_game(maps, masks, ids) == 0.0 and energy_in_mask(maps, masks, ids) == 0.0


def test_energy_in_mask_is_the_share_of_mass_on_the_object():
    maps, masks, ids = masks_and_maps()
    maps[0, 0, 7, 7] = 3.0  # a quarter of class 0's mass is on its object
    assert energy_in_mask(maps, masks, ids) == pytest.approx((0.25 + 0.0) / 2)


def test_shape_mismatch_raises_input_error():
    maps, masks, ids = masks_and_maps()
    with pytest.raises(InputError, match="do not match"):
        pointing_game(maps, masks[:, :4], ids)
    with pytest.raises(InputError, match="class_ids"):
        pointing_game(maps, masks, ids[:, :2])
    with pytest.raises(InputError, match="negative"):
        energy_in_mask(-maps, masks, ids)
