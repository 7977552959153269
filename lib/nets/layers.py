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
