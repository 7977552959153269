"""Images as trainable parameters: pixels, or a decorrelated Fourier spectrum (Olah et al., Distill 2017).

Optimising raw pixels finds high-frequency patterns the network responds to but a person cannot read.
The Distill article *Feature Visualization* optimises instead in a space where natural images are
"white": each colour channel's 2D spectrum scaled by 1 / frequency (natural images' spectra fall off
about so), and colours mixed by the square root of ImageNet's colour correlation, so that a step of
the optimiser changes all frequencies and colours alike. A sigmoid maps the result into the model's
input range, so every image is valid whatever the parameters. All but the FFT is compiled by XLA,
which fuses the scaling, crop, colour mix and sigmoid and their gradients into a few passes over
the images (TensorFlow's one op at a time took 3x as long as the FFTs); the FFTs stay TensorFlow's,
whose CPU kernels are 1.3-1.5x as fast as XLA's.

    image = FourierImage((227, 227))
    params = image.random(batch=8, seed=0)      # float32 (8, 2, 3, 240, 121), real and imaginary parts
    pixels = image.to_image(params)             # float32 (8, 227, 227, 3) in value_range
    image.from_image(pixels)                    # the parameters again (the round trip is exact)
"""

import numpy as np
import scipy.fft
import tensorflow as tf

from lib.errors import InputError

# The square root of the colour correlation of ImageNet's RGB pixels (the published matrix of the
# Distill article's Lucid library), normalised so that its largest column has norm 1.
_COLOR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
COLOR_MIX = _COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))
EDGE = 1e-4  # `from_image` keeps values this far (as a fraction of the range) inside the sigmoid's range


class PixelImage:
    """Pixels as parameters, one logit per pixel and colour (mixed by `COLOR_MIX` if `decorrelate`).

    Args:
        size: (H, W) of the images.
        decorrelate: mix colours by ImageNet's colour correlation, as the Distill article does.
        value_range: (low, high) of the model's input (0-255 RGB for the `lib.nets` builders).
        scale: standard deviation of `random`'s parameters.
    """

    def __init__(self, size, decorrelate=True, value_range=(0.0, 255.0), scale=0.01):
        self.size = tuple(int(s) for s in size)
        self.decorrelate = decorrelate
        self.low, self.high = (float(v) for v in value_range)
        self.scale = scale
        self._mix = COLOR_MIX if decorrelate else np.eye(3, dtype=np.float32)  # (out, in)
        self._unmix = tf.constant(np.linalg.inv(self._mix.T).astype(np.float32))
        self._to_unit = tf.function(self._unit, jit_compile=True, autograph=False)

    def parameter_shape(self, batch):
        """Shape of the parameters of `batch` images."""
        return (batch, *self.size, 3)

    def random(self, batch, seed):
        """Parameters of `batch` near-grey images, seeded: float32 tensor of `parameter_shape(batch)`."""
        shape = self.parameter_shape(batch)
        return tf.random.stateless_normal(shape, seed=[seed, 0]) * self.scale

    def to_unit(self, params):
        """The images in [0, 1], (B, H, W, 3): the colour mix, then a sigmoid."""
        return self._to_unit(self._spatial(params))

    def to_image(self, params):
        """The images in the model's input range, float32 (B, H, W, 3)."""
        return self.low + (self.high - self.low) * self.to_unit(params)

    def from_image(self, images):
        """The parameters that give `images` (B, H, W, 3) in the input range; `to_image`'s inverse.

        Values at the ends of the range are moved `EDGE` inside it, where the sigmoid is finite.
        """
        unit = (tf.convert_to_tensor(images, tf.float32) - self.low) / (self.high - self.low)
        unit = tf.clip_by_value(unit, EDGE, 1.0 - EDGE)
        return self._from_spatial(tf.matmul(tf.math.log(unit / (1.0 - unit)), self._unmix))

    def _unit(self, spatial):
        # the mix as sums of scaled planes, which XLA fuses with the sigmoid; a product with the
        # 3 x 3 matrix would run as a separate dot (20 ms with its gradient at B = 16 on 227 x 227)
        planes = self._planes(spatial)
        mixed = [
            sum(float(weight) * plane for weight, plane in zip(row, planes, strict=True)) for row in self._mix
        ]
        return tf.sigmoid(tf.stack(mixed, axis=-1))

    def _spatial(self, params):
        """What the parameters stand for in space, before XLA's part of `to_unit`: the logits here."""
        return params

    def _planes(self, spatial):
        """The 3 pre-mix logit planes (B, H, W) of `_spatial`'s result."""
        return tf.unstack(spatial, axis=-1)

    def _from_spatial(self, logits):
        return logits


