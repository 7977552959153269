"""HiResCAM (Draelos & Carin 2020, https://arxiv.org/abs/2011.08891).

The element-wise product of the gradient and the activations, summed over channels,

    M = relu(sum_k g^k * A^k)

is, unlike Grad-CAM's averaged gradient, faithful to the model: for a network that ends in global
average pooling and a dense layer it is exactly CAM (and Grad-CAM), and otherwise it shows the
locations that the score's first-order change depends on.
"""

from lib.methods.class_map import ClassMap


class HiResCAM(ClassMap):
    """HiResCAM class maps, (N, K, H, W) in [0, 1]; arguments as for `GradCAM`."""

    def spatial_weights(self, activations, gradients):
        """The gradient itself at every position and channel (N, K, h, w, C)."""
        return gradients
