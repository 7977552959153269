"""example/cam.py: predict figures and .mat on the bundled model, train then predict, bad input."""

import importlib.util
import shutil
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import scipy.io
from example_support import files, run_as_from_a_shell

from lib.cli import SAMPLES_DIR
from lib.dataflow.images import list_images, load_images
from lib.dataflow.shapes import write_image_folder
from lib.methods.cam import CAM
from lib.nets import bundled

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("example_cam", ROOT / "example" / "cam.py")
cam = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cam)

PAIR = SAMPLES_DIR / "09_disk_ring.png"


def run(*argv):
    return cam.cli.run(cam.main, cam.parse_args([str(a) for a in argv]))


def check_png(path, min_side=150, max_side=2500):
    image = iio.imread(path)
    assert image.ndim == 3 and min_side <= min(image.shape[:2]) and max(image.shape[:2]) <= max_side
    assert image[..., :3].std() > 10  # a real picture, not a blank canvas
    return image


def test_the_default_run_writes_a_figure_per_image_an_overview_and_the_maps(tmp_path):
    assert run("--out", tmp_path) == 0
    paths = list_images(SAMPLES_DIR)
    stems = [Path(p).stem for p in paths]
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {f"{stem}_cam.png" for stem in stems} | {"cam.mat", "cam_overview.png"}
    check_png(tmp_path / "09_disk_ring_cam.png")
    overview = check_png(tmp_path / "cam_overview.png")
    assert overview.shape[1] > 2 * overview.shape[0]  # one column per image
    mat = scipy.io.loadmat(tmp_path / "cam.mat")
    assert mat["maps"].shape == (12, 3, 64, 64) and mat["class_ids"].shape == (12, 3)
    assert [str(entry[0]) for entry in mat["files"].ravel()] == stems
    model, images = bundled.load("shapes_vgg"), load_images(paths, size=64).images
    np.testing.assert_allclose(mat["maps"], CAM(model)(images, mat["class_ids"].tolist()), atol=1e-5)
    logits = model.predict(images, verbose=0)
    np.testing.assert_array_equal(mat["class_ids"], np.argsort(-logits, axis=1)[:, :3])
    assert np.all(np.diff(mat["scores"], axis=1) <= 0) and np.all(mat["scores"] <= 1)


