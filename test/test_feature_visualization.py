"""Feature visualization on SqueezeNet's ImageNet weights: each channel's image excites that channel
most, class images are classified as their class after an unseen jitter, the parameterisations round
trip, objectives agree with a plain Keras sub-model, and runs are deterministic and leave the model as
it was."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lib.dataflow import photos as photo_files
from lib.dataflow.images import resize
from lib.errors import InputError, LayerError
from lib.methods.base import Scores, activations_and_gradients
from lib.methods.feature_visualization import (
    NO_TRANSFORMS,
    FeatureVisualization,
    Transforms,
    channel,
    class_logit,
    direction,
    unit,
)
from lib.methods.graph import ModelGraph
from lib.methods.parameterization import FourierImage, PixelImage
from lib.methods.rules import Rules
from lib.nets.squeezenet import squeezenet

LAYER = "fire5_concat"
CHANNELS = (0, 1, 2, 3, 4, 5)
CLASSES = (1, 967)  # goldfish, espresso


@pytest.fixture(scope="module")
def model():
    return squeezenet(weights="imagenet")


@pytest.fixture(scope="module")
def photos():
    """Every photo the project ships, at SqueezeNet's input size."""
    return np.stack([resize(photo_files.load(name), size=227) for name in photo_files.names()]).astype(
        "float32"
    )


@pytest.fixture(scope="module")
def channel_images(model):
    return FeatureVisualization(model)(
        [channel(LAYER, c) for c in CHANNELS], steps=96, seed=0, progress=False
    )


def channel_means(model, images, layer=LAYER):
    """Mean activation of each channel of `layer`, (N, C), from a plain Keras sub-model."""
    probe = keras.Model(model.inputs, model.get_layer(layer).output)
    return probe.predict(images, verbose=0).mean(axis=(1, 2))


def test_channel_images_excite_their_channel_most(model, photos, channel_images):
    activations = channel_means(model, channel_images, LAYER)[:, CHANNELS]  # (image i, channel j)
    on_photos = channel_means(model, photos, LAYER)[:, CHANNELS]
    own = np.diag(activations)
    print("own channel:", own.round(1), "best photo:", on_photos.max(axis=0).round(1))
    assert (own > on_photos.max(axis=0)).all()
    others = activations - np.diag(np.full(len(CHANNELS), np.inf))
    assert (own > others.max(axis=0)).all()  # each channel's column is led by its own image


def test_class_images_are_classified_as_their_class_after_an_unseen_jitter(model):
    images = FeatureVisualization(model)([class_logit(c) for c in CLASSES], steps=64, seed=0, progress=False)
    unseen = Transforms(jitter=16.0, scale=(0.85, 1.15), rotate=15.0)
    moved = unseen(tf.constant(images), tf.constant([12345, 678])).numpy()
    for batch in (images, moved):
        probabilities = tf.nn.softmax(model.predict(batch, verbose=0)).numpy()
        assert (probabilities[np.arange(len(CLASSES)), CLASSES] >= 0.9).all(), probabilities.max(axis=1)


@pytest.mark.parametrize("kind", [PixelImage, FourierImage])
@pytest.mark.parametrize("size", [(227, 227), (224, 160), (31, 17)])
def test_parameterizations_round_trip(kind, size):
    images = np.random.default_rng(0).uniform(1.0, 254.0, (2, *size, 3)).astype("float32")
    for decorrelate in (True, False):
        image = kind(size, decorrelate=decorrelate)
        back = image.to_image(image.from_image(images)).numpy()
        np.testing.assert_allclose(back, images, atol=0.02)


def test_fourier_images_start_smooth_and_pixel_images_do_not():
    """The 1 / f spectrum puts a random start's energy in low frequencies: neighbours are alike."""
    for kind, smooth in ((FourierImage, True), (PixelImage, False)):
        start = kind((64, 64)).to_image(kind((64, 64)).random(4, seed=0)).numpy()
        centred = start - start.mean(axis=(1, 2), keepdims=True)
        neighbours = np.mean(centred[:, 1:] * centred[:, :-1]) / np.mean(centred * centred)
        assert (neighbours > 0.5) == smooth, neighbours


