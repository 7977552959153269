"""CAM model builder and training path: structure, CAM == Grad-CAM, learning, snapshots, resume."""

import json
import os
import warnings

import keras
import numpy as np
import pytest

from lib.dataflow.shapes import write_image_folder
from lib.errors import InputError, LayerError
from lib.methods.cam import CAM
from lib.methods.cam_training import cam_model, find_feature_layer, load_weights, read_checkpoint, train_cam
from lib.methods.grad_cam import GradCAM
from lib.nets import bundled
from lib.nets.googlenet import googlenet
from lib.nets.vgg import vgg19

SIZE = 32
NUM_IMAGES = 40  # 8 validation, 32 training: 4 steps of 8 per epoch
TRAIN = dict(batch_size=8, maps_every=3, class_ids=[2, 3], verbose=0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    write_image_folder(root, NUM_IMAGES, seed=0, size=SIZE)
    return root


@pytest.fixture(scope="module")
def base():
    keras.utils.set_random_seed(1)
    return vgg19(include_top=False, widths=(8, 16), convs_per_block=(1, 1), input_shape=(SIZE, SIZE, 3))


def build(base, **kwargs):
    return cam_model(base, 8, conv_width=16, **kwargs)


def images(n=3):
    return np.random.default_rng(0).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def test_the_cam_model_is_a_gap_network_whose_cam_equals_grad_cam(base):
    model = build(base)
    names = [layer.name for layer in model.layers]
    assert names[-4:] == ["conv2_1", "cam_conv", "global_pool", "classifier"]  # pool2 dropped
    assert model.output_shape == (None, 8)
    ids = [[0, 3, 5]] * 3
    a, b = CAM(model)(images(), ids), GradCAM(model, "cam_conv")(images(), ids)
    assert a.shape == (3, 3, SIZE, SIZE)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert (a.max(axis=(2, 3)) == 1).sum() >= 5


def test_the_default_feature_layer_is_the_last_spatial_layer_before_any_pooling(base):
    assert find_feature_layer(base).name == "conv2_1"
    assert find_feature_layer(bundled.build("shapes_vgg")).name == bundled.LAST_CONV_LAYER["shapes_vgg"]
    small = googlenet(include_top=False, width=0.125, last_block="3a", input_shape=(64, 64, 3))
    assert find_feature_layer(small).name == "inception_3a_output"
    assert find_feature_layer(base, "conv1_1").name == "conv1_1"
    with pytest.raises(LayerError, match="conv1_1, pool1, conv2_1"):
        find_feature_layer(base, "conv9")
    with pytest.raises(LayerError, match="'fc8' has output shape .*no .N, h, w, C. axes"):
        find_feature_layer(bundled.build("shapes_vgg"), "fc8")


def test_only_the_head_trains_unless_asked_and_the_base_is_never_changed(base, folder, tmp_path):
    before = [w.copy() for w in base.get_weights()]
    frozen, full = build(base), build(base, train_base=True)
    assert [w.path.split("/")[0] for w in frozen.trainable_weights] == ["cam_conv"] * 2 + ["classifier"] * 2
    assert len(full.trainable_weights) == 8
    train_cam(full, folder, 1, tmp_path, **TRAIN)
    assert all(np.array_equal(a, b) for a, b in zip(before, base.get_weights(), strict=True))
    assert all(layer.trainable for layer in base.layers)
    assert not np.array_equal(full.get_layer("conv1_1").get_weights()[0], before[0])


def test_training_lowers_the_loss_and_records_the_maps_every_n_steps(base, folder, tmp_path):
    model = build(base)
    history = train_cam(model, folder, 3, tmp_path, **TRAIN)  # 12 steps
    assert history.loss[-1] < history.loss[0]
    assert len(history.val_accuracy) == 3 and 0 <= history.val_accuracy[-1] <= 1
    assert history.steps == [0, 3, 6, 9, 12]
    arrays = history.arrays()
    assert arrays["maps"].shape == (5, 2, SIZE, SIZE) and arrays["scores"].shape == (5, 2)
    assert arrays["maps"].min() >= 0 and arrays["maps"].max() <= 1
    assert not np.allclose(arrays["maps"][0], arrays["maps"][-1])
    # the last snapshot is the trained model's CAM of the inference image (the first validation image)
    np.testing.assert_allclose(arrays["maps"][-1], CAM(model)(history.image[None], [[2, 3]])[0], atol=1e-5)
    probabilities = keras.ops.softmax(model.predict_on_batch(history.image[None])).numpy()[0]
    np.testing.assert_allclose(arrays["scores"][-1], probabilities[[2, 3]], atol=1e-5)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "checkpoint.json",
        "epoch-003.state.npz",
        "epoch-003.weights.h5",
    ]


def test_a_last_partial_interval_gets_a_final_snapshot(base, folder, tmp_path):
    history = train_cam(build(base), folder, 2, tmp_path, **{**TRAIN, "maps_every": 5})
    assert history.steps == [0, 5, 8]


class Interrupt(Exception):
    pass


