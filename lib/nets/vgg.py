"""VGG19 (Simonyan & Zisserman 2015) with the layer names of the original collection.

Reference: "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015.
The same builder makes the narrow, global-average-pooling variants the project trains itself
(`lib.nets.bundled`), so every VGG-style model here shares one architecture definition.
"""

import os
from collections.abc import Iterable, Sequence

import keras

from lib.nets.layers import CaffePreprocess, conv_relu

VGG19_WIDTHS = (64, 128, 256, 512, 512)
VGG19_CONVS_PER_BLOCK = (2, 2, 4, 4, 4)


def vgg19(
    weights: str | os.PathLike | None = None,
    include_top: bool = True,
    classes: int = 1000,
    input_shape: tuple[int | None, int | None, int] | None = None,
    classifier_activation: str | None = None,
    *,
    widths: Sequence[int] = VGG19_WIDTHS,
    convs_per_block: Sequence[int] = VGG19_CONVS_PER_BLOCK,
    top: str = "fc",
    fc_width: int = 4096,
    batch_norm: bool = False,
    skip_weights: Iterable[str] = (),
    name: str = "vgg19",
) -> keras.Model:
    """Builds VGG19 taking RGB images in 0-255 and doing the Caffe preprocessing inside.

    Layers are named `conv1_1 .. conv5_4` (3x3 convolutions with fused ReLU), `pool1 .. pool5`,
    and, with the top, `fc6, fc7, fc8`. With the defaults the model has exactly the 143,667,240
    parameters of `keras.applications.VGG19`.

    Args:
        weights: `None` (random), `"imagenet"` (Keras's download and cache), or a path to a
            tensorflow-vgg `vgg19.npy` or a Keras weights file (`.weights.h5` or legacy `.h5`).
        include_top: add the classifier (`top`). Without it, and with `input_shape=None`, the
            model accepts images of any size (fully convolutional, as the original ran it).
        classes: number of output classes.
        input_shape: `(H, W, 3)`; defaults to `(224, 224, 3)` for the `"fc"` top, else any size.
        classifier_activation: `None` for logits (what visualizations explain) or e.g. `"softmax"`.
        widths: channels of the convolutions of each block; fewer entries build fewer blocks.
        convs_per_block: number of convolutions in each block, same length as `widths`.
        top: `"fc"` for VGG's flatten + fc6 + fc7 + fc8, or `"gap"` for global average pooling
            straight into the `fc8` classifier; `"gap"` drops the last block's pooling to keep a
            finer last feature map, as Zhou et al. (CVPR'16) did for CAM.
        fc_width: units of fc6 and fc7 (the `"fc"` top only).
        batch_norm: normalise every convolution before its ReLU (`conv1_1`, `conv1_1_bn`,
            `conv1_1_relu`), to train from scratch; see `lib.nets.layers.fold_batch_norm`.
        skip_weights: layers to leave at random when loading `weights`, named explicitly (e.g.
            the classifier, to fine-tune on other classes); partial loading is never silent.
        name: model name.

    Returns:
        A functional `keras.Model` mapping `(N, H, W, 3)` RGB 0-255 images to `(N, classes)` scores,
        or to the last feature map `(N, h, w, widths[-1])` without the top.

    Raises:
        ValueError: `widths` and `convs_per_block` differ in length, or `top` is unknown.
        lib.errors.WeightsError, lib.errors.MissingFileError: the weights cannot be loaded.
    """
    if len(widths) != len(convs_per_block):
        raise ValueError(f"widths {widths} and convs_per_block {convs_per_block} must have the same length")
    if top not in ("fc", "gap"):
        raise ValueError(f"top={top!r} is not one of 'fc', 'gap'")
    if input_shape is None:
        input_shape = (224, 224, 3) if include_top and top == "fc" else (None, None, 3)

    images = keras.Input(shape=input_shape, name="images")
    x = CaffePreprocess(name="preprocess")(images)
    for block, (width, num_convs) in enumerate(zip(widths, convs_per_block, strict=True), start=1):
        for i in range(1, num_convs + 1):
            x = conv_relu(x, width, 3, f"conv{block}_{i}", batch_norm=batch_norm)
        if not (include_top and top == "gap" and block == len(widths)):
            x = keras.layers.MaxPooling2D(2, strides=2, name=f"pool{block}")(x)

    if include_top:
        if top == "fc":
            x = keras.layers.Flatten(name="flatten")(x)
            x = keras.layers.Dense(fc_width, activation="relu", name="fc6")(x)
            x = keras.layers.Dense(fc_width, activation="relu", name="fc7")(x)
        else:
            x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="fc8")(x)

    model = keras.Model(images, x, name=name)
    if weights is not None:
        from lib.nets.weights import load_vgg19_weights

        load_vgg19_weights(model, weights, skip_weights=skip_weights)
    return model
