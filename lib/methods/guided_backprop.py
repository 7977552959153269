"""Guided backpropagation (Springenberg et al. 2014, https://arxiv.org/abs/1412.6806).

The gradient of a class score (logits) w.r.t. the input pixels, where every ReLU passes back only
positive gradients and only where its forward input was positive. The rule is applied while running
the graph (see `lib.methods.rules`), never to the user's model.

    grads = GuidedBackprop(model)(images, class_ids=[281])    # (N, 1, H, W, 3)
"""

from lib.methods.input_gradient import InputGradient


class GuidedBackprop(InputGradient):
    """Guided-backpropagation gradients, (N, K, H, W, 3); the K classes of an image share one forward pass.

    Args:
        model: a functional or Sequential Keras model with ReLUs (fused, layers or nested).

    Raises:
        LayerError: if the model contains no ReLU (the result would silently be plain gradients).
    """

    rule = "guided"
