"""example/gradcam.py: maps agree with the library, class discrimination, determinism, bad input."""

import shutil
from pathlib import Path

import example_support
import numpy as np
import pytest
from example_support import assert_picture, load_example, run_as_from_a_shell
from image_files import png_header, save, truncated
from PIL import Image

from lib import cli, pointing
from lib.dataflow.images import load_images
from lib.dataflow.shapes import CLASS_NAMES
from lib.methods.grad_cam import GradCAM, GuidedGradCAM
from lib.nets import bundled

ROOT = Path(__file__).resolve().parents[1]
gradcam = load_example("gradcam")

GOOD = ("04_ring.png", "09_disk_ring.png")


def run_script(*argv):
    """(exit status, stdout, stderr, warning messages) of the script run as from the shell."""
    return example_support.run_script(gradcam, *argv)


def image_folder(root, names=GOOD, bad=()):
    return example_support.image_folder(root, names, bad)


def files(folder):
    return example_support.files(folder)


def assert_real_picture(path, min_side=300, max_side=2000):
    assert_picture(path, min_side, max_side, min_std=20, min_colors=50)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gradcam")
    images = image_folder(root / "images", bad=("notes.jpg",))
    status, stdout, stderr, caught = run_script("--images", images, "--out", root / "out")
    return root, status, stdout, stderr, caught


def test_default_run_writes_a_figure_and_two_maps_per_readable_image(default_run):
    root, status, stdout, _, caught = default_run
    assert status == 0
    stems = [Path(name).stem for name in GOOD]
    expected = {
        f"{s}{suffix}" for s in stems for suffix in ("_gradcam.png", "_gradcam.npy", "_guided_gradcam.npy")
    }
    assert set(files(root / "out")) == expected | {
        "gradcam_overview.png"
    }  # nothing for notes.jpg, no temp files
    assert "2 images, 1 skipped: notes.jpg" in stdout
    assert any("notes.jpg" in message for message in caught)
    for name in ("04_ring_gradcam.png", "09_disk_ring_gradcam.png"):
        assert_real_picture(root / "out" / name)
    assert_real_picture(root / "out" / "gradcam_overview.png", min_side=150)  # one row of two images


def test_maps_are_those_of_the_methods_for_the_top_two_classes(default_run):
    root = default_run[0]
    model = bundled.load("shapes_vgg")
    x = load_images([cli.SAMPLES_DIR / name for name in GOOD], size=bundled.INPUT_SIZE).images
    ids = np.argsort(-np.asarray(model(x)), axis=1)[:, :2]
    cams = np.stack([np.load(root / "out" / f"{Path(n).stem}_gradcam.npy") for n in GOOD])
    guided = np.stack([np.load(root / "out" / f"{Path(n).stem}_guided_gradcam.npy") for n in GOOD])
    assert cams.shape == (2, 2, 64, 64) and guided.shape == (2, 2, 64, 64, 3)
    assert cams.min() >= 0 and cams.max() == 1
    np.testing.assert_allclose(cams, GradCAM(model, "conv4_2")(x, ids), atol=1e-5)
    expected = GuidedGradCAM(model, "conv4_2")(x, ids)
    np.testing.assert_allclose(guided, expected, atol=1e-5 * np.abs(expected).max())


def test_the_two_classes_of_a_two_object_image_get_maps_peaking_apart(default_run):
    cams = np.load(default_run[0] / "out" / "09_disk_ring_gradcam.npy")  # (2, 64, 64), top-2 classes
    x = load_images(cli.SAMPLES_DIR / "09_disk_ring.png", size=bundled.INPUT_SIZE).images
    top2 = np.argsort(-np.asarray(bundled.load("shapes_vgg")(x)), axis=1)[0, :2]
    assert sorted(CLASS_NAMES[c] for c in top2) == ["disk", "ring"]  # both objects are the top two
    peaks = [np.unravel_index(cam.argmax(), cam.shape) for cam in cams]
    assert np.hypot(*np.subtract(*peaks)) > 16  # each map on its own object, not one blob for both


def test_class_id_flag_explains_the_given_classes(tmp_path):
    images = image_folder(tmp_path / "images", names=("09_disk_ring.png",))
    status, *_ = run_script("--images", images, "--out", tmp_path / "out", "--class-id", "3", "7")
    assert status == 0
    cams = np.load(tmp_path / "out" / "09_disk_ring_gradcam.npy")
    x = load_images(images, size=bundled.INPUT_SIZE).images
    np.testing.assert_allclose(
        cams[None], GradCAM(bundled.load("shapes_vgg"), "conv4_2")(x, [3, 7]), atol=1e-5
    )


def test_a_second_run_writes_identical_files(default_run, tmp_path):
    root = default_run[0]
    status, *_ = run_script("--images", root / "images", "--out", tmp_path)
    assert status == 0 and files(tmp_path) == files(root / "out")
    for name in files(tmp_path):
        assert (tmp_path / name).read_bytes() == (root / "out" / name).read_bytes(), name


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (["--images", "missing_folder"], "does not exist"),
        (["--class-id", "8"], "class id 8 is outside 0..7"),
        (["--class-id", "-1"], "class id -1"),
        (["--layer", "fc8"], "no (N, h, w, C) axes"),
        (["--layer", "conv9"], "no layer 'conv9'"),
        (["--weights", "x.npy"], "bundled model"),
        (["--pointing-game", "0"], "--pointing-game 0"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, argv, phrase):
    images = image_folder(tmp_path / "images", names=GOOD[:1])
    status, _, stderr, _ = run_script("--images", images, "--out", tmp_path / "out", *argv)
    assert status == 2
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and phrase in stderr
    assert files(tmp_path / "out") == []