class FourierImage(PixelImage):
    """A colour-decorrelated Fourier spectrum per colour, scaled by 1 / frequency; see the module docstring.

    The spectrum is of a slightly larger image whose sides have only the factors 2, 3 and 5 (240 for
    227): a prime side such as SqueezeNet's 227 makes the FFTs three times slower. The image is its
    top-left (H, W) window, and `from_image` pads by reflection, so the round trip stays exact.

    Args:
        size: (H, W) of the images.
        decay_power: the spectrum's fall-off, 1 / frequency ** decay_power.
        decorrelate, value_range, scale: as for `PixelImage`.
    """

    def __init__(self, size, decay_power=1.0, decorrelate=True, value_range=(0.0, 255.0), scale=0.01):
        super().__init__(size, decorrelate, value_range, scale)
        self.fft_size = tuple(scipy.fft.next_fast_len(side, real=True) for side in self.size)
        height, width = self.fft_size
        frequencies = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :])
        spectrum_scale = 1.0 / np.maximum(frequencies, 1.0 / max(height, width)) ** decay_power
        # (H', W' // 2 + 1); sqrt(H' W') undoes irfft2d's 1 / (H' W'), as in Lucid, 1 / 4 is its damping
        self._scale = tf.constant(spectrum_scale * np.sqrt(height * width) / 4.0, tf.float32)
        self._fft_length = tf.constant(self.fft_size)
        self._spectrum = tf.function(self._scaled_spectrum, jit_compile=True, autograph=False)

    def parameter_shape(self, batch):
        """(B, 2, 3, H', W' // 2 + 1): real and imaginary parts of each colour's spectrum."""
        height, width = self.fft_size
        return (batch, 2, 3, height, width // 2 + 1)

    def _scaled_spectrum(self, params):
        real, imaginary = tf.unstack(params * self._scale, axis=1)
        return tf.complex(real, imaginary)  # (B, 3, H', W' // 2 + 1)

    def _spatial(self, params):
        return tf.signal.irfft2d(self._spectrum(params), fft_length=self._fft_length)  # (B, 3, H', W')

    def _planes(self, spatial):
        height, width = self.size
        return tf.unstack(spatial[:, :, :height, :width], axis=1)

    def _from_spatial(self, logits):
        (height, width), (fft_height, fft_width) = self.size, self.fft_size
        padding = [[0, 0], [0, fft_height - height], [0, fft_width - width], [0, 0]]
        planes = tf.transpose(tf.pad(logits, padding, mode="REFLECT"), (0, 3, 1, 2))
        spectrum = tf.signal.rfft2d(planes, fft_length=self._fft_length)
        return tf.stack([tf.math.real(spectrum), tf.math.imag(spectrum)], axis=1) / self._scale


PARAMETERIZATIONS = {"pixel": PixelImage, "fourier": FourierImage}


def make_parameterization(kind, size, value_range):
    """A `PixelImage` or `FourierImage` by name, or `kind` itself if it is already one."""
    if isinstance(kind, PixelImage):
        return kind
    if kind not in PARAMETERIZATIONS:
        raise InputError(f"parameterization {kind!r} is unknown; pick one of {', '.join(PARAMETERIZATIONS)}")
    return PARAMETERIZATIONS[kind](size, value_range=value_range)
