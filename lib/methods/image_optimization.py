"""The machinery feature visualization and inversion share: Adam on parameterised images, one compiled step.

A subclass of `ImageOptimization` says what to minimise, `loss(key, images, unit, *extra) -> (B,)`,
`key` saying what is optimised (the objectives, the layer), for the batch of images in the model's
input range (after the random transforms) and the same images in [0, 1] (before them, for the
priors). The step maps the parameters to images, transforms them,
asks the loss for its gradient through the project's one `GradientTape`, and applies Adam
(Kingma & Ba 2015), all in one `tf.function` traced once per batch shape; the optimiser state is
passed in and out as tensors, so nothing is left behind between calls. Randomness is stateless,
seeded by (seed, step): the same seed gives the same images.
"""

import functools
import math
import sys

import keras
import numpy as np
import tensorflow as tf

from lib.errors import InputError
from lib.methods.base import Explainer, Scores, activations_and_gradients
from lib.methods.parameterization import make_parameterization
from lib.methods.robustness import DISTILL_TRANSFORMS
from lib.methods.rules import Rules

ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8
PROGRESS_EVERY = 16  # steps between updates of the progress bar (each update waits for the step)


class ImageOptimization(Explainer):
    """Optimise a batch of images for `loss`; see the module docstring.

    The class attribute `redirect_steps` says for how many first steps the ReLUs pass the redirected
    gradient (`rules.Rules`, "redirected"); it costs a third of a step (it unfuses every
    convolution from its ReLU), so the later steps run with the normal gradient.

    Args:
        model: a functional or Sequential Keras model (nested models are fine); it is not changed.
        parameterization: "fourier" (decorrelated spectrum), "pixel", or a `parameterization` object.
        transforms: a `robustness.Transforms` drawn afresh at every step (`NO_TRANSFORMS` for none).
        learning_rate: Adam's step size in parameter space.
        anneal: lower the step size along a half cosine to 0 at the last step, which lets the
            images settle on a minimum (inversion) instead of moving about it (feature visualization).
        size: (H, W) of the images when the model's input shape leaves them open.
        value_range: (low, high) of the model's input; 0-255 RGB for the `lib.nets` builders.
    """

    redirect_steps = 0

    def __init__(
        self, model, parameterization="fourier", transforms=DISTILL_TRANSFORMS, learning_rate=0.05,
        anneal=False, size=None, value_range=(0.0, 255.0),
    ):  # fmt: skip
        super().__init__(model, needs_layer=False)
        self.size = _image_size(self.graph.input_shape, size)
        self.parameterization = make_parameterization(parameterization, self.size, value_range)
        self.transforms = transforms
        self.learning_rate, self.anneal = float(learning_rate), bool(anneal)
        self._redirected = Rules("redirected", self.graph.steps) if self.redirect_steps else None
        self._call = None  # the ReLU rule of the step being traced; None: the normal gradient

    def loss(self, key, images, unit, *extra):
        """Per-image loss (B,) to minimise for `key`; `images` in the input range, `unit` in [0, 1]."""
        raise NotImplementedError

    def optimize(self, key, batch, extra, steps, seed, progress):
        """Run `steps` compiled steps from seeded random parameters; return float32 (B, H, W, 3).

        Args:
            key: hashable description of what `loss` computes; one compiled step per key and shape.
            batch: B, the number of images.
            extra: tensors passed to `loss` after the images (e.g. the target features).
            steps: number of Adam steps.
            seed: int; the same seed gives the same images.
            progress: show a progress bar with the mean loss.
        """
        steps, seed = _positive(steps, "steps"), _seed(seed)
        steps_of = {redirect: self._step_function(key, redirect) for redirect in (True, False)}
        params = self.parameterization.random(batch, seed)
        first, second = tf.zeros_like(params), tf.zeros_like(params)
        bar = _progress_bar(steps) if progress else None
        for count in range(1, steps + 1):
            rate = tf.constant(self._rate(count, steps), tf.float32)
            step = steps_of[count <= self.redirect_steps]
            params, first, second, loss = step(
                params, first, second, tf.constant([seed, count]), rate, *extra
            )
            if bar is not None and (count % PROGRESS_EVERY == 0 or count == steps):
                bar.update(count, [("loss", float(tf.reduce_mean(loss)))])
        if not np.isfinite(loss.numpy()).all():
            raise InputError(
                "the optimisation reached NaN or Inf; lower the learning_rate, or check the model's weights"
            )
        return self.parameterization.to_image(params).numpy()

    def _rate(self, count, steps):
        """Adam's step size at step `count` of `steps` (1-based)."""
        if not self.anneal:
            return self.learning_rate
        return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * (count - 1) / steps))

    def _step_function(self, key, redirect):
        """The compiled step for `key`, with the redirected ReLU gradient or the normal one; made on use."""
        if (key, redirect) not in self._functions:
            step = functools.partial(self._step, key, redirect)
            self._functions[key, redirect] = tf.function(step, autograph=False)
        return self._functions[key, redirect]

    def _step(self, key, redirect, params, first, second, seed, rate, *extra):
        """One Adam step for the whole batch: (params, first moment, second moment, loss (B,))."""
        losses = {}

        def base(params):
            unit = self.parameterization.to_unit(params)
            low, high = self.parameterization.low, self.parameterization.high
            return unit, self.transforms(low + (high - low) * unit, seed)

        def head(unit, images):
            with self.graph.unchecked():  # the loss is checked after the last step instead
                self._call = self._redirected.call if redirect else None
                try:
                    losses["loss"] = self.loss(key, images, unit, *extra)
                finally:
                    self._call = None
            return Scores(for_input=losses["loss"][:, None])

        gradients = activations_and_gradients(params, base, head)[2]  # (B, 1, *parameter shape)
        params, first, second = _adam(params, first, second, gradients, tf.cast(seed[1], tf.float32), rate)
        return params, first, second, losses["loss"]

    def key_of(self, layer):
        """The graph key of `layer`'s output (a name or object; None for the logits)."""
        return self.graph.logits_key if layer is None else self.graph.find(layer).out_keys[0]

    def activations(self, images, layers):
        """The activations of `images` (B, H, W, 3) at each of `layers` (qualified names or `None`)."""
        keys = [self.key_of(name) for name in layers]
        needed = {id(s) for key in keys for s in self.graph.ancestors(self.graph.steps, key)}
        steps = [s for s in self.graph.steps if id(s) in needed]  # in graph order
        values = self.graph.run(steps, {self.graph.input_key: images}, self._call)
        return [values[key] for key in keys]


