"""Bundled models: trained weights load into the builders' architectures and classify unseen shapes."""

import keras
import numpy as np
import pytest

from lib.errors import InputError
from lib.nets import bundled
from lib.nets.layers import fold_batch_norm


@pytest.mark.parametrize("name", bundled.names())
def test_bundled_model_classifies_unseen_shapes(name):
    scores = bundled.evaluate(bundled.load(name), num_images=500, seed=424242)
    assert scores["top1"] >= 0.95
    assert scores["two_object_top2"] >= 0.6


@pytest.mark.parametrize("name", bundled.names())
def test_bundled_model_is_the_plain_builder_architecture(name):
    model = bundled.load(name)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert isinstance(
        model.get_layer(bundled.LAST_CONV_LAYER[name]), (keras.layers.Conv2D, keras.layers.Concatenate)
    )
    pooled = [layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    assert len(pooled) == 1


def test_folding_batch_norm_keeps_the_outputs():
    trained = bundled.build("shapes_googlenet", batch_norm=True)
    rng = np.random.default_rng(0)
    for layer in trained.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 2.0, w.shape) for w in layer.get_weights()])
    plain = bundled.build("shapes_googlenet")
    fold_batch_norm(trained, plain)
    images = rng.uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    expected = trained(images, training=False)
    np.testing.assert_allclose(plain(images), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_unknown_bundled_name_lists_the_choices():
    with pytest.raises(InputError, match="shapes_vgg"):
        bundled.load("shapes_resnet")
