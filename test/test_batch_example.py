"""example/explain_dataset.py: shards and a manifest from the shell, resume, one-line errors with status 2."""

import numpy as np
import pytest
from example_support import image_folder, load_example, run_script

import lib.batch
from lib import cli
from lib.dataflow.images import load_images
from lib.methods import catalog
from lib.nets import bundled

SCRIPT = load_example("explain_dataset")
NAMES = ["00_arrow.png", "03_disk.png", "08_disk_triangle.png"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("images"), NAMES, bad=["broken.png"])


def test_the_script_writes_shards_equal_to_the_methods_and_says_where(folder, tmp_path):
    argv = [
        "--images",
        folder,
        "--out",
        tmp_path,
        "--method",
        "grad_cam,cam",
        "--top-k",
        "2",
        "--dtype",
        "float32",
    ]
    status, out, err, _ = run_script(SCRIPT, *argv, "--shard-size", "2", "--quiet")
    assert status == 0, err
    assert "3 images explained (1 skipped in the job)" in out and "2 shard(s) written" in out
    assert f"shards: {tmp_path}/shard-*.parquet (2); manifest: {tmp_path}/manifest.json" in out
    results = lib.batch.read(tmp_path)
    images = load_images([folder / name for name in NAMES], size=64).images
    model = bundled.load("shapes_vgg")
    for name in ("grad_cam", "cam"):
        method, targets = catalog.build(name, model, "conv4_2"), cli.class_targets(None, 2)
        # the job's batches: one per shard of 2 files (broken.png is the second shard's other file)
        want = np.concatenate(
            [method.explain(images[:2], targets).maps, method.explain(images[2:], targets).maps]
        )
        assert np.array_equal(results.maps[name], want), name
    assert results.manifest["skipped"][0]["path"].endswith("broken.png")

    status, out, err, _ = run_script(SCRIPT, *argv, "--shard-size", "2", "--quiet")
    assert status == 0 and "0 shard(s) written, 2 were there already" in out


def test_class_names_and_a_csv_of_class_ids(folder, tmp_path):
    status, _, err, _ = run_script(
        SCRIPT, "--images", folder, "--out", tmp_path / "a", "--class-id", "disk", "--quiet"
    )
    assert status == 0, err
    assert np.all(lib.batch.read(tmp_path / "a").class_ids == 3)
    csv = tmp_path / "ids.csv"
    csv.write_text(
        "path,class_id\n" + "".join(f"{name},{i}\n" for i, name in enumerate([*NAMES, "broken.png"]))
    )
    status, _, err, _ = run_script(
        SCRIPT, "--images", folder, "--out", tmp_path / "b", "--class-id", csv, "--quiet"
    )
    assert status == 0, err
    assert lib.batch.read(tmp_path / "b").class_ids[:, 0].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "nope"], "error: no method 'nope'; pick one of"),
        (["--images", "/no/where"], "error: path '/no/where' does not exist"),
        (["--model", "nothing.keras"], "error: model file 'nothing.keras' does not exist"),
        (["--class-id", "dragon"], "error: --class-id 'dragon' is neither an id nor a class name"),
    ],
)
def test_bad_input_exits_2_with_one_line(folder, tmp_path, argv, message):
    status, out, err, _ = run_script(SCRIPT, "--images", folder, "--out", tmp_path, "--quiet", *argv)
    assert status == 2 and err.strip().startswith(message) and len(err.strip().splitlines()) == 1, err


def test_another_job_in_the_same_folder_is_refused(folder, tmp_path):
    assert run_script(SCRIPT, "--images", folder, "--out", tmp_path, "--quiet")[0] == 0
    status, _, err, _ = run_script(
        SCRIPT, "--images", folder, "--out", tmp_path, "--quiet", "--method", "cam"
    )
    assert status == 2 and "holds a run of another job (methods:" in err
