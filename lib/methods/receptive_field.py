"""Receptive fields: which input pixels a unit of a layer can see.

Walking the layers between the input and the target layer, each axis keeps three numbers: `jump`
(input pixels between neighbouring units), `size` (pixels one unit sees) and `start` (first input
pixel of unit 0, negative where padding lies before the image). A layer with kernel k, stride s,
dilation d and padding p before the data gives

    size += (d * (k - 1)) * jump,   start -= p * jump,   jump *= s

with TensorFlow's "same" padding putting the smaller half before. Where branches meet (Add,
Concatenate) the fields are united. Global-context branches that end in a vector (squeeze-excitation)
are ignored, and layers that resample (UpSampling2D, Conv2DTranspose, Resizing) make the field the
whole image, with a warning.
"""

import dataclasses
import math
import warnings

import keras

from lib.methods.graph import user_stacklevel

RESAMPLING = (
    keras.layers.Conv2DTranspose,
    keras.layers.UpSampling2D,
    keras.layers.Resizing,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
)


@dataclasses.dataclass(frozen=True)
class Field:
    """Receptive-field geometry of a layer, per axis (rows, cols).

    Attributes:
        jump: input pixels between neighbouring units.
        size: height and width of one unit's field.
        start: input coordinate of the first pixel of unit (0, 0)'s field; may be negative.
        length: the layer's spatial size (h, w).
    """

    jump: tuple
    size: tuple
    start: tuple
    length: tuple

    def box(self, row, col):
        """(top, left, bottom, right) of unit (row, col)'s field, bottom/right exclusive, unclipped."""
        top = self.start[0] + row * self.jump[0]
        left = self.start[1] + col * self.jump[1]
        return top, left, top + self.size[0], left + self.size[1]


def _axis_conv(field, axis, kernel, stride, dilation, padding):
    """One axis of (jump, size, start, length) after a convolution or pooling."""
    jump, size, start, n = (v[axis] for v in (field.jump, field.size, field.start, field.length))
    span = dilation * (kernel - 1) + 1
    if padding == "same":
        out = math.ceil(n / stride)
        before = max((out - 1) * stride + span - n, 0) // 2
    else:
        out, before = (n - span) // stride + 1, 0
    return jump * stride, size + (span - 1) * jump, start - before * jump, out


def _through(op, field):
    """The field after `op`, or None if `op` changes the grid in a way we do not model."""
    if isinstance(op, RESAMPLING):
        return None
    kernel = getattr(op, "pool_size", None) or getattr(op, "kernel_size", None)
    if kernel is not None and len(kernel) == 2 and hasattr(op, "strides"):
        dilation = getattr(op, "dilation_rate", (1, 1))
        axes = [_axis_conv(field, a, kernel[a], op.strides[a], dilation[a], op.padding) for a in (0, 1)]
        return Field(*(tuple(v) for v in zip(*axes, strict=True)))
    if isinstance(op, (keras.layers.ZeroPadding2D, keras.layers.Cropping2D)):
        sign = 1 if isinstance(op, keras.layers.ZeroPadding2D) else -1
        pads = op.padding if sign == 1 else op.cropping  # ((top, bottom), (left, right))
        start = tuple(s - sign * p[0] * j for s, p, j in zip(field.start, pads, field.jump, strict=True))
        length = tuple(n + sign * sum(p) for n, p in zip(field.length, pads, strict=True))
        return dataclasses.replace(field, start=start, length=length)
    return field


def _unite(fields):
    """One field covering all of `fields` (branches meeting in Add, Concatenate, ...)."""
    start = tuple(min(f.start[a] for f in fields) for a in (0, 1))
    end = tuple(max(f.start[a] + f.size[a] for f in fields) for a in (0, 1))
    jump = tuple(max(f.jump[a] for f in fields) for a in (0, 1))
    size = tuple(e - s for s, e in zip(start, end, strict=True))
    return Field(jump, size, start, fields[0].length)


def receptive_field(graph, key, image_size):
    """Receptive-field geometry of the value under `key` of a `ModelGraph`.

    Args:
        graph: the `ModelGraph`.
        key: key of a spatial layer's output (e.g. from `graph.resolve`).
        image_size: (H, W) of the input images.

    Returns:
        `Field` of that layer.
    """
    size = tuple(int(v) for v in image_size)
    fields = {graph.input_key: Field((1, 1), (1, 1), (0, 0), size)}
    for step in graph.ancestors(graph.steps, key):
        inputs = [fields[k] for k in step.in_keys if k in fields]
        shape = step.shapes[0]
        if not inputs or len(step.out_keys) != 1 or len(shape) != 4:
            continue  # not on a spatial path
        field = _through(step.op, _unite(inputs))
        if field is None or any(
            s is not None and s != n for s, n in zip(shape[1:3], field.length, strict=True)
        ):
            warnings.warn(
                f"receptive field unknown after {step.name!r}; using the whole image",
                stacklevel=user_stacklevel(),
            )
            length = tuple(n or 1 for n in shape[1:3])
            jump = tuple(max(1, i // n) for i, n in zip(size, length, strict=True))
            field = Field(jump, size, (0, 0), length)
        fields[step.out_keys[0]] = field
    return fields[key]
