"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020, https://arxiv.org/abs/2008.00299).

Class-agnostic: the projection of a layer's activations on their first principal direction. With the
activations of one image as a matrix A (h*w positions x C channels) and its singular value
decomposition A = U S V^T, the map is A v_1, the first right-singular vector v_1 being the channel
weights. The sign of a singular vector is arbitrary; it is chosen so that the map agrees with the mean
activation (sum_ij (A v_1)_ij >= 0). As in the paper, A is not centred. No gradient is computed, so
every target of an image gets the same map.

v_1 comes from power iteration on A^T A rather than a full SVD: on SqueezeNet's fire9_concat (169 x
512) TensorFlow's CPU SVD costs as much as the forward pass. Each iteration shrinks the error by
(s_2 / s_1)^2; on the 15 photos and on noise s_2 / s_1 is 0.45-0.95 and 9-140 iterations reach 1e-6
(18 on noise, under 30 on 13 photos). The iteration runs in NumPy inside the compiled pass
(`tf.numpy_function`): each of its steps is two matrix-vector products too small to share out, which
TensorFlow's CPU kernels dispatch to their thread pool at 40-100 us a step; NumPy's BLAS does a step
in 15-40 us, and the iteration went from 2.6 ms to 0.7 ms of a 12 ms forward pass.
"""

import numpy as np
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
        first = tf.numpy_function(_signed_first_vectors, [matrix], tf.float32, stateful=False)
        return tf.reshape(first, [shape[0], 1, activations.shape[-1]])


def _signed_first_vectors(matrices):
    """v_1 of each (P, C) matrix, signed so that A v_1 sums to >= 0, float32 (N, C)."""
    first = first_right_singular_vectors(matrices)
    sums = np.einsum("npc,nc->n", matrices, first)
    return np.where(sums[:, None] < 0, -first, first).astype(np.float32)


def first_right_singular_vectors(matrices):
    """v_1 (N, C) of each (P, C) matrix of `matrices` (N, P, C), by power iteration on A^T A, up to sign.

    It starts from the column sums of |A|, a positive vector that overlaps v_1 unless v_1 is
    orthogonal to it (for the non-negative activations after a ReLU, v_1 itself is non-negative), and
    runs until no entry changes by more than `TOLERANCE`. An all-zero matrix gives a zero vector.
    """
    return np.stack([_power_iteration(np.asarray(matrix, np.float32)) for matrix in matrices])


def _power_iteration(matrix):
    vector = _normalised(np.abs(matrix).sum(axis=0))
    for _ in range(MAX_ITERATIONS):
        following = _normalised(matrix.T @ (matrix @ vector))
        change = np.max(np.abs(following - vector))
        vector = following
        if change <= TOLERANCE:
            break
    return vector


def _normalised(vector):
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector
