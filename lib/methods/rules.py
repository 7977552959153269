"""Gradient rules at ReLUs: guided backpropagation and the deconvnet, applied while running a graph.

Both rules change only the backward pass of the ReLU family; the forward values stay exact. With g
the gradient arriving from above, x the activation's input and f'(x) its local slope:

    normal   g * f'(x)
    guided   relu(g) * f'(x)    (Springenberg et al. 2014: positive g, where the input was "on")
    deconv   relu(g)            (Zeiler & Fergus 2014: rectify the signal, ignore the forward pass)
    redirected  g * f'(x) for an image where that is not all zero; else g, except where x <= 0 and
             g > 0 (the redirected ReLU gradient of the Lucid library, for optimising images: a
             unit that is off for the whole image still gets the gradient that would turn it on)

The ReLU family is `relu`, `relu6` and `leaky_relu`, whether fused in a layer (`Conv2D(...,
activation="relu")`, `Dense`, ...), as `Activation`, `ReLU`, `LeakyReLU` layers, or as `keras.ops`
calls. For ReLU6, f'(x) = 1 on 0 < x < 6, so guided passes g only where g > 0 and 0 < x < 6. For
leaky ReLUs we keep the same formulas: guided passes the positive g scaled by the slope (alpha where
x < 0), which reduces to the ReLU rule for alpha = 0. Other nonlinearities (GELU, swish, ELU,
PReLU, ...) keep their normal gradient; `Rules` warns about them, and about ReLU sublayers inside
custom (subclassed) layers, which it cannot reach. A ReLU written as a plain TensorFlow call inside a
custom layer's `call` cannot be seen at all.

Rules are applied by running the flattened graph with `Rules.call`, so the user's model is never
modified: the runner gives each ReLU a custom-gradient op instead of cloning layers with weights.
"""

import warnings

import keras
import tensorflow as tf

from lib.errors import LayerError
from lib.methods import keras_internals as internals
from lib.methods.graph import activation_name, call_op, user_stacklevel

RELU_NAMES = ("relu", "relu6", "leaky_relu")
RELU_OPS = ("relu", "relu6", "leakyrelu")  # keras.ops.relu & co. called on symbolic tensors
OTHER_NONLINEAR = ("elu", "selu", "gelu", "silu", "swish", "mish", "hard_silu", "hard_swish")
RULES = ("normal", "guided", "deconv", "redirected")


@tf.custom_gradient
def _positive_gradient(y):
    """Identity whose backward pass keeps only the positive part of the gradient."""
    return tf.identity(y), lambda g: tf.nn.relu(g)


def _rectified(activation, x):
    """`activation(x)` whose backward pass is relu(g), whatever the forward input was."""

    @tf.custom_gradient
    def fn(x):
        return activation(x), lambda g: tf.nn.relu(g)

    return fn(x)


def _redirected(activation, x):
    """`activation(x)` (ReLU or ReLU6) with the "redirected" backward pass of the module docstring."""

    @tf.custom_gradient
    def fn(x):
        y = activation(x)

        def gradient(g):
            normal = g * tf.cast((x > 0) & tf.equal(y, x), g.dtype)  # f'(x): 1 where y = x > 0
            redirected = tf.where((x <= 0) & (g > 0), tf.zeros_like(g), g)
            alive = tf.reduce_any(tf.not_equal(normal, 0), axis=tuple(range(1, g.shape.rank)), keepdims=True)
            return tf.where(alive, normal, redirected)

        return y, gradient

    return fn(x)


def _is_plain_relu(op):
    """True for ReLU and ReLU6 (not leaky, no threshold), whose slope is 1 exactly where y = x > 0."""
    if isinstance(op, keras.layers.LeakyReLU):
        return False
    if isinstance(op, keras.layers.ReLU):
        return not op.negative_slope and not op.threshold
    return (activation_name(op) or internals.op_name(op)) in ("relu", "relu6")


def relu_kind(op):
    """'standalone' for a ReLU-family layer or op, 'fused' for a fused ReLU activation, else None."""
    is_layer = isinstance(op, keras.layers.Layer)
    if isinstance(op, (keras.layers.ReLU, keras.layers.LeakyReLU)) or (
        not is_layer and internals.op_name(op) in RELU_OPS
    ):
        return "standalone"
    if activation_name(op) in RELU_NAMES:
        return "standalone" if isinstance(op, keras.layers.Activation) else "fused"
    return None


class Rules:
    """A gradient rule for the ReLUs among some steps of a `ModelGraph`.

    Args:
        rule: "normal", "guided", "deconv" or "redirected".
        steps: the steps this rule will run; their ReLUs are found once, here.

    Attributes:
        relus: names of the steps whose backward pass the rule changes.

    Raises:
        LayerError: for "guided" or "deconv" if the steps contain no ReLU, since the result would
            silently be the plain gradient.
    """

    def __init__(self, rule, steps):
        if rule not in RULES:
            raise ValueError(f"rule={rule!r}; use one of {', '.join(RULES)}")
        self.rule = rule
        # leaky ReLUs are never off: under "redirected" they keep their normal gradient
        plain = _is_plain_relu if rule == "redirected" else (lambda op: True)
        self._kinds = {} if rule == "normal" else {id(s): relu_kind(s.op) for s in steps if plain(s.op)}
        self._views = {
            id(s): internals.without_activation(s.op)
            for s in steps
            if rule in ("deconv", "redirected") and self._kinds.get(id(s)) == "fused"
        }
        self.relus = [s.name for s in steps if self._kinds.get(id(s))]
        if rule in ("guided", "deconv"):  # a model without ReLUs simply has nothing to redirect
            self._check(steps)

    def _check(self, steps):
        if not self.relus:
            raise LayerError(
                f"no ReLU between the input and {steps[-1].name!r}; {self.rule} backpropagation would "
                "equal plain gradients, use plain gradients or a model with ReLUs"
            )
        other = [s.name for s in steps if _other_nonlinearity(s.op) or _hidden_relu(s.op)]
        if other:
            warnings.warn(
                f"{self.rule} rule applies to ReLUs only; normal gradients at {', '.join(other[:5])}"
                + (f" and {len(other) - 5} more" if len(other) > 5 else ""),
                stacklevel=user_stacklevel(),
            )

    def call(self, step, args, kwargs):
        """Run one step under this rule (the `call` argument of `ModelGraph.run`)."""
        kind = self._kinds.get(id(step))
        if kind is None:
            return call_op(step.op, args, kwargs)
        if self.rule == "guided":
            return _positive_gradient(call_op(step.op, args, kwargs))
        backward = _redirected if self.rule == "redirected" else _rectified
        if kind == "standalone":
            return backward(lambda x: call_op(step.op, (x, *args[1:]), kwargs), args[0])
        pre_activation = call_op(self._views[id(step)], args, kwargs)
        return backward(step.op.activation, pre_activation)


def _hidden_relu(op):
    """True for a custom layer with ReLU sublayers, which the graph runner cannot reach."""
    return any(relu_kind(layer) for layer in internals.sublayers(op))


def _other_nonlinearity(op):
    name = activation_name(op) or internals.op_name(op)
    return name in {n.replace("_", "") for n in OTHER_NONLINEAR} | set(OTHER_NONLINEAR) or isinstance(
        op, (keras.layers.PReLU, keras.layers.ELU)
    )
