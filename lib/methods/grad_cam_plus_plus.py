"""Grad-CAM++ (Chattopadhyay et al., WACV 2018, https://arxiv.org/abs/1710.11063).

Grad-CAM weighs every position of a channel equally; Grad-CAM++ weighs the positive gradients of each
position by alpha, chosen so that several instances of a class each get their share. With the score
S = exp(Y) of the logit Y, the higher derivatives of S are powers of the first gradient g = dY/dA,
and the paper's closed form is

    alpha_ij^k = g_ij^2 / (2 g_ij^2 + sum_ab A_ab^k g_ij^3)        (0 where g_ij = 0)
    w^k        = sum_ij alpha_ij^k relu(g_ij^k)

(the factor exp(Y) of dS/dA is the same for every channel, and the maps are scaled to [0, 1]).
"""

import tensorflow as tf

from lib.methods.class_map import ClassMap


class GradCAMPlusPlus(ClassMap):
    """Grad-CAM++ class maps, (N, K, H, W) in [0, 1]; arguments as for `GradCAM`."""

    def channel_weights(self, activations, gradients):
        """sum_ij alpha_ij relu(g_ij), with alpha from the powers 2 and 3 of the gradient (N, K, C)."""
        squared, cubed = tf.square(gradients), tf.pow(gradients, 3)
        mass = tf.reduce_sum(activations, axis=(1, 2))[:, None, None, None, :]  # (N, 1, 1, 1, C)
        alpha = tf.math.divide_no_nan(squared, 2 * squared + mass * cubed)  # 0 where g = 0
        return tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=(2, 3))
