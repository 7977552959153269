"""example/evaluate.py end to end on shapes_vgg: the tables agree with the metrics called directly, the
report reproduces Adebayo et al.'s finding, and the page opens whole in headless chromium."""

import numpy as np
import pytest
from example_support import assert_picture, load_example, run_script
from test_report_browser import browser, images, load  # noqa: F401 (browser is a fixture)

from lib import metrics
from lib.dataflow.shapes import generate
from lib.evaluation import SHAPES_SEED, evaluate_model
from lib.methods import GradCAM
from lib.nets import bundled

METHODS = ("grad_cam", "guided_backprop", "saliency")


@pytest.fixture(scope="module")
def evaluated():
    return evaluate_model("shapes_vgg", METHODS, num_images=6, randomised=3)


evaluate_script = load_example("evaluate")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    status, printed, err, _ = run_script(
        evaluate_script, "--models", "shapes_vgg", "--methods", ",".join(METHODS), "--images", "6",
        "--randomised-images", "3", "--out", out,
    )  # fmt: skip
    assert status == 0, err
    assert "Grad-CAM" in printed and "wrote" in printed
    return out


def test_the_table_holds_the_metrics_of_each_method_called_directly(evaluated):
    model = bundled.load("shapes_vgg")
    x, labels, masks = generate(6, seed=SHAPES_SEED, objects_per_image=2)
    method = GradCAM(model, bundled.LAST_CONV_LAYER["shapes_vgg"])
    direct = {
        "pointing game": metrics.pointing_game(model, x, labels, method=method, masks=masks),
        "insertion": metrics.insertion(model, x, labels, method=method, steps=20),
    }
    row = evaluated.table.methods.index("Grad-CAM")
    for name, result in direct.items():
        column = [c.split(" ")[0] for c in evaluated.table.columns].index(name.split(" ")[0])
        assert evaluated.table.cells[row][column].value == round(result.mean, 3)  # as the table shows it
    assert evaluated.table.methods == ("Grad-CAM", "Guided backprop", "Saliency")


def test_every_tile_of_the_gallery_shows_something(evaluated):
    import io

    from PIL import Image

    (picture,) = evaluated.report_section(1).pictures
    assert len(picture.tiles) == 1 + 2 * len(METHODS)  # the image, then each method for both classes
    for label, png in picture.tiles:
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float64)
        assert pixels.std() > 5, label  # an input-space map once came out black


def test_the_report_reproduces_that_guided_backprop_survives_model_randomisation(evaluated):
    found = {
        label: next(r for r in results if r.name.startswith("model randomisation"))
        for label, results in evaluated.scored[0].results.items()
    }
    top = {label: np.nanmean(r.curves[..., 1]) for label, r in found.items()}  # the classifier random
    assert top["Guided backprop"] > 0.6 > 0.2 > top["Grad-CAM"]  # Adebayo et al.'s Figure 2


def test_the_script_writes_tables_curves_and_a_page_that_opens_whole(written, browser):  # noqa: F811
    assert (written / "shapes_vgg.md").read_text().count("\n| ") >= len(METHODS) + 1
    assert_picture(
        written / "shapes_vgg_randomisation.png", min_side=300, max_side=2000, min_std=5, min_colors=20
    )
    page, problems = load(browser, written / "report.html")
    decoded = images(page)
    assert len(decoded) == 1 + 2 * (1 + 2 * len(METHODS))  # the curves; 2 pictures: image, 2 classes
    assert [alt for alt, width in decoded if width == 0] == [] and problems == []
    rows = page.locator("table.metrics tbody tr th").all_inner_texts()
    assert rows == ["Grad-CAM", "Guided backprop", "Saliency"]


def test_unknown_methods_exit_with_status_2(tmp_path):
    status, _, err, _ = run_script(evaluate_script, "--methods", "grad_cam,nope", "--out", tmp_path)
    assert status == 2 and "unknown nope" in err and not list(tmp_path.iterdir())
