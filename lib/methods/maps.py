"""Post-processing shared by the class-map methods (`class_map.ClassMap`): one pipeline, so they agree."""

import tensorflow as tf


def class_maps(activations, weights, size):
    """Weighted sums of a layer's channels, rectified, resized and scaled to [0, 1].

    Args:
        activations: float (N, h, w, C), the layer's output.
        weights: float (N, K, C), one weight per channel for each of K targets, or (N, K, h, w, C),
            one weight per position and channel.
        size: (H, W) to resize to, usually the input size.

    Returns:
        float32 (N, K, H, W) in [0, 1]; a map with no positive value stays all zero.
    """
    pattern = "nhwc,nkc->nkhw" if weights.shape.rank == 3 else "nhwc,nkhwc->nkhw"
    maps = tf.einsum(pattern, activations, weights)  # (N, K, h, w)
    return scale_maps(resize_maps(tf.nn.relu(maps), size))


def resize_maps(maps, size):
    """Bilinear resize of (N, K, h, w) maps to (N, K, H, W)."""
    shape = tf.shape(maps)
    flat = tf.reshape(maps, tf.concat([[-1], shape[2:], [1]], axis=0))  # (N * K, h, w, 1)
    flat = tf.image.resize(flat, size, method="bilinear")
    return tf.reshape(flat, tf.concat([shape[:2], size], axis=0))


def scale_maps(maps):
    """Divide each (H, W) map by its maximum; all-zero maps stay zero instead of becoming NaN."""
    peak = tf.reduce_max(maps, axis=(2, 3), keepdims=True)  # (N, K, 1, 1), never over axis 0
    return tf.math.divide_no_nan(maps, peak)
