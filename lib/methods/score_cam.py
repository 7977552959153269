"""Score-CAM (Wang et al., CVPRW 2020, https://arxiv.org/abs/1910.01279).

Each channel A_k of a layer, upsampled to the image (bilinear) and min-max scaled to [0, 1], masks
the image; the weight of the channel for class c is the class's softmax probability on that masked
image, a_k = softmax(f(x * s(up(A_k))))_c, and the map is relu(sum_k a_k A_k), as for every class
map. No gradient is taken: C forward passes per image, `batch_size` masked images at a time.

    maps = ScoreCAM(model, "fire9_concat", batch_size=32)(images, class_ids=None)   # (N, 1, H, W)
"""

import tensorflow as tf

from lib.methods.channel_perturbation import ChannelPerturbation


class ScoreCAM(ChannelPerturbation):
    """Score-CAM class maps: channels weighted by the class probability of the image they mask.

    The masks are made chunk by chunk, each once, so memory is bounded by `batch_size` images. A
    constant channel gives a zero mask (an all-black image). For a callable `class_ids` the weight is
    the callable's score on the masked image's logits instead of a probability.

    Args:
        model: a functional or Sequential Keras model; a final softmax is skipped, then applied to the
            logits of the masked images.
        layer: name or object of a layer with (N, h, w, C) output; None picks the last such layer.
        batch_size: masked images per forward pass (default 32).

    Raises:
        InputError: if `batch_size` is not a positive int.
        LayerError: for an unknown or non-spatial layer.
    """

    def _perturbation(self, x, activations, values):
        (height, width), (h, w) = x.shape[1:3], activations.shape[1:3]
        rows, cols = interpolation(h, height), interpolation(w, width)  # (H, h), (W, w)
        by_channel, steps = tf.transpose(activations, [0, 3, 1, 2]), self._base + self._head  # (N, C, h, w)

        def run(images, channels):  # (m,), (s,) -> logits (m * s, classes)
            low_res = tf.gather(tf.gather(by_channel, images), channels, axis=1)  # (m, s, h, w)
            masks = tf.matmul(tf.matmul(rows[None], tf.reshape(low_res, (-1, h, w))), cols, transpose_b=True)
            low = tf.reduce_min(masks, axis=(1, 2), keepdims=True)  # (m * s, 1, 1)
            scale = tf.math.divide_no_nan(1.0, tf.reduce_max(masks, axis=(1, 2), keepdims=True) - low)
            masks = tf.reshape((masks - low) * scale, (-1, channels.shape[0], height, width, 1))  # in [0, 1]
            masked = tf.gather(x, images)[:, None] * masks  # (m, s, H, W, 3): images broadcast, not copied
            masked = tf.reshape(masked, (-1, height, width, x.shape[-1]))  # (m * s, H, W, 3)
            return self.graph.run(steps, {self.graph.input_key: masked}, check=False)[self.graph.logits_key]

        return run

    def _class_scores(self, logits):
        return tf.nn.softmax(logits, axis=-1)

    def _weights(self, perturbed, clean):
        return perturbed


def interpolation(size_in, size_out):
    """The (size_out, size_in) matrix of `tf.image.resize`'s bilinear weights along one axis.

    Bilinear resizing is separable and linear, so resize(a) = rows @ a @ cols.T for a (h, w) map;
    two small matrix products run about 4x faster than `tf.image.resize` on a chunk of 32 masks.
    Column i is the resize of the unit vector e_i.
    """
    basis = tf.reshape(tf.eye(size_in), (size_in, size_in, 1, 1))  # image i: e_i as (size_in, 1, 1)
    return tf.transpose(tf.image.resize(basis, (size_out, 1), method="bilinear")[:, :, 0, 0])
