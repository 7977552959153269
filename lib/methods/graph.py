"""A Keras model as a flat list of layer calls that the methods can run, split and re-rule.

Keras 3 hides the layers of a nested model behind one call, so `keras.Model(model.inputs,
inner_layer.output)` fails for them. `ModelGraph` walks the functional graph once, expanding
nested functional and Sequential models in place, and records each layer call as a `Step`. The
methods then execute those steps on real tensors inside their own `tf.function`:

    graph = ModelGraph(model)
    key, name = graph.resolve("conv5_4")          # also finds layers inside nested models
    base, head = graph.split(key)                 # input -> layer, layer -> logits
    values = graph.run(base, {graph.input_key: x})

Running steps never calls a layer on symbolic tensors, so the user's model gains no nodes and is
never changed. A final softmax (a `Softmax` layer, `Activation("softmax")`, or a layer with a fused
softmax) is left out, so `graph.logits_key` holds the scores before it.
"""

import contextlib
import dataclasses
import os
import sys
import warnings

import keras
import tensorflow as tf

from lib.errors import InputError, LayerError
from lib.methods import keras_internals as internals
from lib.methods.finite import checked

# Layers whose outputs are finite whenever their inputs are: the NaN/Inf check of `ModelGraph.run`
# skips their outputs, since the inputs are checked where they are made (SqueezeNet's concatenations
# and poolings are 3% of its forward pass in sums).
FINITE_PRESERVING = tuple(
    getattr(keras.layers, name)
    for name in (
        "Concatenate", "Cropping1D", "Cropping2D", "Cropping3D", "Dropout", "Flatten", "GlobalMaxPooling1D",
        "GlobalMaxPooling2D", "GlobalMaxPooling3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "Permute",
        "ReLU", "Reshape", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    )
)  # fmt: skip
SOFTMAX_NAMES = ("softmax", "log_softmax")  # as activations; `internals.op_name` drops the underscore
_METHODS_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel():
    """`stacklevel` for `warnings.warn` that points at the caller's first frame outside lib/methods."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_METHODS_DIR):
        frame, level = frame.f_back, level + 1
    return level


@dataclasses.dataclass(frozen=True)
class Step:
    """One call of a layer (or Keras operation) in the flattened graph.

    Attributes:
        op: the layer or operation, shared with the user's model.
        node: the Keras node of that call; its arguments say where the tensors go.
        arg_ids: ids of the node's symbolic input tensors, in `node.arguments` order.
        in_keys: keys of the values feeding the call, aligned with `arg_ids`.
        out_keys: keys of the values the call produces.
        name: the layer name, prefixed by nested model names ("inner/conv1").
        shapes: static output shapes, `None` for unknown sizes.
    """

    op: object
    node: object
    arg_ids: tuple
    in_keys: tuple
    out_keys: tuple
    name: str
    shapes: tuple


def check_model(model):
    """Refuse anything but a Keras 3 `keras.Model` (a layer, a tf.keras model, a file name...).

    Raises:
        InputError: naming what `model` is instead.
    """
    if not isinstance(model, keras.Model):
        package = type(model).__module__.split(".")[0]
        kind = type(model).__name__ if package == "builtins" else f"{package} {type(model).__name__}"
        raise InputError(
            f"model is a {kind}, not a keras.Model; pass a Keras 3 model, e.g. from lib.nets or "
            "keras.models.load_model(path)"
        )


def functional_graph(model):
    """`functional_of(model)`, or a one-line error that says what `model` is and how to fix it.

    Raises:
        InputError: `model` is not a Keras 3 `keras.Model`.
        LayerError: a subclassed model, or a Sequential model without an input shape.
    """
    check_model(model)
    fn = internals.functional_of(model)
    if fn is not None:
        return fn
    if isinstance(model, keras.Sequential):
        raise LayerError(
            f"Sequential model {model.name!r} has no input shape yet; start it with "
            "keras.Input((H, W, 3)) or call model.build((None, H, W, 3))"
        )
    raise LayerError(
        f"model {model.name!r} is a subclassed keras.Model ({type(model).__name__}), whose layers the "
        "methods cannot reach: they need a functional graph; rebuild it with inputs = keras.Input((H, W, 3)) "
        "and keras.Model(inputs, model.call(inputs))"
    )


def activation_name(op):
    """Name of the activation a layer applies ('relu', 'softmax', ...), or '' if none."""
    act = getattr(op, "activation", None)
    return getattr(act, "__name__", "") if callable(act) else ""


def call_op(op, args, kwargs):
    """Call a layer in inference mode, as `Functional.call(training=False)` would.

    A plain `Dense` layer on a (N, features) input runs as `dense`, whose gradient to the input is
    the same but several times faster on big layers (VGG's fc6).
    """
    if is_plain_dense(op, args):
        return dense(op, args[0])
    if internals.accepts_training(op):
        kwargs = {**kwargs, "training": False}
    return op(*args, **kwargs)


def is_plain_dense(op, args):
    """True for a float32 `keras.layers.Dense` (not a subclass, no LoRA, not quantized) on (N, features)."""
    return (
        internals.is_plain_float_dense(op)
        and len(args) == 1
        and args[0].shape.rank == 2
        and args[0].dtype == tf.float32
    )


def dense(layer, x):
    """What `Dense.call` computes, with `matmul_fast_gradient` for the product."""
    y = matmul_fast_gradient(x, tf.convert_to_tensor(layer.kernel))
    if layer.bias is not None:
        y = tf.nn.bias_add(y, layer.bias)
    return y if layer.activation is None else layer.activation(y)


@tf.custom_gradient
def matmul_fast_gradient(x, kernel):
    """x @ kernel, whose gradient to x is computed as (kernel @ g^T)^T.

    TensorFlow's own gradient, g @ kernel^T (MatMul with transpose_b), runs 3-4 times slower on CPU
    for a 25088x4096 kernel and a batch of 8 (260 ms against 64 ms here); for a single row both
    take the same time. The values are the same products, summed in another order.
    """

    def gradient(g):
        return tf.transpose(tf.matmul(kernel, g, transpose_b=True)), tf.matmul(x, g, transpose_a=True)

    return tf.matmul(x, kernel), gradient


class ModelGraph:
    """The flattened graph of a single-input, single-output Keras model.

    Args:
        model: a functional or Sequential `keras.Model` (nested models are expanded).

    Raises:
        InputError: if `model` is not a `keras.Model`.
        LayerError: if the model is subclassed, unbuilt, or has several inputs or outputs.
    """

    def __init__(self, model):
        fn = functional_graph(model)
        if len(fn.inputs) != 1 or len(fn.outputs) != 1:
            raise LayerError(
                f"model {model.name!r} has {len(fn.inputs)} inputs and {len(fn.outputs)} outputs; "
                "pass a model with one image input and one output"
            )
        self.model = model
        self.input_shape = tuple(fn.inputs[0].shape)
        self.steps = []
        self._nested = {}  # qualified name of a nested model -> (model, key of its one output)
        self._next_key = 0
        self.input_key = self._new_key()
        (self.output_key,) = self._expand(fn, [self.input_key], "")
        self.logits_key, self.softmax = self._strip_softmax(self.output_key)
        self.logits_shape = self.shape_of(self.logits_key)
        self._checking = True

    def _new_key(self):
        self._next_key += 1
        return self._next_key

    def _expand(self, fn, in_keys, prefix):
        """Append `fn`'s layer calls to `self.steps`, nested models in place; return its output keys."""
        keys = {id(t): k for t, k in zip(fn.inputs, in_keys, strict=True)}
        nodes = internals.nodes_by_depth(fn)
        for depth in sorted(nodes, reverse=True):
            for node in nodes[depth]:
                if node.is_input:
                    continue
                ids = tuple(id(t) for t in internals.node_input_tensors(node))
                ins = tuple(keys[i] for i in ids)
                inner = internals.functional_of(node.operation)
                if inner is not None and len(inner.inputs) == len(ins):
                    name = f"{prefix}{node.operation.name}"
                    outs = self._expand(inner, ins, name + "/")
                    if len(outs) == 1:
                        self._nested[name] = (node.operation, outs[0])
                else:
                    outs = [self._new_key() for _ in node.outputs]
                    shapes = tuple(tuple(t.shape) for t in node.outputs)
                    name = prefix + node.operation.name
                    self.steps.append(Step(node.operation, node, ids, ins, tuple(outs), name, shapes))
                keys.update({id(t): k for t, k in zip(node.outputs, outs, strict=True)})
        return [keys[id(t)] for t in fn.outputs]

    def producer(self, key):
        """The step that produces `key`, or None for the input."""
        return next((s for s in self.steps if key in s.out_keys), None)

    def shape_of(self, key):
        """Static shape of the value under `key`."""
        step = self.producer(key)
        return self.input_shape if step is None else step.shapes[step.out_keys.index(key)]

    def _strip_softmax(self, key):
        step = self.producer(key)
        if step is None:
            return key, None
        is_op = internals.op_name(step.op) in {n.replace("_", "") for n in SOFTMAX_NAMES}  # keras.ops
        if (
            isinstance(step.op, keras.layers.Softmax)
            or is_op
            or (isinstance(step.op, keras.layers.Activation) and activation_name(step.op) in SOFTMAX_NAMES)
        ):
            self.steps.remove(step)
            return step.in_keys[0], step.name
        if activation_name(step.op) in SOFTMAX_NAMES:
            view = internals.without_activation(step.op)
            self.steps[self.steps.index(step)] = dataclasses.replace(step, op=view)
            return key, step.name
        return key, None

    def spatial_names(self):
        """Names of the layers with a (N, h, w, C) output, in graph order."""
        return [s.name for s in self.steps if len(s.shapes) == 1 and len(s.shapes[0]) == 4]

    def find(self, layer, kind=None):
        """The one step that calls `layer`: the project's one way to find a layer.

        Args:
            layer: a layer name (qualified "inner/conv" or plain if unique) or a layer object; a
                nested model's name or object stands for the step that gives its output.
            kind: a layer class the step's layer must be an instance of, or None.

        Raises:
            LayerError: if the layer is unknown, called more than once, or not a `kind`; the
                message lists the layers that would do.
        """
        valid = (
            self.spatial_names() if kind is None else [s.name for s in self.steps if isinstance(s.op, kind)]
        )
        matches = self._matches(layer)
        if not matches:
            raise LayerError(f"no layer {_label(layer)} in the model; pick one of {_names(valid)}")
        if len(matches) > 1:
            names = _names([s.name for s in matches])
            raise LayerError(f"layer {_label(layer)} is called {len(matches)} times ({names}); pick one call")
        step = matches[0]
        if kind is not None and not isinstance(step.op, kind):
            raise LayerError(
                f"layer {step.name!r} is a {type(step.op).__name__}, not a {kind.__name__}; "
                f"pick one of {_names(valid)}"
            )
        return step

    def resolve(self, layer=None):
        """Key and qualified name of a spatial layer's output.

        Args:
            layer: as for `find`, or None for the last layer with a (N, h, w, C) output.

        Returns:
            (key, name) of that layer's output.

        Raises:
            LayerError: if the layer is unknown, called more than once, or not spatial.
        """
        spatial = self.spatial_names()
        if layer is None:
            if not spatial:
                raise LayerError(f"model {self.model.name!r} has no layer with a (N, h, w, C) output")
            warnings.warn(
                f"layer=None: using {spatial[-1]!r}, the last spatial layer", stacklevel=user_stacklevel()
            )
            return self._key_of(spatial[-1]), spatial[-1]
        step = self.find(layer)
        if step.name not in spatial:
            raise LayerError(
                f"layer {step.name!r} has output shape {step.shapes[0] if step.shapes else ()}, "
                f"no (N, h, w, C) axes; pick one of {_names(spatial)}"
            )
        return step.out_keys[0], step.name

    def _matches(self, layer):
        """The steps calling `layer`; for a nested model, the step that gives its output."""
        calls = [(s.name, s.op, s) for s in self.steps]
        calls += [(name, op, self.producer(key)) for name, (op, key) in self._nested.items()]
        if not isinstance(layer, str):
            return [step for _, op, step in calls if op is layer]
        exact = [step for name, _, step in calls if name == layer]
        return exact or [step for name, _, step in calls if name.rsplit("/", 1)[-1] == layer]

    def _key_of(self, name):
        return next(s.out_keys[0] for s in self.steps if s.name == name)

    def ancestors(self, steps, key):
        """The steps, in order, that the value under `key` depends on."""
        needed, chosen = {key}, []
        for step in reversed(steps):
            if needed.intersection(step.out_keys):
                needed.update(step.in_keys)
                chosen.append(step)
        return chosen[::-1]

    def split(self, key):
        """(base, head): the steps computing `key`, and the rest of the steps up to the logits.

        Raises:
            LayerError: if the logits do not depend on `key`.
        """
        needed = self.ancestors(self.steps, self.logits_key)
        base = self.ancestors(needed, key)
        head = [s for s in needed if s not in base]
        if not any(key in s.in_keys for s in head):
            name = self.producer(key).name if self.producer(key) else "input"
            raise LayerError(f"the output does not depend on layer {name!r}; pick a layer before it")
        return base, head

    @contextlib.contextmanager
    def unchecked(self):
        """Trace `run` without its NaN/Inf check inside this block.

        For images the weights' bounds prove cannot overflow (`bounds.PixelBound`, whole passes), and
        for the many perturbed copies of images whose clean pass was checked or bounded (the points
        of Integrated Gradients' path, SmoothGrad's noisy copies, Score-CAM's masked images, ...):
        the check costs 5-8% of a SqueezeNet forward pass. Methods wrapped inside run their own
        passes unchanged, and the maps are still checked at the end.
        """
        before, self._checking = self._checking, False
        try:
            yield
        finally:
            self._checking = before

    def run(self, steps, values, call=None):
        """Execute `steps` on real tensors, adding each output to a copy of `values`.

        Args:
            steps: steps in graph order whose inputs are in `values` or produced by earlier steps.
            values: dict key -> tensor, e.g. `{graph.input_key: images}`.
            call: `call(step, args, kwargs) -> outputs`; default runs the layer in inference mode.

        Returns:
            dict key -> tensor with every value computed; see `_finite_checked`.
        """
        values, produced = dict(values), []
        for step in steps:
            args, kwargs = internals.fill_node_arguments(
                step.node, {i: values[k] for i, k in zip(step.arg_ids, step.in_keys, strict=True)}
            )
            outs = keras.tree.flatten(call(step, args, kwargs) if call else call_op(step.op, args, kwargs))
            values.update(zip(step.out_keys, outs, strict=True))
            if not isinstance(step.op, FINITE_PRESERVING):
                produced += [key for key, out in zip(step.out_keys, outs, strict=True) if _is_float(out)]
        return _finite_checked(values, produced) if self._checking else values


def _is_float(tensor):
    return tensor.dtype.is_floating


def _finite_checked(values, keys):
    """`values`, after one NaN/Inf check of the layer outputs they hold under `keys`.

    Compiled, TensorFlow fuses convolution, bias and ReLU into one kernel that turns NaN into 0, so an
    overflow inside the network could end in a finite, meaningless map. The check is of the sum of the
    outputs' sums (but those of `FINITE_PRESERVING` layers): Inf or NaN anywhere, or values near
    float32's limit, make it non-finite. One reduction per layer costs far less than a
    `check_numerics` scan of every output. The check is a stateful op, so a compiled pass runs it
    whether or not its result is used.
    """
    if keys:
        checked(tf.add_n([tf.cast(tf.reduce_sum(values[key]), tf.float32) for key in keys]))
    return values


def _label(layer):
    return repr(layer) if isinstance(layer, str) else repr(getattr(layer, "name", layer))


def _names(names, limit=12):
    """'a, b, c .. y, z (40 more)': a readable list for one-line error messages."""
    if len(names) <= limit:
        return ", ".join(names) or "(none)"
    half = limit // 2
    return f"{', '.join(names[:half])} .. {', '.join(names[-half:])} ({len(names) - limit} more)"
