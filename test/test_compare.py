"""lib.compare, lib.methods.catalog and example/compare.py: every method by name, the same classes in
every column, maps equal to the methods called directly, and the figure a person looks at."""

import numpy as np
import pytest
import scipy.io
from example_support import assert_picture, load_example, run_script

from lib import cli
from lib import compare as comparison
from lib.dataflow.images import load_images
from lib.methods import GradCAM, Saliency, catalog
from lib.nets import bundled

compare_script = load_example("compare")
LAYER = bundled.LAST_CONV_LAYER["shapes_vgg"]


@pytest.fixture(scope="module")
def model():
    return bundled.load("shapes_vgg")


@pytest.fixture(scope="module")
def images():
    return load_images(sorted(cli.SAMPLES_DIR.glob("*.png"))[:3], (64, 64)).images


@pytest.mark.parametrize("name", catalog.names())
def test_every_catalog_method_builds_by_name_and_gives_maps_of_its_kind(name, model, images):
    entry = catalog.ENTRIES[name]
    assert entry.kind in catalog.KINDS
    method = catalog.build(name, model, LAYER if entry.takes_layer else None)
    result = method.explain(images, [[1, 4]] * len(images))
    shape = (len(images), 2, 64, 64) + ((3,) if entry.kind == "input space" else ())
    assert result.maps.shape == shape and np.isfinite(result.maps).all()
    if entry.kind == "class map":
        assert result.maps.min() >= 0 and result.maps.max() <= 1
    np.testing.assert_array_equal(result.class_ids, [[1, 4]] * len(images))


def test_an_unknown_name_lists_the_methods(model):
    with pytest.raises(ValueError, match="no method 'gradcam'; pick one of grad_cam, grad_cam_plus_plus"):
        catalog.build("gradcam", model)


def test_every_column_explains_the_classes_the_first_one_picked(model, images):
    results = comparison.compare(model, images, ["grad_cam", "saliency"], layer=LAYER)
    top = model(images).numpy().argmax(-1)[:, None]
    for compared in results:
        np.testing.assert_array_equal(compared.result.class_ids, top)
        assert compared.seconds > 0
    np.testing.assert_allclose(results[0].result.maps, GradCAM(model, LAYER)(images, top), atol=1e-6)
    np.testing.assert_allclose(results[1].result.maps, Saliency(model)(images, top), rtol=1e-5, atol=1e-9)


def test_tiles_scale_score_maps_from_their_minimum_to_their_maximum():
    image = np.full((4, 4, 3), 128.0)
    drops = np.array([[-2.0, 0.0, 1.0, 4.0]] * 4)
    expected = comparison.tile("class map", image, (drops + 2) / 6)
    np.testing.assert_array_equal(comparison.tile("score map", image, drops), expected)
    flat = comparison.tile("score map", image, np.full((4, 4), 3.0))
    np.testing.assert_array_equal(flat, comparison.tile("class map", image, np.zeros((4, 4))))
    assert (
        comparison.tile("input space", image, np.zeros((4, 4, 3))).tolist()
        == np.full((4, 4, 3), 0.5).tolist()
    )


def test_the_script_writes_the_figure_and_the_maps_of_each_method(tmp_path, model, images):
    status, out, err, _ = run_script(
        compare_script, "--model", "shapes_vgg", "--images", cli.SAMPLES_DIR, "--max-images", "2",
        "--methods", "grad_cam,eigen_cam,saliency", "--out", tmp_path,
    )  # fmt: skip
    assert status == 0, err
    assert "Eigen-CAM" in out and "ms/img" in out
    assert_picture(tmp_path / "compare.png", min_side=250, max_side=3000, min_std=20, min_colors=50)
    mat = scipy.io.loadmat(tmp_path / "compare.mat")
    assert mat["grad_cam"].shape == (2, 1, 64, 64) and mat["saliency"].shape == (2, 1, 64, 64, 3)
    ids = mat["class_ids"]
    first = sorted(cli.SAMPLES_DIR.glob("*.png"))[:2]
    direct = GradCAM(model, LAYER)(load_images(first, (64, 64)).images, ids)
    np.testing.assert_allclose(mat["grad_cam"], direct, atol=1e-6)


def test_unknown_methods_are_one_line_and_exit_status_2(tmp_path):
    status, _, err, _ = run_script(
        compare_script, "--model", "shapes_vgg", "--methods", "grad_cam,magic", "--out", tmp_path
    )
    assert status == 2
    assert err.strip().count("\n") == 0 and "unknown magic; pick from grad_cam" in err
    assert not (tmp_path / "compare.png").exists()


def test_times_per_image_read_in_milliseconds_below_a_second_and_seconds_above():
    from lib.compare import per_image

    assert (per_image(0.0164), per_image(0.9994), per_image(2.94)) == ("16 ms/img", "999 ms/img", "2.9 s/img")