def interrupt_after(model, calls):
    """Makes `model.train_on_batch` raise on its `calls + 1`-th call, as a Ctrl-C would."""
    original, count = model.train_on_batch, [0]

    def train_on_batch(*args, **kwargs):
        count[0] += 1
        if count[0] > calls:
            raise Interrupt
        return original(*args, **kwargs)

    model.train_on_batch = train_on_batch


def test_an_interrupted_run_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(
    base, folder, tmp_path
):
    whole = build(base)
    expected = train_cam(whole, folder, 2, tmp_path / "whole", **TRAIN)

    first = build(base)
    interrupt_after(first, 6)  # two steps into epoch 2
    with pytest.raises(Interrupt):
        train_cam(first, folder, 2, tmp_path / "run", **TRAIN)
    assert read_checkpoint(tmp_path / "run")["epoch"] == 1
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no temporary files

    second = build(base)
    resumed = train_cam(second, folder, 2, tmp_path / "run", **TRAIN)
    assert resumed.resumed_from == 1
    assert resumed.loss == expected.loss and resumed.val_loss == expected.val_loss
    assert resumed.steps == expected.steps == [0, 3, 6, 8]
    np.testing.assert_array_equal(resumed.arrays()["maps"], expected.arrays()["maps"])
    for a, b in zip(second.get_weights(), whole.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(second.optimizer.iterations) == int(whole.optimizer.iterations) == 8


def test_a_finished_run_is_not_trained_again_and_resume_false_starts_afresh(base, folder, tmp_path):
    first = train_cam(build(base), folder, 1, tmp_path, **TRAIN, metadata={"note": "x"})
    again = train_cam(build(base), folder, 1, tmp_path, **TRAIN)
    assert again.resumed_from == 1 and again.steps == first.steps == [0, 3, 4]
    assert json.loads((tmp_path / "checkpoint.json").read_text())["metadata"] == {"note": "x"}
    fresh = train_cam(build(base), folder, 1, tmp_path, **{**TRAIN, "resume": False})
    assert fresh.resumed_from == 0 and fresh.loss == first.loss
    model = build(base)
    assert load_weights(model, tmp_path)["epoch"] == 1


def test_resuming_with_another_inference_image_or_classes_is_refused(base, folder, tmp_path):
    first = train_cam(build(base), folder, 1, tmp_path, **TRAIN)
    other_image = np.asarray(first.image)[::-1].copy()  # the same image upside down
    for changed in ({"inference_image": other_image}, {"class_ids": [2, 4]}):
        with pytest.raises(InputError, match="records the maps of another inference image or other classes"):
            train_cam(build(base), folder, 2, tmp_path, **{**TRAIN, **changed})
    assert read_checkpoint(tmp_path)["epoch"] == 1  # nothing was trained or written
    fresh = train_cam(
        build(base), folder, 1, tmp_path, **{**TRAIN, "inference_image": other_image, "resume": False}
    )
    np.testing.assert_array_equal(fresh.image, other_image)


def test_bad_folders_and_mismatched_models_are_refused(base, folder, tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(InputError, match="no images"):
        train_cam(build(base), tmp_path / "empty", 1, tmp_path / "out", **TRAIN)
    with pytest.raises(InputError, match="num_classes=8"):
        train_cam(cam_model(base, 3, conv_width=4), folder, 1, tmp_path / "out", **TRAIN)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_weights(build(base), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_ctrl_c_leaves_only_the_last_checkpoint_and_a_damaged_one_is_named(tmp_path):
    # A real KeyboardInterrupt on a minimal run; the test above shows in depth that a resumed run ends
    # exactly as an uninterrupted one.
    write_image_folder(tmp_path / "data", 20, seed=0, size=32)  # 16 training images: 2 steps per epoch
    small_base = vgg19(include_top=False, widths=(4,), convs_per_block=(1,), input_shape=(32, 32, 3))
    first, options = cam_model(small_base, 8, conv_width=4), dict(batch_size=8, class_ids=[0], verbose=0)
    train_on_batch, steps = first.train_on_batch, []

    def ctrl_c_in_epoch_2(*args, **kwargs):
        steps.append(1)
        if len(steps) == 3:
            raise KeyboardInterrupt
        return train_on_batch(*args, **kwargs)

    first.train_on_batch = ctrl_c_in_epoch_2
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 20 images leave some of the 8 class folders empty
        with pytest.raises(KeyboardInterrupt):
            train_cam(first, tmp_path / "data", 2, run, **options)
        assert read_checkpoint(run)["epoch"] == 1
        assert sorted(os.listdir(run)) == ["checkpoint.json", "epoch-001.state.npz", "epoch-001.weights.h5"]
        history = train_cam(cam_model(small_base, 8, conv_width=4), tmp_path / "data", 2, run, **options)
    assert history.resumed_from == 1 and len(history.loss) == 2
    assert sorted(os.listdir(run)) == ["checkpoint.json", "epoch-002.state.npz", "epoch-002.weights.h5"]
    (run / "checkpoint.json").write_text("{")  # damaged by hand: one clear error, not JSON's
    with pytest.raises(InputError, match=r"checkpoint '.*checkpoint.json' is damaged \(.*\); start afresh"):
        read_checkpoint(run)
