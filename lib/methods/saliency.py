"""Saliency maps (Simonyan et al. 2014, https://arxiv.org/abs/1312.6034).

The plain gradient of a class score (the logit, before softmax) w.r.t. the input pixels: how much
each pixel's change would change the score, to first order. The paper shows its magnitude, the
largest |gradient| over the colour channels (`lib.plot.magnitude`); the raw signed gradient is returned.

    grads = Saliency(model)(images, class_ids=[281])    # (N, 1, H, W, 3)
"""

from lib.methods.input_gradient import InputGradient


class Saliency(InputGradient):
    """Plain gradients of the class scores w.r.t. the images, (N, K, H, W, 3); any Keras CNN."""
