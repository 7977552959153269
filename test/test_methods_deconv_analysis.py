"""lib/methods/deconv_analysis.py: windows of receptive fields, and the reconstructions' energy on objects."""

from types import SimpleNamespace

import numpy as np
import pytest

from lib.methods.deconv_analysis import object_shares, window
from lib.methods.receptive_field import Field


def test_window_cuts_the_box_and_pads_outside_the_array_with_zeros():
    array = np.arange(16).reshape(4, 4)
    np.testing.assert_array_equal(window(array, (1, 1, 3, 4)), array[1:3, 1:4])
    out = window(array, (-1, 2, 2, 6))  # one row above, two columns right of the array
    assert out.shape == (3, 4) and out.dtype == array.dtype
    np.testing.assert_array_equal(out, [[0, 0, 0, 0], [2, 3, 0, 0], [6, 7, 0, 0]])
    assert not window(np.ones((2, 2), bool), (5, 5, 7, 8)).any()  # entirely outside


def test_object_shares_measure_the_reconstruction_inside_the_mask_within_the_window():
    field = Field(jump=(4, 4), size=(6, 6), start=(-2, -2), length=(4, 4))  # unit (0, 0) sees rows -2..3
    mask = np.zeros((16, 16), np.int64)
    mask[0:2, 0:2] = 3  # a 2x2 object in the image's corner
    rec = np.zeros((1, 6, 6, 3), np.float32)
    rec[0, 2:4, 2:4] = 1.0  # all energy on the object's pixels (window offset by the padding)
    rec[0, 0, 0] = 0.0  # outside the image: nothing there
    top = SimpleNamespace(reconstructions=rec, positions=np.array([[0, 0]]))
    energy, area = object_shares(top, [mask], field)[0]
    assert energy == 1.0 and area == 4 / 16  # 4 object pixels of the 4x4 part of the window in the image
    rec[0, 5, 5] = 1.0  # one of three colour channels' worth per pixel: 4 on, 1 off the object
    assert object_shares(top, [mask], field)[0, 0] == pytest.approx(4 / 5)
    assert np.isnan(object_shares(top, [None], field)).all()


def test_object_shares_of_several_activations_follow_their_positions():
    field = Field(jump=(2, 2), size=(4, 4), start=(0, 0), length=(3, 3))
    mask = np.zeros((8, 8), np.int64)
    mask[4:8, 4:8] = 1  # the object fills the field of unit (2, 2) and none of unit (0, 0)
    rec = np.ones((3, 4, 4, 3), np.float32)
    rec[2] = 0.0  # an all-zero reconstruction has no energy anywhere
    top = SimpleNamespace(reconstructions=rec, positions=np.array([[2, 2], [0, 0], [2, 2]]))
    shares = object_shares(top, [mask, mask, mask], field)
    assert shares.shape == (3, 2) and shares.dtype == np.float64
    np.testing.assert_array_equal(shares, [[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
