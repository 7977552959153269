"""Gradient x Input (Shrikumar et al. 2016, https://arxiv.org/abs/1605.01713).

The plain gradient of a class score times the input, element by element: for a linear model (and
for a ReLU network in its local linear region, without biases) this is each pixel's exact share of
the score. It depends on the input's origin: our builders take RGB 0-255, so black pixels get 0.
"""

import tensorflow as tf

from lib.methods.input_gradient import InputGradient


class GradientTimesInput(InputGradient):
    """Gradient x Input attributions, (N, K, H, W, 3) in the images' pixel space; any Keras CNN."""

    def attribution(self, x, gradients):
        """gradient * x, for each of the K targets."""
        return gradients * tf.cast(x, gradients.dtype)[:, None]
