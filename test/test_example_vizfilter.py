"""example/vizfilter.py: filter and feature-map figures, determinism, bad input."""

from pathlib import Path

import numpy as np
import pytest
from example_support import assert_picture as assert_any_picture
from example_support import load_example

from lib import cli
from lib.methods.filters import filter_tiles, layer_filters
from lib.nets import bundled

ROOT = Path(__file__).resolve().parents[1]
vizfilter = load_example("vizfilter")


def assert_picture(path, min_side=300, max_side=2500):
    assert_any_picture(path, min_side, max_side)


def run(argv, out):
    return cli.run(vizfilter.main, vizfilter.parse_args([*argv, "--out", str(out)]))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vizfilter")
    assert run([], out) == 0
    return out


def test_default_run_draws_the_first_filters_and_three_layers_of_one_image(default_run):
    layers = ("conv2_3x3", "inception_3a_output", "inception_3b_output")
    expected = {"filters_conv1_7x7_s2.png"} | {f"10_disk_cross_{layer}_maps.png" for layer in layers}
    assert {p.name for p in default_run.iterdir()} == expected
    for name in expected:
        assert_picture(default_run / name)


def test_default_run_is_deterministic(default_run, tmp_path):
    assert run([], tmp_path) == 0
    for path in default_run.iterdir():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_filter_tiles_are_the_kernel_in_rgb_order():
    model = bundled.load("shapes_googlenet")
    weights = layer_filters(model, "conv1_7x7_s2")  # (32, 7, 7, 3), channels B, G, R
    tiles = filter_tiles(weights, input_order="bgr")
    assert tiles.shape == (32, 7, 7, 3)
    # the red tile channel follows the kernel's last (R) input channel
    assert np.corrcoef(tiles[0, ..., 0].ravel(), weights[0, ..., 2].ravel())[0, 1] > 0.999


def test_a_folder_gives_figures_per_image_and_skips_a_bad_file(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "star.png").write_bytes((cli.SAMPLES_DIR / "06_star.png").read_bytes())
    (folder / "ring.png").write_bytes((cli.SAMPLES_DIR / "04_ring.png").read_bytes())
    (folder / "notes.jpg").write_text("not an image")
    out = tmp_path / "out"
    argv = [
        "--images",
        str(folder),
        "--layer",
        "inception_3a_output",
        "--select",
        "random",
        "--num-maps",
        "16",
    ]
    assert run(argv, out) == 0
    assert "2 images, 1 skipped: notes.jpg" in capsys.readouterr().out
    expected = {
        "filters_conv1_7x7_s2.png",
        "ring_inception_3a_output_maps.png",
        "star_inception_3a_output_maps.png",
    }
    assert {p.name for p in out.iterdir()} == expected
    assert_picture(out / "star_inception_3a_output_maps.png", min_side=250)


def test_select_all_draws_every_channel_of_a_vgg_layer(tmp_path):
    assert run(["--model", "shapes_vgg", "--layer", "conv4_2", "--select", "all"], tmp_path) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"filters_conv1_1.png", "10_disk_cross_conv4_2_maps.png"}
    assert_picture(tmp_path / "10_disk_cross_conv4_2_maps.png", min_side=600)  # 128 tiles


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (["--layer", "inception_3a_output", "inception_9z_output"], "inception_9z_output"),
        (["--layer", "loss3_classifier"], "loss3_classifier"),
        (["--num-maps", "0"], "--num-maps 0"),
        (["--images", "/no/such/image.png"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, argv, phrase):
    out = tmp_path / "out"
    assert run(argv, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and phrase in err and "\n" not in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("model, first", [("googlenet", "conv1_7x7_s2"), ("vgg19", "conv1_1")])
def test_full_size_models_with_random_weights(tmp_path, model, first):
    with pytest.warns(UserWarning, match="random weights"):
        assert run(["--model", model, "--num-maps", "16"], tmp_path) == 0
    layers = vizfilter.DEFAULT_LAYERS[model]
    expected = {f"filters_{first}.png"} | {f"10_disk_cross_{layer}_maps.png" for layer in layers}
    assert {p.name for p in tmp_path.iterdir()} == expected
    assert_picture(tmp_path / f"filters_{first}.png")
    assert_picture(tmp_path / f"10_disk_cross_{layers[-1]}_maps.png", min_side=250)
