"""XGrad-CAM (Fu et al., BMVC 2020, https://arxiv.org/abs/2008.02312).

Axiom-based Grad-CAM: the channel weight that best satisfies sensitivity and conservation is the
gradient averaged with the activations' own spatial distribution as weights,

    w^k = sum_ij A_ij^k g_ij^k / sum_ij A_ij^k                    (0 for a channel that is all zero)

which equals Grad-CAM's mean gradient when every position of a channel is equally active.
"""

import tensorflow as tf

from lib.methods.class_map import ClassMap


class XGradCAM(ClassMap):
    """XGrad-CAM class maps, (N, K, H, W) in [0, 1]; arguments as for `GradCAM`."""

    def channel_weights(self, activations, gradients):
        """sum(g * A) / sum(A) over the positions, per channel (N, K, C)."""
        weighted = tf.reduce_sum(gradients * activations[:, None], axis=(2, 3))  # (N, K, C)
        mass = tf.reduce_sum(activations, axis=(1, 2))[:, None, :]  # (N, 1, C)
        return tf.math.divide_no_nan(weighted, mass)
