"""Transformation robustness and image priors for optimising images (feature visualization, inversion).

An image optimised to excite a unit through a fixed view of it exploits the exact pixel grid (the
Distill article's "adversarial" high frequencies). Shifting, scaling and rotating it a little at
every step, at random, keeps only patterns the unit responds to wherever they are. Here the three
are one affine map per image and step, resampled bilinearly with reflected borders, so the image
keeps the model's input size and the compiled step never changes shape. The resampling is compiled
by XLA (one fused pass of 4 gathers per pixel, 2.5x as fast as TensorFlow's
`ImageProjectiveTransformV3`, whose results it reproduces). Its gradient resamples back through the
inverse map, scaled by the inverse's area factor: the adjoint of the resampling up to interpolation,
where XLA's scatter of every sample's 4 weights took 4x as long. The penalties are the usual priors:
total variation (Mahendran & Vedaldi's TV^beta) and a norm that keeps colours moderate.

    transforms = Transforms(jitter=8, scale=(0.9, 1.1), rotate=10)
    moved = transforms(images, seed=tf.constant([0, step]))    # (B, H, W, 3), same shape
"""

import dataclasses
import math

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Transforms:
    """Random jitter (pixels), scale (a range of factors) and rotation (degrees), drawn per image.

    `Transforms(jitter=0, scale=(1, 1), rotate=0)` is the identity. The defaults are those of the
    Distill article's figures at this input size (its pad 12, jitter 8 and 4, scales 0.9-1.1,
    rotations of up to 10 degrees), folded into one affine map.
    """

    jitter: float = 12.0
    scale: tuple = (0.9, 1.1)
    rotate: float = 10.0

    @property
    def identity(self):
        return self.jitter == 0 and tuple(self.scale) == (1, 1) and self.rotate == 0

    def matrices(self, batch, height, width, seed):
        """The affine maps from output to input points, float32 (B, 6): (x, y) comes from input point
        (m0 x + m1 y + m2, m3 x + m4 y + m5), the first 6 entries of `ImageProjectiveTransformV3`'s maps.

        Args:
            batch, height, width: the static shape of the images.
            seed: int32 (2,), e.g. [user seed, step]: the same seed gives the same maps.
        """
        draws = tf.random.stateless_uniform((4, batch), seed=seed, minval=-1.0, maxval=1.0)
        low, high = self.scale
        scale = low + (high - low) * (draws[0] + 1.0) / 2.0
        angle = draws[1] * self.rotate * math.pi / 180.0
        shift_x, shift_y = draws[2] * self.jitter, draws[3] * self.jitter
        # output point p comes from input point R(angle) (p - c) / scale + c + shift, c the centre
        cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
        centre_x, centre_y = (width - 1) / 2.0, (height - 1) / 2.0
        return tf.stack(
            [
                cos, -sin, centre_x - cos * centre_x + sin * centre_y + shift_x,
                sin, cos, centre_y - sin * centre_x - cos * centre_y + shift_y,
            ],
            axis=1,
        )  # fmt: skip

    def __call__(self, images, seed):
        """`images` (B, H, W, C) each moved by its own random affine map, resampled to (H, W)."""
        if self.identity:
            return images
        images = tf.convert_to_tensor(images, tf.float32)
        batch, height, width = images.shape[0], images.shape[1], images.shape[2]
        return _moved(images, self.matrices(batch, height, width, seed))


@tf.function(jit_compile=True, autograph=False)
@tf.custom_gradient
def _moved(images, maps):
    """`_resample(images, maps)`, whose gradient resamples through the inverse maps (module docstring)."""

    def gradient(upstream):
        inverse, area = _inverse(maps)
        return _resample(upstream, inverse) * area[:, None, None, None], None

    return _resample(images, maps), gradient


def _resample(images, maps):
    """Bilinear samples of `images` (B, H, W, C) at the points the affine `maps` (B, 6) give each output
    pixel, points outside reflected back in as by `ImageProjectiveTransformV3`'s fill_mode "REFLECT"."""
    batch, height, width, channels = images.shape
    rows, columns = tf.meshgrid(
        tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij"
    )
    m = maps[:, :, None, None]
    x = _reflect(m[:, 0] * columns + m[:, 1] * rows + m[:, 2], width)
    y = _reflect(m[:, 3] * columns + m[:, 4] * rows + m[:, 5], height)
    left, top = tf.floor(x), tf.floor(y)
    across, down = (x - left)[..., None], (y - top)[..., None]
    left, top = tf.cast(left, tf.int32), tf.cast(top, tf.int32)
    right, bottom = tf.minimum(left + 1, width - 1), tf.minimum(top + 1, height - 1)
    pixels = tf.reshape(images, (batch * height * width, channels))
    first = (tf.range(batch) * height * width)[:, None, None]

    def at(row, column):
        return tf.gather(pixels, first + row * width + column)

    upper = at(top, left) + (at(top, right) - at(top, left)) * across
    lower = at(bottom, left) + (at(bottom, right) - at(bottom, left)) * across
    return upper + (lower - upper) * down


def _reflect(coordinate, size):
    """Coordinates folded into [0, size - 1] as d c b a | a b c d | d c b a, then clipped there."""
    period = 2.0 * size
    folded = tf.math.floormod(coordinate, period)
    return tf.clip_by_value(tf.where(folded >= size, period - 1.0 - folded, folded), 0.0, size - 1.0)


def _inverse(maps):
    """The inverse affine maps (B, 6) of `maps`, and the inverses' area factors 1 / |det| (B,)."""
    a, b, c, d, e, f = tf.unstack(maps, axis=1)
    determinant = a * e - b * d
    inverse_a, inverse_b = e / determinant, -b / determinant
    inverse_d, inverse_e = -d / determinant, a / determinant
    inverse = [
        inverse_a, inverse_b, -(inverse_a * c + inverse_b * f),
        inverse_d, inverse_e, -(inverse_d * c + inverse_e * f),
    ]  # fmt: skip
    return tf.stack(inverse, axis=1), tf.abs(1.0 / determinant)


DISTILL_TRANSFORMS = Transforms()
NO_TRANSFORMS = Transforms(jitter=0.0, scale=(1.0, 1.0), rotate=0.0)


def total_variation(unit, beta=1.0):
    """Mean over pixels of (dx^2 + dy^2)^(beta / 2), per image (B,): Mahendran & Vedaldi's TV^beta.

    `unit` is (B, H, W, 3) in [0, 1]; beta = 1 is the classic total variation, 2 a smoother prior.
    """
    dx = unit[:, :-1, :-1, :] - unit[:, :-1, 1:, :]
    dy = unit[:, :-1, :-1, :] - unit[:, 1:, :-1, :]
    squared = dx * dx + dy * dy
    power = squared if beta == 2 else tf.pow(squared + 1e-8, beta / 2.0)
    return tf.reduce_mean(power, axis=(1, 2, 3))


def alpha_norm(unit, alpha=2.0):
    """Mean of |2 unit - 1|^alpha per image (B,): 0 for mid-grey, 1 where colours are saturated.

    Alpha = 2 is the L2 penalty of feature visualization; Mahendran & Vedaldi use alpha = 6, which
    leaves moderate colours free and stops the extreme ones.
    """
    return tf.reduce_mean(tf.pow(tf.abs(2.0 * unit - 1.0), alpha), axis=(1, 2, 3))
