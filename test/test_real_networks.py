"""The methods on the real ImageNet networks: CAM equals Grad-CAM, and the grid pointing game on photos."""

import numpy as np
import pytest

from lib.grid_game import confident_photos, grid_game
from lib.methods.cam import CAM
from lib.methods.grad_cam import GradCAM
from lib.nets.efficientnet import efficientnet_lite0
from lib.nets.squeezenet import squeezenet

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:layer=None")]
GRIDS = 24  # 96 cells, every chosen photo in every position equally often


@pytest.fixture(scope="module")
def efficientnet():
    return efficientnet_lite0(weights="imagenet")


def test_cam_equals_grad_cam_at_the_efficientnet_head(efficientnet):
    from lib.dataflow import photos

    images, _ = photos.load_grids([("coffee",), ("chelsea",), ("camera",)], cell=224, cols=1)
    cam = CAM(efficientnet)
    assert cam.layer == "top_activation"
    ids = [[967, 285], [285, 872], [872, 967]]
    maps, reference = cam(images, ids), GradCAM(efficientnet, "top_activation")(images, ids)
    assert np.corrcoef(maps.ravel(), reference.ravel())[0, 1] > 0.999
    np.testing.assert_allclose(maps, reference, atol=1e-4)


def test_confident_photos_are_confident_and_of_distinct_classes(efficientnet):
    chosen = confident_photos(efficientnet, cell=224)
    assert len({c.class_id for c in chosen}) == len(chosen) >= 4
    assert sum(c.probability >= 0.5 for c in chosen) >= 4
    assert [c.probability for c in chosen] == sorted((c.probability for c in chosen), reverse=True)


def test_grid_pointing_game_of_grad_cam_at_the_efficientnet_head(efficientnet):
    grid_model = efficientnet_lite0(weights="imagenet", input_shape=(448, 448, 3))
    chosen = confident_photos(efficientnet, cell=224)
    (score,) = grid_game(grid_model, {"Grad-CAM": GradCAM(grid_model, "top_activation")}, chosen, GRIDS)
    assert score.cells == 4 * GRIDS
    assert score.mass_in_cell >= 0.7  # chance: 0.25
    assert score.pointing >= 0.95


def test_grid_pointing_game_of_grad_cam_at_squeezenet_fire9():
    chosen = confident_photos(squeezenet(weights="imagenet"), cell=227)
    grid_model = squeezenet(weights="imagenet", input_shape=(454, 454, 3))
    (score,) = grid_game(grid_model, {"Grad-CAM": GradCAM(grid_model, "fire9_concat")}, chosen, GRIDS)
    assert score.cells == 4 * GRIDS
    assert score.mass_in_cell >= 0.45  # chance: 0.25; its 27x27 map at 454x454 is coarser
    assert score.pointing >= 0.75
