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
        (height, width, depth), (h, w) = x.shape[1:], activations.shape[1:3]
        rows, cols = interpolation(h, height), interpolation(w, width)  # (H, h), (W, w)
        cols_rgb = tf.repeat(cols, depth, axis=0)  # (W * 3, w): the masks come out once per colour
        flat = tf.reshape(x, (-1, 1, height, width * depth))  # (N, 1, H, W * 3)
        by_channel, steps = tf.transpose(activations, [0, 3, 1, 2]), self._base + self._head  # (N, C, h, w)

        def run(images, channels):  # (m,), (s,) -> logits (m * s, classes)
            low_res = tf.reshape(tf.gather(tf.gather(by_channel, images), channels, axis=1), (-1, h, w))
            upsampled = tf.matmul(tf.matmul(rows[None], low_res), cols, transpose_b=True)  # (m * s, H, W)
            low = tf.reduce_min(upsampled, axis=(1, 2), keepdims=True)
            scale = tf.math.divide_no_nan(1.0, tf.reduce_max(upsampled, axis=(1, 2), keepdims=True) - low)
            # The bilinear weights of each pixel sum to 1, so upsampling (A - low) * scale gives the
            # min-max scaled mask; made again with each column repeated per colour, it multiplies the
            # images without a broadcast over the colour axis (twice as fast as masks[..., None] * x).
            masks = tf.matmul(tf.matmul(rows[None], (low_res - low) * scale), cols_rgb, transpose_b=True)
            masks = tf.reshape(masks, (-1, channels.shape[0], height, width * depth))  # (m, s, H, W * 3)
            masked = tf.reshape(
                tf.gather(flat, images) * masks, (-1, height, width, depth)
            )  # (m * s, H, W, 3)
            with self.graph.unchecked():  # the clean pass was checked, or bounded (`bounds`)
                return self.graph.run(steps, {self.graph.input_key: masked})[self.graph.logits_key]

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
