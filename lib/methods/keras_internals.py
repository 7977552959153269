"""Every private Keras access of the project, in one place, each with what it is for.

Keras 3 has no public API to walk a functional graph node by node, to run one node on new tensors,
or to tell a layer's own activation from its sublayers, so the graph runner reads a few private
attributes. They all go through this module, so that a Keras release that moves one breaks one
function here, and `test_keras_internals.py` names it. Each function says since which Keras version
the attribute exists (read in the Keras sources of each release); CI runs the method tests on the
lowest and the highest Keras that `pyproject.toml` allows (`test_keras_floor.py`).

Outside this module the runner reads only public names: `keras.tree` (public since Keras 3.2, while
`keras.src.tree` is private), and a node's `operation`, `outputs` and `is_input`, plain attributes of
every Keras 3 `Node` that `nodes_by_depth` returns.
"""

import inspect

import keras


def nodes_by_depth(functional):
    """`{depth: [Node]}` of a functional model, deepest (the inputs) first when sorted in reverse.

    `Functional._nodes_by_depth`, since Keras 3.0: the only record of the call order of the layers.
    """
    return functional._nodes_by_depth


def is_functional(op):
    """Whether `op` is a functional `keras.Model` (has a node graph), not a subclassed one."""
    return isinstance(op, keras.Model) and hasattr(op, "_nodes_by_depth")


def functional_of(op):
    """The functional graph inside `op` if it is a functional or a built Sequential model, else None.

    `Sequential._functional`, since Keras 3.0: a built Sequential model keeps its layers as a
    functional graph there, which is what the runner walks.
    """
    if isinstance(op, keras.Sequential):
        return getattr(op, "_functional", None)
    return op if is_functional(op) else None


def node_input_tensors(node):
    """The symbolic tensors a node was called on, in the order `fill_node_arguments` expects.

    `Node.arguments.keras_tensors`, since Keras 3.0.
    """
    return node.arguments.keras_tensors


def fill_node_arguments(node, tensors):
    """`(args, kwargs)` of a node's call with its symbolic inputs replaced by real tensors.

    Args:
        node: a Keras node.
        tensors: `{id(symbolic tensor): real tensor}` for every tensor of `node_input_tensors(node)`.

    `Node.arguments.fill_in`, since Keras 3.0: it keeps the call's non-tensor arguments (axis,
    constants) exactly as the model was built with them.
    """
    return node.arguments.fill_in(tensors)


def accepts_training(op):
    """Whether calling `op` takes a `training` argument (dropout, batch norm, augmentation layers).

    Read from the signature of `op.call`, which every Keras 3 version has; `Layer._call_context_args`
    exists only since Keras 3.10 (absent in 3.9), so reading it would return nothing on older
    versions, `training=False` would not be passed and a `RandomFlip` inside the model would flip
    the images being explained.
    """
    if not isinstance(op, keras.layers.Layer):
        return False
    parameters = inspect.signature(op.call).parameters
    return "training" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def op_name(op):
    """Lower-case name of a `keras.ops` operation recorded in a graph, without underscores.

    Functional models record `keras.ops.softmax(x)` as an instance of an `Operation` subclass named
    after the op (`Softmax`, `LogSoftmax`, `Relu`); the class name is the only way to tell them
    apart (the same class names since Keras 3.0; the classes live in `keras.ops.nn` up to Keras 3.2,
    in `keras.src.ops.nn` since 3.3, so they are matched by name, not imported).
    """
    return type(op).__name__.lower().replace("_", "")


def sublayers(layer):
    """The layers inside a custom layer (not itself), e.g. to find ReLUs the runner cannot reach.

    `Layer._flatten_layers`, since Keras 3.0.
    """
    return list(layer._flatten_layers(include_self=False)) if isinstance(layer, keras.layers.Layer) else []


def without_activation(layer):
    """A view of `layer` that shares its variables and state but skips its fused activation.

    Used for logits below a fused softmax and for the pre-activation of fused ReLUs. The view is a
    shallow copy of the layer's `__dict__` with `activation` set to linear (bypassing Keras'
    attribute tracking), so the user's layer is untouched and later weight updates are seen.
    """
    view = object.__new__(type(layer))
    view.__dict__.update(layer.__dict__)
    object.__setattr__(view, "activation", keras.activations.linear)
    return view


def is_plain_float_dense(op):
    """True for a `keras.layers.Dense` itself (not a subclass), without LoRA or quantization, in float32."""
    return type(op) is keras.layers.Dense and is_plain_float(op)


def is_plain_float(op):
    """True for a layer without LoRA or quantization that computes in float32, so its `kernel` is one.

    `Dense.lora_enabled` exists since Keras 3.0.3 (with LoRA). Quantization (`Dense.quantize`) came in
    Keras 3.1 with the mode on the dtype policy, `dtype_policy.quantization_mode`; the layer property
    `quantization_mode` only in Keras 3.4. Both are read: on Keras 3.3 a quantized Dense has the
    first and not the second, and its int8 `kernel` must not be taken for a float32 matrix.
    """
    policy_mode = getattr(getattr(op, "dtype_policy", None), "quantization_mode", None)
    return (
        not getattr(op, "lora_enabled", False)
        and getattr(op, "quantization_mode", None) is None
        and policy_mode is None
        and op.compute_dtype == "float32"
    )


def cache_of(model):
    """A dict stored on `model` itself, for objects that must live exactly as long as the model.

    Written to the instance `__dict__`, bypassing Keras' attribute tracking (which would try to
    track the cached methods as sublayers). A method object refers to its model, so a
    `weakref.WeakKeyDictionary` would keep every model alive; a dict on the model is collected
    with it.
    """
    return model.__dict__.setdefault("_lib_methods_cache", {})
