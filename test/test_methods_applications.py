"""The methods on a keras.applications model: MobileNetV2, whose ReLU6 layers guided rules must handle."""

import keras
import numpy as np
import pytest

from lib.methods.cam import CAM
from lib.methods.deconvnet import Deconvnet
from lib.methods.grad_cam import GradCAM
from lib.methods.guided_backprop import GuidedBackprop


@pytest.fixture(scope="module")
def mobilenet():
    """The model, two images, and its outputs and weights before any method ran."""
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35)
    images = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    return model, images, model(images).numpy(), [w.copy() for w in model.get_weights()]


def test_guided_backprop_covers_every_relu6(mobilenet):
    model, images, _, _ = mobilenet
    method = GuidedBackprop(model)
    relus = [layer.name for layer in model.layers if isinstance(layer, keras.layers.ReLU)]
    assert method._rules.relus == relus and len(relus) == 35
    grads = method(images, class_ids=[[3], [7]])
    assert grads.shape == (2, 1, 96, 96, 3) and grads.dtype == np.float32
    assert np.isfinite(grads).all() and np.abs(grads).max() > 0


def test_grad_cam_equals_cam_and_is_in_range(mobilenet):
    model, images, _, _ = mobilenet
    with pytest.warns(UserWarning, match="out_relu"):
        method = GradCAM(model)
    maps = method(images, [5, 9])
    assert maps.shape == (2, 2, 96, 96) and maps.min() >= 0 and maps.max() <= 1
    np.testing.assert_allclose(maps, CAM(model)(images, [5, 9]), atol=1e-4)


def test_the_model_is_unchanged_by_the_methods(mobilenet):
    model, images, outputs, weights = mobilenet  # captured before the tests above ran their methods
    Deconvnet(model, "block_3_expand_relu")(images, k=1)
    assert model.get_layer("Conv1_relu").max_value == 6.0
    assert model.get_layer("Conv1").activation.__name__ == "linear"
    np.testing.assert_array_equal(model(images).numpy(), outputs)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))
