"""Ablation-CAM (Desai & Ramaswamy, WACV 2020,
https://openaccess.thecvf.com/content_WACV_2020/html/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_Localization_WACV_2020_paper.html).

The weight of channel k of a layer for class c is the share of the class score y (the logit) lost
when that channel is set to zero, a_k = (y - y_k) / y, and the map is relu(sum_k a_k A_k), as for
every class map. No gradient is taken: one forward pass, then C passes of only the part of the
network above the layer per image, `batch_size` ablations at a time.

    maps = AblationCAM(model, "fire9_concat", batch_size=64)(images, class_ids=None)  # (N, 1, H, W)

The denominator is max(|y|, 1e-6) rather than y. For y > 0 that is the paper's weight. For y < 0
the paper's weight would flip the sign and highlight the channels that lower the score; with |y| a
channel whose removal lowers the score keeps a positive weight. Near y = 0 the weight stays finite.
The maps are scaled to peak 1, so they equal those of the plain drops y - y_k.
"""

import keras
import tensorflow as tf

from lib.methods.channel_perturbation import ChannelPerturbation

EPSILON = 1e-6  # smallest |y| divided by


class AblationCAM(ChannelPerturbation):
    """Ablation-CAM class maps: channels weighted by the score lost when each is zeroed.

    Only the head steps that depend on the layer run for the ablated copies. The other values they
    read (skip connections from below the layer, branches that bypass it) are taken from the clean
    pass and repeated for each copy.

    Args:
        model: a functional or Sequential Keras model; a final softmax is skipped, so y is a logit.
        layer: name or object of a layer with (N, h, w, C) output; None picks the last such layer.
        batch_size: ablated copies per pass of the head (default 64).

    Raises:
        InputError: if `batch_size` is not a positive int.
        LayerError: for an unknown or non-spatial layer.
    """

    def __init__(
        self, model: keras.Model, layer: str | keras.layers.Layer | None = None, batch_size: int = 64
    ):
        super().__init__(model, layer, batch_size)
        produced, self._ablated = {self.layer_key}, []
        for step in self._head:  # the steps downstream of the layer, in graph order
            if produced.intersection(step.in_keys):
                self._ablated.append(step)
                produced.update(step.out_keys)
        self._feeds = sorted({key for step in self._ablated for key in step.in_keys} - produced)

    def _perturbation(self, x, activations, values):
        height, width, channels = activations.shape[1:]

        def run(images, ablate):  # (m,), (s,) -> logits (m * s, classes)
            keep = 1 - tf.one_hot(ablate, channels, dtype=activations.dtype)  # (s, C)
            flat = tf.reshape(tf.gather(activations, images), (-1, 1, height * width, channels))
            ablated = flat * keep[None, :, None, :]  # (m, s, h * w, C); faster than a 5-d broadcast
            copies = ablate.shape[0]  # the other values the head reads, repeated for each copy
            feeds = {key: tf.repeat(tf.gather(values[key], images), copies, axis=0) for key in self._feeds}
            feeds[self.layer_key] = tf.reshape(ablated, (-1, *activations.shape[1:]))  # (m * s, h, w, C)
            with self.graph.unchecked():  # the clean pass was checked, or bounded (`bounds`)
                return self.graph.run(self._ablated, feeds)[self.graph.logits_key]

        return run

    def _weights(self, perturbed, clean):
        clean = clean[:, :, None]  # (N, K, 1)
        return (clean - perturbed) / tf.maximum(tf.abs(clean), EPSILON)
