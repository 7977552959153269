"""LayerCAM (Jiang et al., IEEE TIP 2021, https://doi.org/10.1109/TIP.2021.3089943).

Each position of each channel is weighed by its own positive gradient instead of the channel's mean,

    M = relu(sum_k relu(g^k) * A^k)

so that shallow layers, whose mean gradients cancel out, still give fine-grained maps.
"""

import tensorflow as tf

from lib.methods.class_map import ClassMap


class LayerCAM(ClassMap):
    """LayerCAM class maps, (N, K, H, W) in [0, 1]; arguments as for `GradCAM`; try shallow layers too."""

    def spatial_weights(self, activations, gradients):
        """relu(g) at every position and channel (N, K, h, w, C)."""
        return tf.nn.relu(gradients)