def test_objectives_agree_with_a_keras_sub_model(model, photos):
    """channel + 0.5 class logit - a unit + a direction, against the layer outputs Keras gives."""
    rng = np.random.default_rng(1)
    vector = rng.normal(size=512)
    objective = (
        channel(LAYER, 7)
        + 0.5 * class_logit(281)
        - unit("fire9_concat", 3, 2, 5)
        + direction("fire9_concat", vector)
    )
    got = FeatureVisualization(model).objective_values(photos[:3], [objective] * 3)
    fire5 = keras.Model(model.inputs, model.get_layer(LAYER).output).predict(photos[:3], verbose=0)
    fire9 = keras.Model(model.inputs, model.get_layer("fire9_concat").output).predict(photos[:3], verbose=0)
    logits = model.predict(photos[:3], verbose=0)
    expected = (
        fire5[..., 7].mean(axis=(1, 2))
        + 0.5 * logits[:, 281]
        - fire9[:, 2, 5, 3]
        + (fire9 @ vector).mean(axis=(1, 2))
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


def test_same_seed_same_images_and_the_model_unchanged(model):
    before = [w.copy() for w in model.get_weights()]
    visualize = FeatureVisualization(model)
    objectives = [channel("fire3_concat", 0), unit("fire3_concat", 1)]
    first = visualize(objectives, steps=8, seed=3, progress=False)
    again = visualize(objectives, steps=8, seed=3, progress=False)
    other = visualize(objectives, steps=8, seed=4, progress=False)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 1.0
    assert visualize.tracing_count == 1  # one compiled step for both seeds
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.dtype == np.float32 and first.shape == (2, 227, 227, 3)
    assert first.min() >= 0.0 and first.max() <= 255.0


def test_a_nested_model_gives_the_images_of_the_plain_model(model):
    inputs = keras.Input((227, 227, 3))
    outer = keras.Model(inputs, keras.layers.Activation("linear", name="identity")(model(inputs)))
    objectives = [channel("fire3_concat", 2), class_logit(5)]
    options = {"steps": 6, "seed": 0, "progress": False}
    plain = FeatureVisualization(model, transforms=NO_TRANSFORMS)(objectives, **options)
    nested = FeatureVisualization(outer, transforms=NO_TRANSFORMS)(objectives, **options)
    np.testing.assert_allclose(nested, plain, atol=1e-3)


def test_bad_objectives_get_one_line_errors(model):
    visualize = FeatureVisualization(model)
    with pytest.raises(
        InputError, match="channel 512 is out of range for layer 'fire5_concat', which has 256"
    ):
        visualize(channel(LAYER, 512), steps=1)
    with pytest.raises(InputError, match="class 1000 is out of range"):
        visualize(class_logit(1000), steps=1)
    with pytest.raises(InputError, match="the direction has 3 values"):
        visualize(direction(LAYER, [1.0, 2.0, 3.0]), steps=1)
    with pytest.raises(InputError, match="outside layer 'conv1'"):
        visualize(unit("conv1", 0, 500, 0), steps=1)
    with pytest.raises(LayerError, match="no layer 'fire99'"):
        visualize(channel("fire99", 0), steps=1)
    with pytest.raises(InputError, match="pass an objective or a list of them"):
        visualize(["fire5_concat"], steps=1)
    with pytest.raises(InputError, match="steps must be a positive int"):
        visualize(channel(LAYER, 0), steps=0)


def _redirected_gradient(bias, images, rule):
    """d(-mean relu(x - bias)) / dx on a 1x1 convolution, under `rule`."""
    inputs = keras.Input((2, 2, 1))
    conv = keras.layers.Conv2D(1, 1, activation="relu", kernel_initializer="ones", bias_initializer="zeros")
    toy = keras.Model(inputs, conv(inputs))
    conv.bias.assign([-bias])
    graph = ModelGraph(toy)
    rules = Rules(rule, graph.steps)

    def base(x):
        values = graph.run(graph.steps, {graph.input_key: x}, rules.call)
        return values[graph.output_key], values

    def head(y, values):
        return Scores(for_input=-tf.reduce_mean(y, axis=(1, 2, 3))[:, None])

    return activations_and_gradients(tf.constant(images), base, head)[2][:, 0].numpy()


def test_the_redirected_relu_gradient_turns_on_a_unit_that_is_off_everywhere():
    images = np.array([[0.0, 1.0], [0.5, 0.2]], "float32").reshape(1, 2, 2, 1)
    dead = _redirected_gradient(5.0, images, "redirected")  # relu(x - 5) is 0 on every pixel
    np.testing.assert_array_equal(_redirected_gradient(5.0, images, "normal"), 0.0)
    np.testing.assert_allclose(dead, -0.25)  # the gradient that would raise every input
    alive = _redirected_gradient(0.4, images, "redirected")  # on at 1.0 and 0.5: the normal gradient
    np.testing.assert_allclose(alive, _redirected_gradient(0.4, images, "normal"))
    np.testing.assert_allclose(alive.ravel(), [0.0, -0.25, -0.25, 0.0])
