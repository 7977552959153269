"""The XLA-compiled pieces of an image optimisation step against independent references: Fourier
images against NumPy's FFT, the random transforms against TensorFlow's `ImageProjectiveTransformV3`,
their gradient as the resampling's adjoint, and Adam against its textbook update."""

import numpy as np
import pytest
import tensorflow as tf

from lib.methods import image_optimization
from lib.methods.parameterization import COLOR_MIX, FourierImage, PixelImage
from lib.methods.robustness import DISTILL_TRANSFORMS, Transforms


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("size", [(227, 227), (31, 17)])
def test_fourier_images_are_the_scaled_inverse_fft_mixed_by_the_colour_matrix(size):
    image = FourierImage(size)
    params = image.random(2, seed=0).numpy() * 50.0  # far from grey, so the sigmoid is not flat
    height, width = image.fft_size
    frequencies = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :])
    scale = np.sqrt(height * width) / np.maximum(frequencies, 1.0 / max(height, width)) / 4.0
    spectrum = (params[:, 0] + 1j * params[:, 1]) * scale  # (B, 3, H', W' // 2 + 1)
    planes = np.fft.irfft2(spectrum, s=image.fft_size)[:, :, : size[0], : size[1]]
    expected = sigmoid(np.einsum("dc,bchw->bhwd", COLOR_MIX, planes))
    np.testing.assert_allclose(image.to_unit(tf.constant(params)).numpy(), expected, atol=2e-6)


def test_pixel_images_are_the_mixed_logits_through_a_sigmoid():
    image = PixelImage((9, 7))
    params = np.random.default_rng(0).normal(0, 3, (2, 9, 7, 3)).astype("float32")
    expected = sigmoid(params @ COLOR_MIX.T)
    np.testing.assert_allclose(image.to_unit(tf.constant(params)).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 227, 227, 3), (3, 40, 23, 2)])
def test_transforms_resample_as_tensorflows_projective_transform(shape):
    """Large shifts and turns, so that many points fall outside and are reflected back in."""
    images = tf.random.stateless_uniform(shape, seed=[1, 2])
    for transforms in (DISTILL_TRANSFORMS, Transforms(jitter=60.0, scale=(0.5, 1.5), rotate=90.0)):
        for step in range(3):
            seed = tf.constant([7, step])
            maps = transforms.matrices(*shape[:3], seed)
            reference = tf.raw_ops.ImageProjectiveTransformV3(
                images=images,
                transforms=tf.concat([maps, tf.zeros((shape[0], 2))], axis=1),
                output_shape=shape[1:3],
                fill_value=0.0,
                interpolation="BILINEAR",
                fill_mode="REFLECT",
            )
            np.testing.assert_allclose(transforms(images, seed).numpy(), reference.numpy(), atol=1e-4)


def test_the_transforms_gradient_is_the_adjoint_of_the_resampling():
    """<T f, g> = <f, T* g> for smooth bumps away from the borders, up to interpolation error.

    Scales of 0.8-1.25 change areas by up to 1.56x: a gradient that resampled back through the
    inverse map without its area factor (as TensorFlow's own gradient does) is off by that much.
    """
    rows, columns = np.mgrid[0:96, 0:80]

    def bumps(centres, width):
        fields = [np.exp(-((rows - r) ** 2 + (columns - c) ** 2) / (2 * width**2)) for r, c in centres]
        return tf.constant(np.stack(fields)[..., None].repeat(3, axis=-1), tf.float32)

    f = bumps([(48 + k, 40 - k) for k in range(6)], 7.0)
    g = bumps([(46, 38 + k) for k in range(6)], 9.0)
    transforms = Transforms(jitter=4.0, scale=(0.8, 1.25), rotate=30.0)
    with tf.GradientTape() as tape:
        tape.watch(f)
        forward = tf.reduce_sum(transforms(f, tf.constant([3, 1])) * g, axis=(1, 2, 3))
        total = tf.reduce_sum(forward)
    adjoint = tf.reduce_sum(f * tape.gradient(total, f), axis=(1, 2, 3))
    np.testing.assert_allclose(adjoint.numpy(), forward.numpy(), rtol=5e-3)


def test_adam_takes_the_textbook_step():
    """Kingma & Ba's Algorithm 1 in NumPy, for three steps from zero moments."""
    rng = np.random.default_rng(0)
    params = rng.normal(size=(2, 5)).astype("float32")
    first, second = np.zeros_like(params), np.zeros_like(params)
    expected = params.copy().astype("float64")
    m, v = np.zeros_like(expected), np.zeros_like(expected)
    (beta1, beta2), epsilon, rate = image_optimization.ADAM_BETAS, image_optimization.ADAM_EPSILON, 0.05
    for count in (1, 2, 3):
        gradients = rng.normal(size=(2, 1, 5)).astype("float32")
        params, first, second = image_optimization._adam(
            params, first, second, gradients, tf.constant(float(count)), tf.constant(rate)
        )
        m = beta1 * m + (1 - beta1) * gradients[:, 0]
        v = beta2 * v + (1 - beta2) * gradients[:, 0] ** 2
        expected -= rate * (m / (1 - beta1**count)) / (np.sqrt(v / (1 - beta2**count)) + epsilon)
    np.testing.assert_allclose(params.numpy(), expected, rtol=1e-5, atol=1e-6)
