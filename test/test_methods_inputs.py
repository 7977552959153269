"""The methods refuse what they cannot explain with one-line errors that name the value and the fix.

Models that are not Keras models, subclassed models, unknown or non-spatial layers, a network without
ReLU for guided backpropagation, images of mixed sizes or with NaN, and bad class ids; then random
arrays and class ids, which give a clean result or one of our errors, never a crash.
"""

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from lib.errors import InputError, LayerError, VizError
from lib.methods.filters import FeatureMaps, layer_filters
from lib.methods.grad_cam import GradCAM
from lib.methods.guided_backprop import GuidedBackprop
from lib.methods.targets import parse_class_ids

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def small():
    """conv1 (ReLU) -> conv2 (ReLU) -> global average pooling -> fc: 5 classes of 8x8 RGB images."""
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
    y = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(x, keras.layers.Dense(5, name="fc")(y), name="small")


@pytest.fixture(scope="module")
def gradcam(small):
    return GradCAM(small, "conv2")


def pixels(n=2):
    return RNG.uniform(0, 255, (n, 8, 8, 3)).astype(np.float32)


# ----------------------------------------------------------------------------------------------- images


def test_images_of_different_sizes_in_one_batch(gradcam):
    arrays_ = [np.zeros((8, 8, 3), np.float32), np.zeros((9, 8, 3), np.float32)]
    with pytest.raises(InputError, match=r"image 0 has shape \(8, 8, 3\), image 1 has \(9, 8, 3\)"):
        gradcam(arrays_)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_an_array_from_a_notebook(gradcam, value):
    images = pixels()
    images[1, 2, 3, 0] = value
    with pytest.raises(InputError, match="images contain NaN or Inf at 1 positions; replace them"):
        gradcam(images)


# ------------------------------------------------------------------------------------ models and layers


def test_an_unknown_layer_lists_the_valid_spatial_layers(small):
    with pytest.raises(LayerError, match=r"^no layer 'conv9' in the model; pick one of conv1, conv2$"):
        GradCAM(small, "conv9")


@pytest.mark.parametrize(("layer", "shape"), [("gap", r"\(None, 4\)"), ("fc", r"\(None, 5\)")])
def test_a_layer_with_no_spatial_axes(small, layer, shape):
    with pytest.raises(
        LayerError,
        match=rf"layer '{layer}' has output shape {shape}, no \(N, h, w, C\) axes; pick one of conv1, conv2",
    ):
        GradCAM(small, layer)


def test_a_model_without_relu_for_guided_backprop():
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, activation="tanh", name="conv")(x)
    model = keras.Model(x, keras.layers.Dense(3, name="fc")(keras.layers.Flatten()(y)))
    with pytest.raises(LayerError, match="no ReLU between the input and 'fc'; guided backpropagation would"):
        GuidedBackprop(model)


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("vgg19", "a str"),
        (np.zeros(3), "a numpy ndarray"),
        (keras.layers.Conv2D(2, 3), "a keras Conv2D"),
        (lambda x: x, "a function"),
    ],
    ids=["str", "array", "layer", "function"],
)
@pytest.mark.parametrize(
    "method",
    [GradCAM, GuidedBackprop, lambda m: FeatureMaps(m, "conv1"), lambda m: layer_filters(m, "conv1")],
    ids=["GradCAM", "GuidedBackprop", "FeatureMaps", "layer_filters"],
)
def test_a_model_that_is_not_a_keras_model(model, kind, method):
    with pytest.raises(InputError, match=f"^model is {kind}, not a keras.Model; pass a Keras 3 model"):
        method(model)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.fc = keras.layers.Dense(5)

    def call(self, x):
        return self.fc(self.pool(self.conv(x)))


def test_a_subclassed_model_says_it_needs_a_functional_graph_and_what_to_do():
    model = Subclassed()
    model(pixels(1))
    for method in (GradCAM, GuidedBackprop, lambda m: FeatureMaps(m, "conv")):
        with pytest.raises(
            LayerError,
            match=r"'subclassed' is a subclassed keras.Model \(Subclassed\).*functional graph; rebuild it "
            r"with inputs = keras.Input\(\(H, W, 3\)\) and keras.Model\(inputs, model.call\(inputs\)\)",
        ):
            method(model)
    inputs = keras.Input((8, 8, 3))  # the advice works
    assert GradCAM(keras.Model(inputs, model.call(inputs)), "conv")(pixels(1)).shape == (1, 1, 8, 8)


# ---------------------------------------------------------------------------------------------- classes


@pytest.mark.parametrize(
    ("class_ids", "message"),
    [
        (5, r"class id 5 is outside 0..4"),
        ([[1, 2], [3]], "class_ids is ragged; give every image the same number K of classes"),
        ([0, -1], r"class id -1 is outside 0..4"),
        ({1, 2}, r"class_ids=\{1, 2\}; pass an int, a list of ints or N lists of ints"),
    ],
    ids=["out-of-range", "k-lists-of-different-lengths", "negative", "not-ints"],
)
def test_bad_class_ids(gradcam, class_ids, message):
    with pytest.raises(InputError, match=f"^{message}"):
        gradcam(pixels(2), class_ids)


# ------------------------------------------------------------------------------------ property tests
# Every outcome is a clean result or one of our errors; the deadline catches a hang-like slowdown.

_DTYPES = st.sampled_from(
    ["uint8", "int16", "uint64", "float16", "float32", "float64", "bool", "complex64", "<U1"]
)
_CLASS_IDS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=2),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner),
    max_leaves=6,
)


@settings(max_examples=300, deadline=1000)
@given(class_ids=_CLASS_IDS, num_images=st.integers(1, 3), num_classes=st.none() | st.integers(1, 10))
def test_random_class_ids_into_the_parser(class_ids, num_images, num_classes):
    try:
        ids = parse_class_ids(class_ids, num_images, num_classes)
    except InputError as error:
        assert "\n" not in str(error)
        return
    if class_ids is None:
        assert ids is None
        return
    assert ids.dtype == np.int32 and ids.ndim == 2 and len(ids) == num_images and ids.shape[1] >= 1
    assert ids.min() >= 0 and (num_classes is None or ids.max() < num_classes)


@pytest.fixture(scope="module")
def warm_gradcam(gradcam):
    for n in (1, 2):  # trace once per batch size and target kind, so that timings are steady
        for class_ids in (None, 1, [1, 2]):
            gradcam(pixels(n), class_ids)
    return gradcam


_IMAGES = st.one_of(
    arrays(_DTYPES, array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=9)),
    arrays(_DTYPES, st.sampled_from([(1, 8, 8, 3), (2, 8, 8, 3), (8, 8, 3)])),
)


@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(
    images=_IMAGES, class_ids=st.sampled_from([None, 1, [1, 2], 7, -1, [[0], [1]], [[0, 1], [2]], 1.5, "x"])
)
def test_random_arrays_into_grad_cam(warm_gradcam, images, class_ids):
    try:
        maps = warm_gradcam(images, class_ids)
    except VizError as error:
        assert "\n" not in str(error)
        return
    assert maps.dtype == np.float32 and maps.shape[2:] == (8, 8)
    assert len(maps) == (len(images) if images.ndim == 4 else 1)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
