"""example/feature_viz.py: channel, class and inversion figures on SqueezeNet, and bad input refused
before any work."""

import pytest
from example_support import assert_picture, files, load_example, run_as_from_a_shell

feature_viz = load_example("feature_viz")
FAST = ["--channels", "3", "--steps", "12", "--invert-steps", "12", "--class-id", "goldfish", "espresso"]


@pytest.mark.slow
def test_a_short_run_draws_every_figure(tmp_path, capsys):
    out = tmp_path / "figures"
    status, stdout, _ = run_as_from_a_shell(
        capsys, feature_viz, "--layer", "conv1", "fire3_concat", "--invert", "chelsea", "--out", out, *FAST
    )
    assert status == 0
    expected = ["channels_conv1.png", "channels_fire3_concat.png", "classes.png", "inversion.png"]
    assert files(out) == expected
    for name in expected:
        assert_picture(out / name, min_colors=500)
    assert f"figures in {out}" in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--layer", "conv1", "fire99"], "no layer 'fire99'"),
        (["--invert-layer", "nope"], "no layer 'nope'"),
        (["--class-id", "not a class"], "--class-id 'not a class' is neither an id nor a class name"),
        (["--invert", "missing.png"], "missing.png"),
    ],
)
def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, capsys, argv, message):
    out = tmp_path / "figures"
    status, _, errors = run_as_from_a_shell(capsys, feature_viz, "--out", out, *FAST, *argv)
    assert status == 2
    error_lines = [line for line in errors if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0], errors
    assert files(out) == []