@tf.function(jit_compile=True, autograph=False)
def _adam(params, first, second, gradients, count, rate):
    """Adam's step `count` (1-based) with `gradients` (B, 1, ...); XLA fuses its 12 passes into one."""
    gradients = gradients[:, 0]
    beta1, beta2 = ADAM_BETAS
    first = beta1 * first + (1.0 - beta1) * gradients
    second = beta2 * second + (1.0 - beta2) * tf.square(gradients)
    rate = rate * tf.sqrt(1.0 - beta2**count) / (1.0 - beta1**count)
    return params - rate * first / (tf.sqrt(second) + ADAM_EPSILON), first, second


def _image_size(input_shape, size):
    """(H, W) from the model's input shape (N, H, W, C), or `size` where the model leaves it open."""
    if size is not None:
        return tuple(int(s) for s in size)
    if len(input_shape) != 4 or None in input_shape[1:3]:
        raise InputError(
            f"the model's input shape {input_shape} leaves the image size open; pass size=(H, W)"
        )
    return tuple(input_shape[1:3])


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**31:
        raise InputError(f"seed must be an int in 0 .. 2**31 - 1, got {seed!r}")
    return int(seed)


def _progress_bar(steps):
    """A `keras.utils.Progbar` over the steps, redrawn in place on a terminal, one line in logs."""
    return keras.utils.Progbar(steps, unit_name="step", verbose=1 if sys.stdout.isatty() else 2)
