"""example/deconv.py: top-k figures and table agree with the library, per-image mode, bad input."""

import csv
import re
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from example_support import assert_picture, files, load_example, run_as_from_a_shell

from lib import cli
from lib.dataflow.images import load_images
from lib.dataflow.shapes import generate
from lib.methods.deconvnet import Deconvnet
from lib.nets import bundled

ROOT = Path(__file__).resolve().parents[1]
deconv = load_example("deconv")


def run(argv, out):
    return cli.run(deconv.main, deconv.parse_args([*argv, "--out", str(out)]))


def read_table(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("deconv")
    assert run(["--generate", "24"], out) == 0
    return out


def test_default_run_writes_both_grids_the_combined_figure_and_a_table(default_run):
    names = {
        f"{layer}_{kind}" for layer in ("conv3_2", "conv4_2") for kind in ("feat.png", "im.png", "top9.png")
    }
    names |= {"conv3_2_top9.csv", "conv4_2_top9.csv"}
    assert {p.name for p in default_run.iterdir()} == names
    for name in names - {"conv3_2_top9.csv", "conv4_2_top9.csv"}:
        assert_picture(default_run / name)
    combined, grid = (
        iio.imread(default_run / "conv3_2_top9.png"),
        iio.imread(default_run / "conv3_2_feat.png"),
    )
    assert combined.shape[1] > 2 * grid.shape[1]  # three tiles per activation, side by side


def test_table_is_the_library_top_activations_over_samples_then_generated_images(default_run):
    samples = load_images(cli.SAMPLES_DIR, size=bundled.INPUT_SIZE)
    generated, _, _ = generate(24, seed=deconv.GENERATED_SEED, size=bundled.INPUT_SIZE)
    images = np.concatenate([samples.images, generated.astype(np.float32)])
    names = [Path(p).stem for p in samples.paths] + [f"gen_{i:04d}" for i in range(24)]
    top = Deconvnet(bundled.load("shapes_vgg"), "conv4_2").top_activations(images, k=9)
    rows = read_table(default_run / "conv4_2_top9.csv")
    assert [int(r["channel"]) for r in rows] == top.channels.tolist()
    np.testing.assert_allclose([float(r["value"]) for r in rows], top.values, rtol=1e-4)
    assert [r["image"].split(" ")[0] for r in rows] == [names[i] for i in top.image_index]
    boxes = [[int(r[key]) for key in ("top", "left", "bottom", "right")] for r in rows]
    assert boxes == top.boxes.tolist()
    assert top.values[0] >= top.values[-1] > 0
    for r in rows:  # object shares exist exactly for generated sources, and are fractions
        if r["image"].startswith("gen_"):
            assert 0 <= float(r["energy_on_object"]) <= 1 and 0 < float(r["object_area"]) <= 1
        else:
            assert r["energy_on_object"] == r["object_area"] == ""


def test_one_channel_with_id_names_files_like_the_original(tmp_path):
    assert run(["--layer", "conv3_2", "--id", "5", "--k", "4", "--generate", "8"], tmp_path) == 0
    expected = {"conv3_2_feat_5.png", "conv3_2_im_5.png", "conv3_2_top4_5.png", "conv3_2_top4_5.csv"}
    assert {p.name for p in tmp_path.iterdir()} == expected
    rows = read_table(tmp_path / "conv3_2_top4_5.csv")
    assert len(rows) == 4 and {r["channel"] for r in rows} == {"5"}
    assert_picture(tmp_path / "conv3_2_top4_5.png", min_side=100)


def test_per_image_mode_draws_each_image_with_its_strongest_channels(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("03_disk.png", "10_disk_cross.png"):
        (folder / name).write_bytes((cli.SAMPLES_DIR / name).read_bytes())
    out = tmp_path / "out"
    assert run(["--per-image", "--images", str(folder), "--feat", "conv4_2", "--k", "4"], out) == 0
    assert {p.name for p in out.iterdir()} == {
        "03_disk_conv4_2_deconv.png",
        "10_disk_cross_conv4_2_deconv.png",
    }
    for path in out.iterdir():
        assert_picture(path)


def test_a_bad_image_in_the_folder_is_skipped_and_named(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "good.png").write_bytes((cli.SAMPLES_DIR / "06_star.png").read_bytes())
    (folder / "broken.jpg").write_text("not an image")
    out = tmp_path / "out"
    assert run(["--images", str(folder), "--layer", "conv3_2", "--k", "3"], out) == 0
    assert "1 image, 1 skipped: broken.jpg" in capsys.readouterr().out
    assert len(read_table(out / "conv3_2_top3.csv")) == 3


def test_a_bad_image_is_warned_about_once_whatever_the_number_of_layers(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(cli.SAMPLES_DIR / "04_ring.png", folder / "04_ring.png")
    (folder / "notes.jpg").write_text("not an image")
    argv = ["--images", folder, "--out", tmp_path / "out", "--generate", "0", "--k", "1"]
    status, _, err = run_as_from_a_shell(capsys, deconv, *argv, "--layer", "conv3_2", "conv4_2")
    assert status == 0
    bad = [line for line in err if "notes.jpg" in line]
    assert len(bad) == 1 and bad[0].startswith("warning: skipped: cannot read image")


def test_a_channel_the_layer_does_not_have_is_refused_before_the_search(tmp_path, capsys):
    out = tmp_path / "out"
    status, stdout, err = run_as_from_a_shell(
        capsys, deconv, "--id", "999", "--layer", "conv3_2", "--out", out
    )
    assert (status, stdout) == (2, "")
    assert len(err) == 1
    assert re.fullmatch(
        r"error: --id 999 is not a channel of layer 'conv3_2', which has channels 0\.\.\d+", err[0]
    )
    assert files(out) == []


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (["--layer", "conv3_2", "conv9_9"], "conv9_9"),
        # conv4_2 has 128 channels and is searched first; conv3_2 has 64: nothing may be written
        (["--layer", "conv4_2", "conv3_2", "--id", "100"], "--id 100 is not a channel of layer 'conv3_2'"),
        (["--k", "0"], "--k 0"),
        (["--images", "/no/such/folder"], "does not exist"),
        (["--generate", "-1"], "--generate"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, argv, phrase):
    out = tmp_path / "out"
    assert run([*argv, "--generate", "4"] if "--generate" not in argv else argv, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and phrase in err and "\n" not in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_full_size_vgg19_with_random_weights(tmp_path):
    args = ["--model", "vgg19", "--images", str(cli.SAMPLES_DIR / "10_disk_cross.png"), "--layer", "conv4_4"]
    with pytest.warns(UserWarning, match="random weights"):
        assert run([*args, "--k", "4"], tmp_path) == 0
    assert_picture(tmp_path / "conv4_4_top4.png", min_side=100)
    rows = read_table(tmp_path / "conv4_4_top4.csv")
    assert len(rows) == 4 and {r["image"] for r in rows} == {"10_disk_cross"}  # no generated images added