def test_a_folder_of_unreadable_images_exits_2(tmp_path):
    images = image_folder(tmp_path / "images", names=(), bad=("a.jpg", "b.png"))
    status, _, stderr, _ = run_script("--images", images, "--out", tmp_path / "out")
    assert status == 2 and "none of the 2 images could be read" in stderr
    assert files(tmp_path / "out") == []


def test_a_path_that_does_not_exist_is_one_error_line(tmp_path, capsys):
    missing = tmp_path / "nowhere.png"
    status, out, err = run_as_from_a_shell(capsys, gradcam, "--images", missing, "--out", tmp_path / "out")
    assert (status, out, err) == (2, "", [f"error: path '{missing}' does not exist; check it"])
    assert files(tmp_path / "out") == []


@pytest.mark.parametrize(
    ("argv", "bad"), [(["8"], "8"), (["0", "-1"], "-1")], ids=["out-of-range", "negative"]
)
def test_a_class_id_the_model_does_not_have_is_one_error_line(tmp_path, capsys, argv, bad):
    status, out, err = run_as_from_a_shell(capsys, gradcam, "--class-id", *argv, "--out", tmp_path)
    assert (status, out) == (2, "")
    assert err == [f"error: class id {bad} is outside 0..7; pass ids of the model's classes"]
    assert files(tmp_path) == []


def test_a_folder_of_good_and_bad_images_maps_every_good_one_and_names_every_bad_one(tmp_path, capsys):
    folder, out = tmp_path / "mixed", tmp_path / "out"
    folder.mkdir()
    shutil.copy(cli.SAMPLES_DIR / GOOD[1], folder / GOOD[1])
    save(folder / "rgba.png", np.tile(np.uint8([255, 0, 0, 128]), (30, 40, 1)))
    save(folder / "one.png", np.uint8([[[200, 100, 50]]]))
    truncated(folder / "cut.jpg", "JPEG")
    truncated(folder / "cut.png", "PNG")
    (folder / "notes.jpg").write_text("not an image")
    (folder / "huge.png").write_bytes(png_header(20000, 20000))
    (folder / "empty.png").write_bytes(b"")
    good = ["09_disk_ring", "one", "rgba"]  # a 1x1 and an RGBA image are converted, not refused
    bad = ["cut.jpg", "cut.png", "empty.png", "huge.png", "notes.jpg"]

    status, stdout, err = run_as_from_a_shell(capsys, gradcam, "--images", folder, "--out", out)
    assert status == 0
    assert [line.split("'")[1] for line in err] == [str(folder / name) for name in bad]
    assert all(line.startswith("warning: skipped: ") for line in err)
    summary = stdout.splitlines()[-1]
    assert summary.startswith("3 images, 5 skipped: cut.jpg (cannot read image ")
    where = [summary.find(f"{name} (") for name in bad]
    assert -1 not in where and where == sorted(where)
    expected = [
        f"{stem}{end}" for stem in good for end in ("_gradcam.npy", "_gradcam.png", "_guided_gradcam.npy")
    ]
    assert files(out) == sorted([*expected, "gradcam_overview.png"])
    for stem in good:
        maps = np.load(out / f"{stem}_gradcam.npy")
        assert maps.shape == (2, 64, 64) and maps.min() >= 0 and maps.max() <= 1
        with Image.open(out / f"{stem}_gradcam.png") as figure:
            figure.load()  # a whole PNG: it decodes to the end


def test_the_closing_line_says_1_image_not_1_images(tmp_path, capsys):
    image = cli.SAMPLES_DIR / GOOD[0]
    status, stdout, _ = run_as_from_a_shell(capsys, gradcam, "--images", image, "--out", tmp_path / "out")
    assert status == 0
    assert " for 1 image and " in stdout and "1 images" not in stdout


def test_pointing_game_flag_prints_the_library_table_after_each_methods_progress():
    status, stdout, _, _ = run_script("--pointing-game", "2", "--batch-size", "2")
    assert status == 0
    assert stdout.startswith("pointing game on 2 two-object images (lib.dataflow.shapes seed 11)\n")
    assert stdout.endswith(pointing.pointing_table(pointing.pointing_scores(2, batch_size=2)) + "\n")
    done = [line for line in stdout.splitlines() if line.endswith(" done")]
    assert done[0] == "  shapes_vgg Grad-CAM conv4_2 done" and len(done) == 5 * len(bundled.names())


@pytest.mark.slow
def test_full_size_vgg19_with_random_weights_runs_and_warns(tmp_path):
    images = image_folder(tmp_path / "images", names=GOOD[:1])
    status, _, _, caught = run_script("--model", "vgg19", "--images", images, "--out", tmp_path / "out")
    assert status == 0
    assert any("random weights" in message for message in caught)
    assert np.load(tmp_path / "out" / "04_ring_gradcam.npy").shape == (2, 224, 224)
    assert np.load(tmp_path / "out" / "04_ring_guided_gradcam.npy").shape == (2, 224, 224, 3)
    assert_real_picture(tmp_path / "out" / "04_ring_gradcam.png")
