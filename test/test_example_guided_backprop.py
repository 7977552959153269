"""example/guided_backpropagation.py: maps agree with the library, sanity check, determinism, bad input."""

from pathlib import Path

import example_support
import numpy as np
import pytest
from example_support import assert_picture, load_example, run_as_from_a_shell

from lib import cli
from lib.dataflow.images import load_images
from lib.methods.guided_backprop import GuidedBackprop
from lib.nets import bundled

ROOT = Path(__file__).resolve().parents[1]
gbp = load_example("guided_backpropagation")

GOOD = ("04_ring.png", "09_disk_ring.png")


def run_script(*argv):
    """(exit status, stdout, stderr, warning messages) of the script run as from the shell."""
    return example_support.run_script(gbp, *argv)


def image_folder(root, names=GOOD, bad=()):
    return example_support.image_folder(root, names, bad)


def files(folder):
    return example_support.files(folder)


def assert_real_picture(path, min_side=150, max_side=2000):
    assert_picture(path, min_side, max_side, min_std=20, min_colors=50)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("guided_backprop")
    images = image_folder(root / "images", bad=("broken.png",))
    status, stdout, stderr, caught = run_script("--images", images, "--out", root / "out")
    return root, status, stdout, stderr, caught


def test_default_run_writes_a_figure_and_the_map_of_each_readable_image(default_run):
    root, status, stdout, _, caught = default_run
    assert status == 0
    stems = [Path(name).stem for name in GOOD]
    expected = {f"{s}_guided_backprop{suffix}" for s in stems for suffix in (".png", ".npy")}
    assert set(files(root / "out")) == expected | {"guided_backpropagation_overview.png"}
    assert "2 images, 1 skipped: broken.png" in stdout
    assert any("broken.png" in message for message in caught)
    for name in (*(f"{s}_guided_backprop.png" for s in stems), "guided_backpropagation_overview.png"):
        assert_real_picture(root / "out" / name)


def test_maps_are_those_of_the_method_for_the_predicted_class(default_run):
    model = bundled.load("shapes_vgg")
    x = load_images([cli.SAMPLES_DIR / name for name in GOOD], size=bundled.INPUT_SIZE).images
    maps = np.stack([np.load(default_run[0] / "out" / f"{Path(n).stem}_guided_backprop.npy") for n in GOOD])
    assert maps.shape == (2, 1, 64, 64, 3) and maps.dtype == np.float32
    expected = GuidedBackprop(model)(x, None)  # each image's top class
    np.testing.assert_allclose(maps, expected, atol=1e-5 * np.abs(expected).max())


def test_class_id_flag_explains_the_given_classes(tmp_path):
    images = image_folder(tmp_path / "images", names=GOOD[1:])
    status, *_ = run_script("--images", images, "--out", tmp_path / "out", "--class-id", "3", "4")
    assert status == 0
    maps = np.load(tmp_path / "out" / "09_disk_ring_guided_backprop.npy")
    x = load_images(images, size=bundled.INPUT_SIZE).images
    expected = GuidedBackprop(bundled.load("shapes_vgg"))(x, [3, 4])
    np.testing.assert_allclose(maps[None], expected, atol=1e-5 * np.abs(expected).max())
    assert not np.allclose(maps[0], maps[1])


@pytest.fixture(scope="module")
def sanity_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sanity")
    status, stdout, stderr, _ = run_script("--out", root / "out", "--sanity-check")  # 6 of the samples
    return root, status, stdout, stderr


def correlations(stdout):
    """{randomised layers: (guided backprop, Grad-CAM)} from the printed table."""
    rows = [line.strip("|").split("|") for line in stdout.splitlines() if line.startswith("| ")]
    return {label.strip(): (float(a), float(b)) for label, a, b in rows[2:]}


def test_sanity_check_shows_guided_backprop_ignores_the_classifier(sanity_run):
    root, status, stdout, _ = sanity_run
    assert status == 0 and "6 images, 0 skipped" in stdout
    assert files(root / "out") == ["guided_backpropagation_sanity_check.png"]
    assert_real_picture(root / "out" / "guided_backpropagation_sanity_check.png", min_side=300)
    table = correlations(stdout)
    assert list(table) == ["classifier random", "top 3/7 random", "all random"]
    gbp_corr, cam_corr = table["classifier random"]
    # Adebayo et al.: with a random classifier, guided backprop barely changes while Grad-CAM does.
    assert gbp_corr > 0.8 and cam_corr < gbp_corr - 0.4


def test_sanity_check_is_deterministic(sanity_run, tmp_path):
    root = sanity_run[0]
    status, stdout, *_ = run_script("--out", tmp_path, "--sanity-check")
    assert status == 0 and correlations(stdout) == correlations(sanity_run[2])
    name = "guided_backpropagation_sanity_check.png"
    assert (tmp_path / name).read_bytes() == (root / "out" / name).read_bytes()


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (["--images", "missing.png"], "does not exist"),
        (["--class-id", "8"], "class id 8 is outside 0..7"),
        (["--class-id", "-2", "--sanity-check"], "class id -2"),
        (["--weights", "x.h5"], "bundled model"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, argv, phrase):
    images = image_folder(tmp_path / "images", names=GOOD[:1])
    status, _, stderr, _ = run_script("--images", images, "--out", tmp_path / "out", *argv)
    assert status == 2
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and phrase in stderr
    assert files(tmp_path / "out") == []


def test_the_closing_line_says_1_image_not_1_images(tmp_path, capsys):
    image = cli.SAMPLES_DIR / GOOD[0]
    status, stdout, _ = run_as_from_a_shell(capsys, gbp, "--images", image, "--out", tmp_path / "out")
    assert status == 0
    assert " for 1 image and " in stdout and "1 images" not in stdout


@pytest.mark.slow
def test_full_size_vgg19_with_random_weights_runs_and_warns(tmp_path):
    images = image_folder(tmp_path / "images", names=GOOD[:1])
    status, _, _, caught = run_script("--model", "vgg19", "--images", images, "--out", tmp_path / "out")
    assert status == 0
    assert any("random weights" in message for message in caught)
    assert np.load(tmp_path / "out" / "04_ring_guided_backprop.npy").shape == (1, 224, 224, 3)
    assert_real_picture(tmp_path / "out" / "04_ring_guided_backprop.png", min_side=200)
