"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020, https://arxiv.org/abs/2008.00299).

Class-agnostic: the projection of a layer's activations on their first principal direction. With the
activations of one image as a matrix A (h*w positions x C channels) and its singular value
decomposition A = U S V^T, the map is A v_1, the first right-singular vector v_1 being the channel
weights. The sign of a singular vector is arbitrary; it is chosen so that the map agrees with the mean
activation (sum_ij (A v_1)_ij >= 0). As in the paper, A is not centred. No gradient is computed, so
every target of an image gets the same map.
"""

import tensorflow as tf

from lib.methods.class_map import ClassMap


class EigenCAM(ClassMap):
    """Eigen-CAM maps, (N, K, H, W) in [0, 1], the same for every class; arguments as for `GradCAM`."""

    needs_gradients = False

    def channel_weights(self, activations, gradients):
        """The first right-singular vector of each image's (h*w, C) activations, signed (N, 1, C)."""
        shape = tf.shape(activations)
        matrix = tf.reshape(activations, [shape[0], -1, activations.shape[-1]])  # (N, h*w, C)
        _, _, v = tf.linalg.svd(matrix)  # v: (N, C, min(h*w, C)), singular values in decreasing order
        first = v[:, :, 0]  # (N, C)
        agreement = tf.reduce_sum(tf.linalg.matvec(matrix, first), axis=1, keepdims=True)  # (N, 1)
        sign = tf.where(agreement < 0, -1.0, 1.0)
        return (first * tf.cast(sign, first.dtype))[:, None, :]
