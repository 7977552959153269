"""The Beam runner: the DirectRunner with 2 worker processes writes the local runner's shards, resumes,
takes a keras.Model (saved for its workers) and passes pipeline options through."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

import lib.batch
from lib.batch import beam, shards
from lib.dataflow.shapes import write_image_folder
from lib.errors import InputError
from lib.methods import GradCAM
from lib.nets import bundled

OPTIONS = dict(shard_size=10, batch_size=4, dtype="uint8", top_k=2)
METHODS = "grad_cam,guided_grad_cam,occlusion"  # a class map, an input-space map, a score map


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    write_image_folder(root, 29, seed=7)
    (root / "disk" / "broken.png").write_text("not a png")
    return root


@pytest.fixture(scope="module")
def local_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    lib.batch.run(folder, "shapes_vgg", METHODS, out, **OPTIONS)
    return out


def assert_same_shards(out, reference):
    names = sorted(p.name for p in reference.glob("shard-*.parquet"))
    assert names == sorted(p.name for p in out.glob("shard-*.parquet")) and len(names) == 3
    for name in names:
        got, want = pq.read_table(out / name), pq.read_table(reference / name)
        assert got.equals(want) and got.schema.metadata == want.schema.metadata, name
    got, want = (json.loads((folder / "manifest.json").read_text()) for folder in (out, reference))
    assert got == want


@pytest.mark.slow
def test_direct_runner_with_two_workers_writes_the_local_runners_shards(folder, local_run, tmp_path):
    summary = lib.batch.run(folder, "shapes_vgg", METHODS, tmp_path, runner="beam", workers=2, **OPTIONS)
    assert summary.explained == 29 and summary.skipped == 1 and summary.written == 3
    assert_same_shards(tmp_path, local_run)
    results, reference = lib.batch.read(tmp_path), lib.batch.read(local_run)
    for name in METHODS.split(","):
        assert np.array_equal(results.maps[name], reference.maps[name]), name


def test_beam_resumes_only_the_missing_shard_and_takes_a_keras_model(folder, local_run, tmp_path):
    model = bundled.load("shapes_vgg")
    lib.batch.run(folder, model, METHODS, tmp_path, runner="beam", **OPTIONS)
    assert (tmp_path / "model.keras").is_file()  # what its workers load
    (tmp_path / shards.name(1, 3)).unlink()
    summary = lib.batch.run(folder, model, METHODS, tmp_path, runner="beam", **OPTIONS)
    assert summary.written == 1 and summary.explained == 9  # shard 1 holds the unreadable file
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    reference = json.loads((local_run / "manifest.json").read_text())
    assert manifest.pop("model") == "shapes_vgg" == reference.pop("model")  # the model's own name
    assert manifest == reference
    for name in ("shard-00000-of-00003.parquet", "shard-00001-of-00003.parquet"):
        assert pq.read_table(tmp_path / name).equals(pq.read_table(local_run / name)), name


def test_pipeline_options_pass_through_with_quiet_workers_by_default():
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    options = beam.pipeline_options(2, ["--runner=FlinkRunner", "--flink_master=localhost:8081"])
    assert options.view_as(StandardOptions).runner == "FlinkRunner"
    assert options.get_all_options()["flink_master"] == "localhost:8081"
    assert options.get_all_options()["default_sdk_harness_log_level"] == "ERROR"
    direct = options.view_as(DirectOptions)
    assert direct.direct_num_workers == 2 and direct.direct_running_mode == "multi_processing"
    chatty = beam.pipeline_options(1, ["--default_sdk_harness_log_level=INFO"]).get_all_options()
    assert chatty["default_sdk_harness_log_level"] == "INFO" and chatty["direct_running_mode"] == "in_memory"


def test_method_objects_and_devices_are_refused_on_beam(folder, tmp_path):
    model = bundled.load("shapes_vgg")
    with pytest.raises(InputError, match="pass method names, not objects"):
        lib.batch.run(folder, model, [GradCAM(model, "conv4_2")], tmp_path, runner="beam")
    with pytest.raises(InputError, match="devices= is for the local runner"):
        lib.batch.run(folder, model, "cam", tmp_path, runner="beam", devices=2)
