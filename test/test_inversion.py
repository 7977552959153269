"""Inversion of SqueezeNet's features (Mahendran & Vedaldi 2015): an early layer gives the photo back,
deeper layers lose more of it, and the priors and PSNR behave as defined."""

import numpy as np
import pytest
import tensorflow as tf
from skimage.metrics import peak_signal_noise_ratio

from lib.dataflow import photos as photo_files
from lib.dataflow.images import resize
from lib.errors import InputError
from lib.methods.inversion import Inversion, psnr
from lib.methods.robustness import alpha_norm, total_variation
from lib.nets.squeezenet import squeezenet


@pytest.fixture(scope="module")
def model():
    return squeezenet(weights="imagenet")


@pytest.fixture(scope="module")
def photos():
    return np.stack([resize(photo_files.load(name), size=227) for name in ("chelsea", "coffee")]).astype(
        "float32"
    )


def test_an_early_layer_gives_the_photo_back(model, photos):
    invert = Inversion(model, layer="conv1")
    recon = invert(photos, steps=300, seed=0, progress=False)
    errors, quality = invert.feature_error(recon, photos), psnr(recon, photos)
    print("conv1 relative feature error", errors.round(3), "PSNR dB", quality.round(1))
    assert (errors <= 0.1).all()
    assert (quality >= 25.0).all()


@pytest.mark.slow
def test_errors_grow_with_depth(model, photos):
    photo = photos[:1]
    quality, errors = [], []
    for layer in ("conv1", "fire3_concat", "fire9_concat"):
        invert = Inversion(model, layer=layer)
        recon = invert(photo, steps=150, seed=0, progress=False)
        quality.append(psnr(recon, photo)[0])
        errors.append(invert.feature_error(recon, photo)[0])
    print("PSNR dB by depth", np.round(quality, 1), "relative feature error", np.round(errors, 3))
    assert quality[0] > quality[1] > quality[2]
    assert errors[0] < errors[2]


def test_feature_error_is_zero_for_the_photo_and_one_for_black_features(model, photos):
    invert = Inversion(model, layer="fire2_concat")
    np.testing.assert_allclose(invert.feature_error(photos, photos), 0.0, atol=1e-6)
    # the layer follows ReLUs: features of any image are >= 0, so the error of x is >= 0 and finite
    assert np.isfinite(invert.feature_error(np.zeros_like(photos), photos)).all()


def test_priors_and_psnr_by_their_definitions():
    rng = np.random.default_rng(0)
    unit = rng.uniform(size=(2, 9, 7, 3)).astype("float32")
    dx, dy = unit[:, :-1, :-1] - unit[:, :-1, 1:], unit[:, :-1, :-1] - unit[:, 1:, :-1]
    np.testing.assert_allclose(
        total_variation(tf.constant(unit), 2.0), (dx**2 + dy**2).mean(axis=(1, 2, 3)), rtol=1e-5
    )
    np.testing.assert_allclose(
        alpha_norm(tf.constant(unit), 6.0), (np.abs(2 * unit - 1) ** 6).mean(axis=(1, 2, 3)), rtol=1e-5
    )
    assert float(alpha_norm(tf.fill((1, 4, 4, 3), 0.5), 6.0)[0]) == 0.0
    images, reference = unit * 255, np.roll(unit, 1, axis=1) * 255
    expected = [peak_signal_noise_ratio(r, i, data_range=255) for i, r in zip(images, reference, strict=True)]
    np.testing.assert_allclose(psnr(images, reference), expected, rtol=1e-5)


def test_same_seed_same_reconstruction_and_bad_photos_refused(model, photos):
    invert = Inversion(model, layer="conv1")
    first = invert(photos[:1], steps=5, seed=1, progress=False)
    np.testing.assert_array_equal(first, invert(photos[:1], steps=5, seed=1, progress=False))
    with pytest.raises(InputError, match="images have shape"):
        invert(photos[:, :100], steps=5)
