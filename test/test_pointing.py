"""lib/pointing.py: the pointing game of the bundled models on two-object images, and its table."""

import numpy as np
import pytest

from lib import pointing
from lib.errors import InputError
from lib.methods.grad_cam import GuidedGradCAM
from lib.nets import bundled
from lib.pointing import PointingScore, batched_maps, centre_maps, pointing_scores, pointing_table, score


@pytest.fixture(scope="module")
def scores():
    return pointing_scores(24, batch_size=12)


def by_label(scores):
    return {(s.model, s.method, s.layer): s for s in scores}


def test_grad_cam_equals_cam_and_beats_the_centre_baseline(scores):
    rows = by_label(scores)
    assert len(scores) == 1 + 5 * len(bundled.names()) and scores[0] == rows[pointing.BASELINE]
    baseline = rows[pointing.BASELINE]
    for name in bundled.names():
        last = bundled.LAST_CONV_LAYER[name]
        grad_cam, cam = rows[name, "Grad-CAM", last], rows[name, "CAM", last]
        # the same maps when pooled, up to float rounding
        assert grad_cam.pointing == cam.pointing and grad_cam.energy == pytest.approx(cam.energy, rel=1e-6)
        hit, within_1, within_4 = grad_cam.pointing
        assert hit <= within_1 <= within_4  # a looser game never scores lower
        assert within_4 >= 0.8 and hit > baseline.pointing[0] + 0.25  # on 500 images: about 93% and 60%
        assert grad_cam.energy > baseline.energy
        assert rows[name, "Guided Grad-CAM (magnitude)", last].pointing[1] >= 0.8  # edges: 88-98% on 500
        assert {s.layer for s in scores if s.model == name and s.method == "Grad-CAM"} == set(
            pointing.LAYERS[name]
        )


def test_the_table_prints_every_score_as_a_percentage(scores):
    lines = pointing_table(scores).splitlines()
    assert lines[0] == (
        "| model | method | layer | pointing game | within 1 px | within 4 px | energy in mask |"
    )
    assert lines[1] == "| --- | --- | --- | --- | --- | --- | --- |"
    assert len(lines) == 2 + len(scores)
    for line, s in zip(lines[2:], scores, strict=True):
        model, method, layer, *rates = (cell.strip() for cell in line.strip("|").split("|"))
        assert (model, method, layer) == (s.model, s.method, s.layer)
        expected = [*s.pointing, s.energy]
        np.testing.assert_allclose([float(r.rstrip("%")) / 100 for r in rates], expected, atol=5e-4)


def test_the_table_names_each_tolerance():
    row = PointingScore("m", "x", "l", (0.5, 1.0), (2, 5), 0.25)
    assert pointing_table([row]).splitlines() == [
        "| model | method | layer | within 2 px | within 5 px | energy in mask |",
        "| --- | --- | --- | --- | --- | --- |",
        "| m | x | l | 50.0% | 100.0% | 25.0% |",
    ]


def test_centre_maps_peak_at_the_centre_and_are_symmetric():
    maps = centre_maps((3, 2, 9, 9))
    assert maps.shape == (3, 2, 9, 9) and np.unravel_index(maps[1, 1].argmax(), (9, 9)) == (4, 4)
    np.testing.assert_array_equal(maps[0, 0], maps[2, 1])
    np.testing.assert_allclose(maps[0, 0], maps[0, 0].T)
    np.testing.assert_allclose(maps[0, 0], maps[0, 0][::-1, ::-1])


def test_a_map_on_its_object_scores_1_and_one_off_it_scores_0():
    masks = np.zeros((2, 8, 8), np.int32)
    masks[:, :3, :3], masks[:, 5:, 5:] = 1, 3  # class 0 top left, class 2 bottom right
    ids = np.array([[0, 2], [0, 2]])
    on = np.stack([masks == 1, masks == 3], axis=1).astype(np.float32)  # (2, 2, 8, 8)
    assert score(on, masks, ids, ("m", "on", "-")) == PointingScore(
        "m", "on", "-", (1.0,) * 3, (0, 1, 4), 1.0
    )
    off = on[:, ::-1]  # each class gets the other object's map
    result = score(off, masks, ids, ("m", "off", "-"), tolerances=(0, 1))
    assert result.pointing == (0.0, 0.0) and result.energy == 0.0


def test_batched_maps_equal_one_call_and_report_progress():
    model = bundled.load("shapes_vgg")
    method = GuidedGradCAM(model, "conv4_2")
    images = np.random.default_rng(0).uniform(0, 255, (5, 64, 64, 3)).astype(np.float32)
    ids = np.array([[0, 1], [2, 3], [4, 5], [6, 7], [1, 0]])
    done = []
    maps = batched_maps(method, images, ids, batch_size=2, progress=done.append)
    assert done == [0, 2, 4, 5]
    whole = np.linalg.norm(method(images, ids), axis=-1)  # (5, 2, 64, 64): magnitude over colours
    assert maps.shape == (5, 2, 64, 64)
    np.testing.assert_allclose(maps, whole, rtol=1e-4, atol=1e-6 * whole.max())


def test_progress_names_each_method_and_counts_its_images():
    calls = []
    pointing_scores(3, batch_size=2, models=["shapes_vgg"], progress=lambda *call: calls.append(call))
    labels = list(dict.fromkeys(label for label, _, _ in calls))
    assert labels == [
        "shapes_vgg Grad-CAM conv4_2",
        "shapes_vgg Grad-CAM conv3_2",
        "shapes_vgg CAM conv4_2",
        "shapes_vgg Guided Grad-CAM (magnitude) conv4_2",
        "shapes_vgg guided backprop (magnitude) -",
    ]
    assert all((done, total) in {(0, 3), (2, 3), (3, 3)} for _, done, total in calls) and len(calls) == 15


def test_no_images_is_refused():
    with pytest.raises(InputError, match=r"num_images=0; pass a number of images >= 1"):
        pointing_scores(0)
