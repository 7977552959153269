"""Network builders with their weight readers, the bundled shapes models, and the ImageNet classes.

    from lib.nets import bundled, decode_predictions, efficientnet_lite0, googlenet, squeezenet, vgg19

    model = squeezenet(weights="imagenet")      # or efficientnet_lite0: weights from registry packages
    model = vgg19(weights="vgg19.npy")          # or googlenet(weights=...): random without weights
    model = bundled.load("shapes_vgg")          # the project's small models, trained on generated shapes
    decode_predictions(model(images), top=3)    # ImageNet class names, offline

Every builder returns a functional `keras.Model` from RGB 0-255 images (preprocessing inside the model)
to logits. `googlenet` and `squeezenet` are also the names of their modules; as attributes of `lib.nets`
they are the builder functions, and the modules' other names import as usual
(`from lib.nets.googlenet import INCEPTION_BLOCKS`). Importing `lib.nets` imports Keras and TensorFlow.
"""

from lib.nets import bundled, imagenet
from lib.nets.efficientnet import efficientnet_lite0
from lib.nets.googlenet import googlenet
from lib.nets.imagenet import class_names, decode_predictions
from lib.nets.layers import CaffePreprocess, LocalResponseNorm
from lib.nets.squeezenet import squeezenet
from lib.nets.vgg import vgg19

__all__ = [
    "CaffePreprocess",
    "LocalResponseNorm",
    "bundled",
    "class_names",
    "decode_predictions",
    "efficientnet_lite0",
    "googlenet",
    "imagenet",
    "squeezenet",
    "vgg19",
]
