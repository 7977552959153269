"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020, https://arxiv.org/abs/2008.00299).

Class-agnostic: the projection of a layer's activations on their first principal direction. With the
activations of one image as a matrix A (h*w positions x C channels) and its singular value
decomposition A = U S V^T, the map is A v_1, the first right-singular vector v_1 being the channel
weights. The sign of a singular vector is arbitrary; it is chosen so that the map agrees with the mean
activation (sum_ij (A v_1)_ij >= 0). As in the paper, A is not centred. No gradient is computed, so
every target of an image gets the same map.

v_1 comes from power iteration on A^T A rather than a full SVD: on SqueezeNet's fire9_concat (169 x
512) TensorFlow's CPU SVD costs as much as the forward pass, the iteration a tenth of it. Each
iteration shrinks the error by (s_2 / s_1)^2; on the 13 photos s_2 / s_1 is 0.45-0.87 and 10-43
iterations reach 1e-7.
"""

import tensorflow as tf

from lib.methods.class_map import ClassMap

TOLERANCE = 1e-6  # the largest change of v_1's entries at which the iteration stops
MAX_ITERATIONS = 1000  # reached only when s_2 / s_1 > 0.99, where v_1 is barely defined anyway


class EigenCAM(ClassMap):
    """Eigen-CAM maps, (N, K, H, W) in [0, 1], the same for every class; arguments as for `GradCAM`."""

    needs_gradients = False

    def channel_weights(self, activations, gradients):
        """The first right-singular vector of each image's (h*w, C) activations, signed (N, 1, C)."""
        shape = tf.shape(activations)
        matrix = tf.reshape(activations, [shape[0], -1, activations.shape[-1]])  # (N, h*w, C)
        first = first_right_singular_vectors(matrix)  # (N, C)
        agreement = tf.reduce_sum(tf.linalg.matvec(matrix, first), axis=1, keepdims=True)  # (N, 1)
        sign = tf.where(agreement < 0, -1.0, 1.0)
        return (first * tf.cast(sign, first.dtype))[:, None, :]


def first_right_singular_vectors(matrix):
    """v_1 (N, C) of each (P, C) matrix, by power iteration on A^T A, up to sign.

    It starts from the column sums of |A|, a positive vector that overlaps v_1 unless v_1 is
    orthogonal to it (for the non-negative activations after a ReLU, v_1 itself is non-negative), and
    runs until no entry changes by more than `TOLERANCE`. An all-zero matrix gives a zero vector.
    """

    def normalised(v):
        return tf.math.divide_no_nan(v, tf.norm(v, axis=-1, keepdims=True))

    def body(i, v, _):
        w = normalised(tf.linalg.matvec(matrix, tf.linalg.matvec(matrix, v), transpose_a=True))
        return i + 1, w, tf.reduce_max(tf.abs(w - v))

    def running(i, v, change):
        return (i < MAX_ITERATIONS) & (change > TOLERANCE)

    start = normalised(tf.reduce_sum(tf.abs(matrix), axis=1))
    _, first, _ = tf.while_loop(running, body, (0, start, tf.constant(float("inf"), matrix.dtype)))
    return first
