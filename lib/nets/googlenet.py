"""BVLC GoogLeNet (Szegedy et al. 2014, Table 1) with the caffe-tensorflow layer names.

Reference: "Going Deeper with Convolutions", CVPR 2015. As in the BVLC Caffe model: local response
normalisation after the first two convolution stages, no auxiliary heads (inference only).
The same inception code builds the narrow variants the project trains itself (`lib.nets.bundled`).
"""

import os
from collections.abc import Iterable

import keras

from lib.nets.layers import CaffePreprocess, LocalResponseNorm, conv_relu

# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) for each inception block.
INCEPTION_BLOCKS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
# Max pooling (3x3, stride 2) that separates the inception stages.
STAGE_POOLS = {"4a": "pool3_3x3_s2", "5a": "pool4_3x3_s2"}


def inception(x, block, widths, batch_norm=False):
    """One inception module: four parallel branches concatenated on channels.

    Args:
        x: input tensor `(N, h, w, c)`.
        block: block id such as `"3a"`; layers are named `inception_3a_1x1` and so on.
        widths: `(#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)`.
        batch_norm: see `lib.nets.layers.conv_relu`.

    Returns:
        The `inception_<block>_output` tensor `(N, h, w, #1x1 + #3x3 + #5x5 + pool proj)`.
    """
    n1, n3_reduce, n3, n5_reduce, n5, pool_proj = widths
    prefix = f"inception_{block}"

    def conv(inputs, filters, kernel, suffix):
        return conv_relu(inputs, filters, kernel, f"{prefix}_{suffix}", batch_norm=batch_norm)

    branch1 = conv(x, n1, 1, "1x1")
    branch3 = conv(conv(x, n3_reduce, 1, "3x3_reduce"), n3, 3, "3x3")
    branch5 = conv(conv(x, n5_reduce, 1, "5x5_reduce"), n5, 5, "5x5")
    pooled = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{prefix}_pool")(x)
    branch_pool = conv(pooled, pool_proj, 1, "pool_proj")
    return keras.layers.Concatenate(name=f"{prefix}_output")([branch1, branch3, branch5, branch_pool])


def googlenet(
    weights: str | os.PathLike | None = None,
    include_top: bool = True,
    classes: int = 1000,
    input_shape: tuple[int | None, int | None, int] | None = None,
    classifier_activation: str | None = None,
    *,
    width: float = 1.0,
    last_block: str = "5b",
    batch_norm: bool = False,
    skip_weights: Iterable[str] = (),
    name: str = "googlenet",
) -> keras.Model:
    """Builds GoogLeNet taking RGB images in 0-255 and doing the Caffe preprocessing inside.

    Layers follow the caffe-tensorflow names: `conv1_7x7_s2, pool1_3x3_s2, pool1_norm1,
    conv2_3x3_reduce, conv2_3x3, conv2_norm2, pool2_3x3_s2, inception_3a_1x1 .. inception_5b_output,
    pool5_7x7_s1` (global average pooling) and `loss3_classifier`. With the defaults the model has
    exactly 6,998,552 parameters; for a 224x224 input `inception_3a_output` is 28x28x256 and
    `inception_5b_output` 7x7x1024.

    Args:
        weights: `None` (random) or a path to a caffe-tensorflow `googlenet.npy`.
        include_top: add global average pooling and the `loss3_classifier` layer.
        classes: number of output classes.
        input_shape: `(H, W, 3)`; defaults to `(224, 224, 3)` with the top, else any size.
        classifier_activation: `None` for logits or e.g. `"softmax"`.
        width: multiplier of every layer's channel count (1.0 is the published network).
        last_block: the last inception block kept (`"3a"` .. `"5b"`); the stage pooling before a
            dropped stage is dropped too, so the last feature map stays as fine as possible.
        skip_weights: layers to leave at random when loading `weights`, named explicitly (e.g.
            the classifier, to fine-tune on other classes); partial loading is never silent.
        name: model name.

    Returns:
        A functional `keras.Model` mapping `(N, H, W, 3)` RGB 0-255 images to `(N, classes)` scores,
        or to `inception_<last_block>_output` without the top.

    Raises:
        ValueError: unknown `last_block` or a non-positive `width`.
        lib.errors.WeightsError, lib.errors.MissingFileError: the weights cannot be loaded.
    """
    if last_block not in INCEPTION_BLOCKS:
        raise ValueError(f"last_block={last_block!r} is not one of {', '.join(INCEPTION_BLOCKS)}")
    if width <= 0:
        raise ValueError(f"width={width} must be positive")
    if input_shape is None:
        input_shape = (224, 224, 3) if include_top else (None, None, 3)

    def scaled(channels):
        return max(1, round(channels * width))

    images = keras.Input(shape=input_shape, name="images")
    x = CaffePreprocess(name="preprocess")(images)
    # Caffe pads the 7x7 stride-2 convolution by 3 on every side; 'same' would pad asymmetrically.
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = conv_relu(x, scaled(64), 7, "conv1_7x7_s2", strides=2, padding="valid", batch_norm=batch_norm)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_3x3_s2")(x)
    x = LocalResponseNorm(name="pool1_norm1")(x)
    x = conv_relu(x, scaled(64), 1, "conv2_3x3_reduce", batch_norm=batch_norm)
    x = conv_relu(x, scaled(192), 3, "conv2_3x3", batch_norm=batch_norm)
    x = LocalResponseNorm(name="conv2_norm2")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool2_3x3_s2")(x)
    for block, widths in INCEPTION_BLOCKS.items():
        if block in STAGE_POOLS:
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=STAGE_POOLS[block])(x)
        x = inception(x, block, [scaled(c) for c in widths], batch_norm=batch_norm)
        if block == last_block:
            break

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="pool5_7x7_s1")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="loss3_classifier")(x)

    model = keras.Model(images, x, name=name)
    if weights is not None:
        from lib.nets.weights import load_googlenet_weights

        load_googlenet_weights(model, weights, skip_weights=skip_weights)
    return model
