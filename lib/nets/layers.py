"""Small registered layers the builders need, so models clone and save without Python `Lambda` layers."""

import keras
import tensorflow as tf
from keras import ops

# ImageNet channel means in BGR order, as the Caffe models (VGG19, BVLC GoogLeNet) were trained with.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="cnnviz")
class CaffePreprocess(keras.layers.Layer):
    """RGB images in 0-255 -> BGR minus the channel means, inside the model.

    Doing this in the graph keeps every gradient in the user's RGB pixel space.

    Args:
        mean: per-channel means in BGR order.
    """

    def __init__(self, mean=CAFFE_BGR_MEAN, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)

    def call(self, images):
        bgr = ops.flip(images, axis=-1)
        return bgr - ops.convert_to_tensor(self.mean, dtype=bgr.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean}


@keras.saving.register_keras_serializable(package="cnnviz")
class LocalResponseNorm(keras.layers.Layer):
    """Caffe's across-channel local response normalisation (Krizhevsky et al. 2012).

    y = x / (k + alpha / size * sum_{window} x^2) ** beta, the window spanning `size` channels.
    Caffe divides alpha by the window size, which `tf.nn.local_response_normalization` does not.

    Args:
        size: number of channels in the window (odd).
        alpha: scale, as written in the Caffe prototxt.
        beta: exponent.
        k: additive constant.
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=1.0, **kwargs):
        super().__init__(**kwargs)
        self.size, self.alpha, self.beta, self.k = (
            int(size),
            float(alpha),
            float(beta),
            float(k),
        )

    def call(self, x):
        return tf.nn.local_response_normalization(
            x,
            depth_radius=self.size // 2,
            bias=self.k,
            alpha=self.alpha / self.size,
            beta=self.beta,
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = {
            "size": self.size,
            "alpha": self.alpha,
            "beta": self.beta,
            "k": self.k,
        }
        return {**super().get_config(), **config}


def conv_relu(
    x: keras.KerasTensor,
    filters: int,
    kernel: int | tuple[int, int],
    name: str,
    strides: int = 1,
    padding: str = "same",
    batch_norm: bool = False,
) -> keras.KerasTensor:
    """A convolution with ReLU named `name`, the unit both builders are made of.

    With `batch_norm`, the layers are `name` (convolution, no bias), `name_bn` and `name_relu`:
    the variant that trains from scratch; `fold_batch_norm` turns it back into the plain one.
    """
    if not batch_norm:
        conv = keras.layers.Conv2D(
            filters, kernel, strides=strides, padding=padding, activation="relu", name=name
        )
        return conv(x)
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def fold_batch_norm(trained: keras.Model, plain: keras.Model) -> None:
    """Copies a `batch_norm=True` model's weights into the same architecture built without it.

    Inference-time batch normalisation is a per-channel affine map, so it folds exactly into the
    preceding convolution: W' = W * s, b' = beta - mean * s with s = gamma / sqrt(var + eps).

    Args:
        trained: model built with `batch_norm=True`.
        plain: the same builder call with `batch_norm=False`; its weights are overwritten.
    """
    trained_names = {layer.name for layer in trained.layers}
    for layer in plain.layers:
        if not layer.weights:
            continue
        source = trained.get_layer(layer.name)
        if f"{layer.name}_bn" not in trained_names:
            layer.set_weights(source.get_weights())
            continue
        norm = trained.get_layer(f"{layer.name}_bn")
        gamma, beta, mean, variance = (
            w.numpy() for w in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance)
        )
        scale = gamma / (variance + norm.epsilon) ** 0.5
        layer.set_weights([source.get_weights()[0] * scale, beta - mean * scale])
