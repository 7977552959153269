"""lib/cli.py: the script helpers shared by the examples (class ids, predictions, names, summaries)."""

import re

import numpy as np
import pytest

from lib import cli
from lib.errors import InputError
from lib.methods import Explanation, TopK

NAMES = ("disk", "ring", "star", "cross")


def test_parse_class_id_takes_ids_and_names_in_order():
    assert cli.parse_class_id(None, NAMES) is None
    assert cli.parse_class_id(["3", "disk", "+1", "ring"], NAMES) == [3, 0, 1, 1]


@pytest.mark.parametrize(
    "values, message",
    [
        (["4"], r"^class id 4 is outside 0..3; pass ids of the model's classes$"),
        (["0", "-1"], r"^class id -1 is outside 0..3"),
        (["unicorn"], r"^--class-id 'unicorn' is neither an id nor a class name; e.g. 'disk'$"),
        (["Disk"], r"'Disk' is neither"),  # names are exact
        (["--1"], r"'--1' is neither"),
        (["1.5"], r"'1.5' is neither"),
    ],
)
def test_parse_class_id_refuses_with_one_line(values, message):
    with pytest.raises(InputError, match=message):
        cli.parse_class_id(values, NAMES)


def test_softmax_is_stable_and_sums_to_one():
    logits = np.array([[1000.0, 1000.0, -1000.0], [0.0, np.log(3.0), 0.0]], np.float32)
    probabilities = cli.softmax(logits)
    assert probabilities.dtype == np.float64 and np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities, [[0.5, 0.5, 0.0], [0.2, 0.6, 0.2]], atol=1e-7)


def test_top_and_chosen_classes():
    scores = np.array([[0.1, 0.5, 0.5, 0.2], [0.9, 0.0, 0.3, 0.3]])
    np.testing.assert_array_equal(cli.top_classes(scores, 3), [[1, 2, 3], [0, 2, 3]])  # ties: lower id
    assert cli.class_targets(None, 2) == TopK(2)
    assert cli.class_targets((3, 0), 2) == [3, 0]


def test_top_labels_and_score_title():
    def model(images, training):
        assert training is False
        return np.log(np.array([[0.1, 0.6, 0.3, 1e-9], [0.25, 0.25, 0.25, 0.25]]))

    assert cli.top_labels(model, None, NAMES, k=2) == ["ring 0.6, star 0.3", "disk 0.25, ring 0.25"]
    assert cli.top_labels(model, None, NAMES) == ["ring 0.6", "disk 0.25"]
    result = Explanation(
        maps=np.zeros((1, 2, 4, 4)), class_ids=np.array([[2, 0]]), scores=np.array([[-1.24, 3.0]]),
        probabilities=np.array([[0.304, 0.1]]),
    )  # fmt: skip
    assert cli.score_titles(NAMES, result, 0) == ["star  p=0.30, logit -1.2", "disk  p=0.10, logit 3.0"]
    assert cli.class_labels(NAMES, result, 0) == ["star 0.30", "disk 0.10"]


def test_unique_stems_number_repeats_from_the_second():
    paths = ["a/cat.png", "b/cat.jpg", "dog.png", "c/cat.png"]
    assert cli.unique_stems(paths) == ["cat", "cat_2", "dog", "cat_3"]


def test_image_run_summary_singular_and_plural():
    run = cli.ImageRun([], size=8, batch_size=2)
    run.done, run.skipped = 1, [("x/bad.jpg", "cannot read image")]
    assert run.summary() == "1 image, 1 skipped: bad.jpg (cannot read image)"
    run.done, run.skipped = 2, []
    assert run.summary() == "2 images, 0 skipped"


@pytest.mark.parametrize("fault", ["cannot-create", "cannot-write"])
def test_an_output_folder_that_cannot_be_created_or_written(tmp_path, monkeypatch, fault):
    if fault == "cannot-create":
        (tmp_path / "file").write_text("x")  # a regular file as parent: chmod would not stop root
        out, reason = tmp_path / "file" / "out", "Not a directory"
    else:

        def denied(*args, **kwargs):  # what a read-only folder does to anyone but root
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(cli.tempfile, "NamedTemporaryFile", denied)
        out, reason = tmp_path / "out", "Permission denied"
    with pytest.raises(
        InputError, match=rf"^cannot write to output folder '{re.escape(str(out))}' \({reason}\); pass"
    ):
        cli.prepare_output(out)