def test_chosen_classes_by_name_or_id(tmp_path):
    assert run("--out", tmp_path, "--images", PAIR, "--class-id", "disk", "4") == 0
    mat = scipy.io.loadmat(tmp_path / "cam.mat")
    assert mat["class_ids"].tolist() == [[3, 4]]
    assert {p.name for p in tmp_path.iterdir()} == {"09_disk_ring_cam.png", "cam.mat", "cam_overview.png"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short --train run on a small written folder; returns its output folder and arguments."""
    out = tmp_path_factory.mktemp("cam_train")
    write_image_folder(out / "data", 64, seed=0)
    argv = ["--train", "--data", out / "data", "--out", out, "--epochs", "2", "--train-batch-size", "16"]
    argv += ["--maps-every", "2", "--image", PAIR, "--class-id", "disk", "ring"]
    assert run(*argv) == 0
    return out, argv


def test_train_writes_the_evolution_figure_the_maps_and_a_checkpoint(trained):
    out, _ = trained
    assert {p.name for p in out.iterdir()} == {"data", "checkpoint", "cam_training.png", "cam_training.mat"}
    check_png(out / "cam_training.png")
    mat = scipy.io.loadmat(out / "cam_training.mat")
    steps = mat["steps"].ravel().tolist()
    assert steps == [0, 2, 4, 6, 8]  # 51 training images (13 held out): 4 steps of 16 per epoch
    assert mat["maps"].shape == (len(steps), 2, 64, 64) and mat["class_ids"].ravel().tolist() == [3, 4]


def test_a_rerun_resumes_and_draws_the_same_figure(trained):
    out, argv = trained
    before = (out / "cam_training.png").read_bytes()
    assert run(*argv) == 0
    assert (out / "cam_training.png").read_bytes() == before


def test_a_rerun_with_another_image_is_refused_and_names_the_flags(trained, capsys):
    out, argv = trained
    before = (out / "cam_training.png").read_bytes()
    other = [SAMPLES_DIR / "08_disk_triangle.png" if a == PAIR else a for a in argv]
    capsys.readouterr()
    status = run(*other)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "records the maps of another inference image" in err[0]
    assert "another --out" in err[0] and "--fresh" in err[0] and "resume=False" not in err[0]
    assert (out / "cam_training.png").read_bytes() == before


def test_predict_with_the_trained_checkpoint(trained, tmp_path):
    out, _ = trained
    assert run("--predict", "--checkpoint", out / "checkpoint", "--images", PAIR, "--out", tmp_path) == 0
    mat = scipy.io.loadmat(tmp_path / "cam.mat")
    info = cam.read_checkpoint(out / "checkpoint")
    subject = cam.subject_of(cam.parse_args([]), out / "checkpoint")
    image = load_images([PAIR], size=64).images
    assert subject.class_names == tuple(info["class_names"])
    np.testing.assert_allclose(mat["maps"], CAM(subject.model)(image, mat["class_ids"].tolist()), atol=1e-5)
    check_png(tmp_path / "09_disk_ring_cam.png")


def one_line_error(capsys, status, phrase):
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("error:") and phrase in err[0], err


def test_bad_input_exits_2_with_one_line_and_no_files(tmp_path, capsys):
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        one_line_error(capsys, run("--train", "--data", tmp_path / "empty", "--out", out), "no images")
    assert not caught  # a warning would be a second stderr line
    one_line_error(capsys, run("--checkpoint", tmp_path / "none", "--out", out), "no checkpoint")
    one_line_error(capsys, run("--class-id", "unicorn", "--out", out), "'unicorn'")
    one_line_error(capsys, run("--class-id", "8", "--out", out), "class id 8 is outside 0..7")
    (tmp_path / "one" / "disk").mkdir(parents=True)
    shutil.copy(PAIR, tmp_path / "one" / "disk")
    data = ["--train", "--data", tmp_path / "one", "--out", out]  # one class: only id 0 exists
    one_line_error(capsys, run(*data, "--image", tmp_path / "missing.png"), "does not exist")
    one_line_error(capsys, run(*data, "--class-id", "1"), "class id 1 is outside 0..0")
    one_line_error(capsys, run("--images", tmp_path / "empty", "--out", out), "no images")
    assert list(out.iterdir()) == []


def test_a_top_k_above_the_number_of_classes_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    status, stdout, err = run_as_from_a_shell(capsys, cam, "--top-k", "99", "--out", out)
    assert (status, stdout) == (2, "")
    assert err == ["error: --top-k 99 exceeds the model's 8 classes; pass at most 8"]
    assert files(out) == []


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:class folder")  # 6 images leave some classes empty
@pytest.mark.filterwarnings("ignore:vgg19 has random weights")
def test_full_size_vgg19_trains_a_cam_head_and_predicts_from_it(tmp_path, capsys):
    write_image_folder(tmp_path / "data", 6, seed=0)
    argv = ["--train", "--model", "vgg19", "--data", tmp_path / "data", "--out", tmp_path, "--epochs", "1"]
    argv += ["--train-batch-size", "4", "--conv-width", "32", "--image", PAIR]
    with pytest.warns(UserWarning, match="random weights"):
        assert run(*argv) == 0
    mat = scipy.io.loadmat(tmp_path / "cam_training.mat")
    assert mat["maps"].shape[2:] == (224, 224)
    out = tmp_path / "predict"
    assert run("--predict", "--checkpoint", tmp_path / "checkpoint", "--images", PAIR, "--out", out) == 0
    assert scipy.io.loadmat(out / "cam.mat")["maps"].shape == (1, 3, 224, 224)
    one_line_error(capsys, run("--model", "vgg19", "--images", PAIR, "--out", tmp_path / "x"), "--train")
