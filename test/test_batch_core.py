"""lib.batch on the local runner: shards equal the methods called directly, quantisation within its step,
skipped images in the manifest, the other sources, one-line errors, refusal of another job in a folder."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

import lib.batch
from lib.batch import shards
from lib.dataflow.images import list_images, load_images
from lib.dataflow.shapes import write_image_folder
from lib.errors import InputError
from lib.methods import catalog
from lib.methods.targets import TopK
from lib.nets import bundled

BATCH, SHARD = 8, 16
CORRUPT = "00003b.png"  # in the first shard


@pytest.fixture(scope="module")
def model():
    return bundled.load("shapes_vgg")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """36 generated images and one corrupt file among them, in the first shard."""
    root = tmp_path_factory.mktemp("images")
    write_image_folder(root, 36, seed=3)
    (root / "arrow" / CORRUPT).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def job_batches(folder, shard_size=SHARD, batch_size=BATCH):
    """Positions, among the readable images, of each batch the local runner explains.

    It cuts the files into shards, each shard into batches of `batch_size` files, and drops the unreadable
    ones from their batch. The reference must use the same batches: on some CPUs (seen on an AMD EPYC
    with AVX2) a convolution's result for an image changes in its last bit with its place in the batch.
    """
    files = list_images(folder)
    batches, position = [], 0
    for shard in range(0, len(files), shard_size):
        stop = min(shard + shard_size, len(files))
        for start in range(shard, stop, batch_size):
            good = sum(not path.endswith(CORRUPT) for path in files[start : min(start + batch_size, stop)])
            batches.append(slice(position, position + good))
            position += good
    return batches


def direct(model, name, images, targets, batches, layer="conv4_2"):
    """The method called directly on `images`, batch by batch (slices of `job_batches`)."""
    method = catalog.build(name, model, layer)
    parts = [method.explain(images[batch], targets) for batch in batches]
    return {key: np.concatenate([getattr(p, key) for p in parts]) for key in ("maps", "class_ids", "scores")}


@pytest.fixture(scope="module")
def float32_run(model, folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "job"
    summary = lib.batch.run(
        folder, model, "grad_cam,guided_grad_cam,saliency", out, batch_size=BATCH, shard_size=SHARD,
        dtype="float32", top_k=2,
    )  # fmt: skip
    return summary, lib.batch.read(out)


def readable(folder):
    loaded = load_images([p for p in list_images(folder) if not p.endswith(CORRUPT)], size=64)
    return loaded.paths, loaded.images


def test_float32_maps_are_bit_equal_to_the_methods_called_directly(model, folder, float32_run):
    summary, results = float32_run
    paths, images = readable(folder)
    assert results.paths == paths and summary.explained == len(paths) == 36
    batches = job_batches(folder)
    assert [b.stop - b.start for b in batches[:2]] == [7, 8]  # the corrupt file's batch is one short
    wants = {name: direct(model, name, images, TopK(2), batches) for name in results.maps}
    for name, want in wants.items():
        assert np.array_equal(results.maps[name], want["maps"]), name
        assert np.array_equal(results.class_ids, want["class_ids"]), name
    probabilities = tf.nn.softmax(model(images)).numpy()
    rows = np.arange(len(images))[:, None]
    np.testing.assert_allclose(results.probabilities, probabilities[rows, results.class_ids], rtol=1e-5)
    assert np.array_equal(results.scores, wants["guided_grad_cam"]["scores"])  # the pass that ran first
    np.testing.assert_allclose(results.scores, model(images).numpy()[rows, results.class_ids], rtol=1e-5)


def test_several_methods_share_guided_grad_cam_pass_and_give_grad_cam_itself(float32_run):
    _, results = float32_run
    assert results.maps["grad_cam"].shape == (36, 2, 64, 64)
    assert results.maps["guided_grad_cam"].shape == (36, 2, 64, 64, 3)
    methods = {m["name"]: m for m in results.manifest["methods"]}
    assert methods["grad_cam"]["layer"] == methods["guided_grad_cam"]["layer"] == "conv4_2"


def test_corrupt_image_is_skipped_in_the_manifest_and_the_job_goes_on(folder, float32_run):
    summary, results = float32_run
    manifest = results.manifest
    assert manifest["counts"] == {"images": 37, "explained": 36, "skipped": 1, "shards": 3}
    (skipped,) = manifest["skipped"]
    assert skipped["path"].endswith(CORRUPT)
    assert skipped["index"] == list_images(folder).index(skipped["path"])
    assert "cannot read image" in skipped["reason"]
    assert summary.skipped == 1 and sum(s["images"] for s in manifest["shards"]) == 36
    with pytest.raises(InputError, match="was skipped"):
        lib.batch.read(summary.out, CORRUPT)


def test_manifest_names_model_weights_methods_and_versions(model, float32_run):
    _, results = float32_run
    manifest = results.manifest
    assert manifest["model"] == "shapes_vgg" and len(manifest["weights_sha256"]) == 64
    assert [m["name"] for m in manifest["methods"]] == ["grad_cam", "guided_grad_cam", "saliency"]
    assert {"tensorflow", "keras", "numpy", "pyarrow", "lib"} <= set(manifest["versions"])
    assert manifest["classes"] == {"top_k": 2} and manifest["dtype"] == "float32"


def test_read_one_image_by_path_or_file_name(float32_run):
    summary, results = float32_run
    one = lib.batch.read(summary.out, results.paths[20])
    assert one.index == results.index[20] and np.array_equal(
        one.maps["saliency"], results.maps["saliency"][20]
    )
    by_name = lib.batch.read(summary.out, results.paths[20].rsplit("/", 1)[1])
    assert np.array_equal(by_name.class_ids, results.class_ids[20])
    with pytest.raises(InputError, match="has no image 'nope.png'"):
        lib.batch.read(summary.out, "nope.png")


def test_shards_are_parquet_that_analysis_tools_read(float32_run):
    summary, results = float32_run
    first = pq.read_table(summary.out / shards.name(0, 3))
    assert first.num_rows == SHARD - 1  # the corrupt image is one of the first shard's 16
    assert first.column_names[:5] == ["index", "path", "class_ids", "scores", "probabilities"]
    only_ids = pq.read_table(summary.out / shards.name(2, 3), columns=["path", "class_ids"])
    assert only_ids.column("path").to_pylist() == results.paths[-5:]


def test_float16_and_uint8_within_their_quantisation_step(model, folder, tmp_path):
    paths, images = readable(folder)
    batches = job_batches(folder)
    grad = direct(model, "grad_cam", images, None, batches)
    guided = direct(model, "guided_grad_cam", images, None, batches)
    for dtype in ("float16", "uint8"):
        out = tmp_path / dtype
        lib.batch.run(
            folder,
            model,
            ["grad_cam", "guided_grad_cam"],
            out,
            batch_size=BATCH,
            shard_size=SHARD,
            dtype=dtype,
        )
        results = lib.batch.read(out)
        if dtype == "float16":
            assert np.array_equal(
                results.maps["grad_cam"], grad["maps"].astype(np.float16).astype(np.float32)
            )
            continue
        assert np.abs(results.maps["grad_cam"] - grad["maps"]).max() <= 0.5 / 255 + 1e-7
        span = guided["maps"].max(axis=(2, 3, 4)) - guided["maps"].min(axis=(2, 3, 4))  # (N, K)
        error = np.abs(results.maps["guided_grad_cam"] - guided["maps"]).max(axis=(2, 3, 4))
        assert np.all(error <= 0.5 * span / 255 * (1 + 1e-5) + 1e-12)
        stored = pq.read_table(out / shards.name(0, 3), columns=["grad_cam"]).schema.field("grad_cam")
        assert stored.type.byte_width == 64 * 64  # one uint8 byte a pixel


def test_layer_size_maps_are_area_averages_of_the_image_size_ones(model, folder, tmp_path):
    _, images = readable(folder)
    lib.batch.run(
        folder,
        model,
        "grad_cam",
        tmp_path,
        batch_size=BATCH,
        shard_size=SHARD,
        map_size="layer",
        dtype="float32",
    )
    maps = lib.batch.read(tmp_path).maps["grad_cam"]  # (N, 1, 8, 8): conv4_2 of a 64x64 input
    full = direct(model, "grad_cam", images, None, job_batches(folder))
    want = tf.image.resize(full["maps"].reshape(-1, 64, 64, 1), (8, 8), method="area").numpy()
    assert maps.shape == (36, 1, 8, 8) and np.array_equal(maps.reshape(-1, 8, 8, 1), want)


def test_class_ids_fixed_or_from_a_csv_beside_the_paths(model, folder, tmp_path):
    paths, images = readable(folder)
    lib.batch.run(
        folder, model, "grad_cam", tmp_path / "fixed", class_ids=[3, 1], shard_size=SHARD, dtype="float32"
    )
    fixed = lib.batch.read(tmp_path / "fixed")
    assert np.all(fixed.class_ids == [3, 1])
    want = direct(model, "grad_cam", images, [3, 1], job_batches(folder, batch_size=32))
    assert np.array_equal(fixed.maps["grad_cam"], want["maps"])
    labels = {p: [i % 8] for i, p in enumerate(list_images(folder))}
    csv = tmp_path / "labels.csv"
    csv.write_text("path,class_id\n" + "".join(f"{p},{ids[0]}\n" for p, ids in labels.items()))
    lib.batch.run(
        folder, model, "grad_cam", tmp_path / "csv", class_ids=csv, shard_size=SHARD, dtype="float32"
    )
    from_csv = lib.batch.read(tmp_path / "csv")
    assert np.array_equal(from_csv.class_ids[:, 0], [labels[p][0] for p in paths])
    first = job_batches(folder, batch_size=32)[0]  # the first shard's 15 readable images
    per_image = np.array([labels[path] for path in paths[first]])
    want = catalog.build("grad_cam", model, "conv4_2").explain(images[first], per_image).maps
    assert np.array_equal(from_csv.maps["grad_cam"][first], want)


def test_glob_text_file_and_tfrecord_sources_give_the_folder_results(model, folder, tmp_path, float32_run):
    _, results = float32_run
    files = list_images(folder)
    (tmp_path / "list.txt").write_text("\n".join(files) + "\n")
    record = tmp_path / "images.tfrecord"
    with tf.io.TFRecordWriter(str(record)) as writer:
        for path in files:
            feature = {
                "image/encoded": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[Path(path).read_bytes()])
                ),
                "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[path.encode()])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    for name, images in (("glob", f"{folder}/*/*.png"), ("txt", tmp_path / "list.txt"), ("tfrecord", record)):
        out = tmp_path / name
        lib.batch.run(
            images, model, "saliency", out, batch_size=BATCH, shard_size=SHARD, dtype="float32", top_k=2
        )
        got = lib.batch.read(out)
        assert got.paths == results.paths, name
        assert np.array_equal(got.maps["saliency"], results.maps["saliency"]), name
        assert got.manifest["counts"]["skipped"] == 1, name


def test_a_folder_holding_another_job_is_refused(model, folder, float32_run):
    summary, _ = float32_run
    before = json.loads((summary.out / "job.json").read_text())
    with pytest.raises(InputError, match=r"holds a run of another job \(methods: "):
        lib.batch.run(
            folder, model, "cam", summary.out, batch_size=BATCH, shard_size=SHARD, dtype="float32", top_k=2
        )
    with pytest.raises(InputError, match=r"\(dtype: \"float32\" there, \"uint8\" now\)"):
        lib.batch.run(
            folder,
            model,
            "grad_cam,guided_grad_cam,saliency",
            summary.out,
            shard_size=SHARD,
            batch_size=BATCH,
            dtype="uint8",
            top_k=2,
        )
    with pytest.raises(InputError, match=r"\(batch_size: 8 there, 4 now\)"):
        lib.batch.run(folder, model, "grad_cam,guided_grad_cam,saliency", summary.out, shard_size=SHARD,
                      batch_size=4, dtype="float32", top_k=2)  # fmt: skip
    assert json.loads((summary.out / "job.json").read_text()) == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(methods="nope"), "no method 'nope'; pick one of grad_cam"),
        (dict(runner="spark"), "runner='spark'; pass one of local, beam"),
        (dict(dtype="int8"), "dtype='int8'; pass one of float32, float16, uint8"),
        (dict(shard_size=0), "shard_size=0; pass a positive integer"),
        (dict(images="/no/such/folder"), "does not exist"),
        (dict(images="/no/such/*.png"), "no files match"),
        (dict(class_ids=[99]), "99"),
        (dict(model="resnet9000"), "neither a model name"),
        (dict(methods="cam,cam"), "given twice"),
    ],
)
def test_bad_input_gets_one_line_errors(model, folder, tmp_path, kwargs, message):
    args = dict(images=folder, model=model, methods="cam", out=tmp_path / "x") | kwargs
    with pytest.raises((InputError, FileNotFoundError)) as caught:
        lib.batch.run(**args)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "x" / "job.json").exists()


def test_read_of_an_unfinished_job_says_so(tmp_path):
    (tmp_path / "job.json").write_text("{}")
    with pytest.raises(InputError, match="an unfinished job; rerun it"):
        lib.batch.read(tmp_path)
