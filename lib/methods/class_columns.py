"""The scores of chosen classes through their own columns of the network's last linear layer.

Most CNNs end in a linear layer to the classes followed only by per-channel operations: a `Dense`
after global pooling (VGG, EfficientNet, ResNet) or a 1x1 convolution, ReLU and global average
pooling (SqueezeNet, Network-in-Network). The logit of class c then depends on column c of that
layer alone, so the K scores a method differentiates can be recomputed from the layer's input with
K columns instead of all of them:

    columns = ClassColumns.of(graph, head)          # None when the head does not end that way
    scores = columns.scores(values, class_ids)      # (N, K), equal to the logits at class_ids

The values are the logits at those classes (summed in another order), and their gradient costs K /
classes of that layer's backward pass. Automatic differentiation of the gathered logits cannot know
that the other 999 columns get a zero gradient: on SqueezeNet it runs conv10's backward pass in full
(512 -> 1000 channels on 13x13, a sixth of the network's work) for every target.
"""

import dataclasses

import keras
import tensorflow as tf

from lib.methods import keras_internals as internals
from lib.methods.graph import Step, activation_name

# Keras activations that act on each value alone (not softmax: it mixes the classes).
ELEMENTWISE = frozenset(
    {
        "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "mish", "sigmoid",
        "hard_sigmoid", "hard_silu", "hard_swish", "tanh", "softplus", "softsign", "exponential",
    }
)  # fmt: skip
# Layers that act on each channel alone whatever the number of channels (channels last).
PER_CHANNEL = (
    keras.layers.ReLU,
    keras.layers.Activation,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.Dropout,
)


@dataclasses.dataclass(frozen=True)
class ClassColumns:
    """The last linear step of a head and the per-channel steps between it and the logits.

    Attributes:
        graph: the `ModelGraph` the steps belong to.
        linear: the step of a plain `Dense` or 1x1 `Conv2D` whose output channels are the classes.
        tail: the per-channel steps from its output to the logits, in order.
    """

    graph: object
    linear: Step
    tail: tuple

    @classmethod
    def of(cls, graph, head):
        """The `ClassColumns` of `head` (steps from a layer to the logits), or None if it has none.

        None when the logits are not a plain linear layer followed by per-channel steps, or when
        that linear layer is not in `head` (a layer at or above it was chosen).
        """
        tail, key = [], graph.logits_key
        while (step := graph.producer(key)) in head:
            if len(step.in_keys) != 1 or len(step.out_keys) != 1:
                return None
            if _is_linear(step.op, len(graph.shape_of(step.in_keys[0]))):
                return cls(graph, step, tuple(tail[::-1]))
            if not _is_per_channel(step.op):
                return None
            tail.append(step)
            key = step.in_keys[0]
        return None

    def scores(self, values, class_ids):
        """Scores (N, K) of the classes `class_ids` (N, K), from the linear layer's input in `values`.

        The linear layer's input is (N, C) for a `Dense`, (N, h, w, C) for a 1x1 convolution.
        """
        op = self.linear.op
        x = values[self.linear.in_keys[0]]
        kernel = tf.convert_to_tensor(op.kernel)
        # (C, N, K): gathered where they lie, as transposing conv10's kernel first cost SqueezeNet 3%
        columns = tf.gather(tf.reshape(kernel, [-1, kernel.shape[-1]]), class_ids, axis=1)
        z = tf.einsum("n...c,cnk->n...k", x, columns)  # (N, K) or (N, h, w, K)
        if op.bias is not None:
            bias = tf.gather(tf.convert_to_tensor(op.bias), class_ids)  # (N, K)
            for _ in range(z.shape.rank - 2):
                bias = bias[:, None]  # (N, 1, 1, K) against (N, h, w, K)
            z += bias
        z = op.activation(z)
        return self.graph.run(self.tail, {self.linear.out_keys[0]: z})[self.graph.logits_key]


def _is_linear(op, input_rank):
    """A float32 `Dense` on (N, C) or a 1x1, stride-1 `Conv2D` (channels last), activation elementwise."""
    if activation_name(op) not in ELEMENTWISE:
        return False
    if internals.is_plain_float_dense(op):
        return input_rank == 2
    return (
        type(op) is keras.layers.Conv2D
        and tuple(op.kernel_size) == (1, 1)
        and tuple(op.strides) == (1, 1)
        and op.groups == 1
        and op.data_format == "channels_last"
        and op.compute_dtype == "float32"
        and getattr(op, "quantization_mode", None) is None
        and not getattr(op, "lora_enabled", False)
    )


def _is_per_channel(op):
    """A layer in `PER_CHANNEL` that keeps channels last, with an elementwise activation if any."""
    if not isinstance(op, PER_CHANNEL) or getattr(op, "data_format", "channels_last") != "channels_last":
        return False
    return not isinstance(op, keras.layers.Activation) or activation_name(op) in ELEMENTWISE
