"""The project's own small models, trained on `lib.dataflow.shapes` by `example/train_bundled.py`.

They are the embedded default: every example and test runs offline on them. Both end in global
average pooling and a dense classifier, so CAM applies to them directly, and both come from the
same builders as the full-size networks (`vgg19`, `googlenet`) with narrower arguments.
"""

from importlib import resources
from typing import TYPE_CHECKING

import keras

from lib.dataflow.shapes import CLASS_NAMES
from lib.errors import InputError, MissingFileError
from lib.nets.googlenet import googlenet
from lib.nets.vgg import vgg19

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# The weights files and their model cards, package data of `lib.nets` (`lib/nets/data/` in a checkout,
# where `example/train_bundled.py` writes them).
DATA_DIR = resources.files("lib.nets") / "data"
INPUT_SIZE = 64

# name -> (builder, keyword arguments); the architecture of each bundled model, written once.
ARCHITECTURES = {
    "shapes_vgg": (
        vgg19,
        dict(widths=(16, 32, 64, 128), convs_per_block=(1, 1, 2, 2), top="gap", name="shapes_vgg"),
    ),
    "shapes_googlenet": (
        googlenet,
        dict(width=0.5, last_block="3b", name="shapes_googlenet"),
    ),
}
# Where each bundled model's class evidence is sharpest: its last spatial layer.
LAST_CONV_LAYER = {"shapes_vgg": "conv4_2", "shapes_googlenet": "inception_3b_output"}


def names() -> tuple[str, ...]:
    """Names accepted by `build` and `load`."""
    return tuple(ARCHITECTURES)


def weights_path(name: str) -> "Traversable":
    """A bundled model's weights file in the package data: a `pathlib.Path` unless `lib` is imported
    from a zip archive; read it through `importlib.resources.as_file` where a real path is needed."""
    _check_name(name)
    return DATA_DIR / f"{name}.weights.h5"


def build(name: str, batch_norm: bool = False) -> keras.Model:
    """Builds a bundled architecture with random weights.

    Args:
        name: one of `names()`.
        batch_norm: the variant the training script trains, folded afterwards into the plain one
            (`lib.nets.layers.fold_batch_norm`), so the shipped models have no normalisation layers.

    Returns:
        A functional `keras.Model` taking `(N, 64, 64, 3)` RGB 0-255 images to `(N, 8)` logits.
    """
    _check_name(name)
    builder, kwargs = ARCHITECTURES[name]
    input_shape = (INPUT_SIZE, INPUT_SIZE, 3)
    return builder(classes=len(CLASS_NAMES), input_shape=input_shape, batch_norm=batch_norm, **kwargs)


def load(name: str) -> keras.Model:
    """Returns a bundled model with its trained weights, ready to classify and explain.

    Args:
        name: `"shapes_vgg"` or `"shapes_googlenet"`.

    Returns:
        A functional `keras.Model` taking `(N, 64, 64, 3)` RGB 0-255 images to `(N, 8)` logits
        of the classes `lib.dataflow.shapes.CLASS_NAMES`.

    Raises:
        lib.errors.InputError: unknown name.
        lib.errors.MissingFileError: the weights file is missing (run `example/train_bundled.py`).
    """
    path = weights_path(name)
    if not path.is_file():
        raise MissingFileError(
            f"bundled weights '{path}' are missing; reinstall the package, restore them with git, or "
            f"retrain with 'python example/train_bundled.py --model {name}'"
        )
    model = build(name)
    with resources.as_file(path) as real_path:  # Keras reads files by path
        model.load_weights(real_path)
    return model


def _check_name(name: str) -> None:
    if name not in ARCHITECTURES:
        raise InputError(f"unknown bundled model {name!r}; choose one of {', '.join(ARCHITECTURES)}")


def evaluate(
    model: keras.Model, num_images: int = 2000, seed: int = 2026, batch_size: int = 100
) -> dict[str, float]:
    """Measures a model on freshly generated shapes it never saw.

    Args:
        model: a model taking `(N, 64, 64, 3)` images to scores of the shape classes.
        num_images: number of single-object and of two-object test images.
        seed: generator seed; pick one the model was not trained on.
        batch_size: images per forward pass.

    Returns:
        `{"top1": accuracy on single-object images, "two_object_top2": share of two-object images
        whose top-2 predictions are exactly their two classes}`.
    """
    import numpy as np

    from lib.dataflow.shapes import generate

    images, labels, _ = generate(num_images, seed=seed, size=INPUT_SIZE)
    scores = model.predict(images.astype("float32"), batch_size=batch_size, verbose=0)
    top1 = float(np.mean(scores.argmax(axis=1) == labels))
    pairs, pair_labels, _ = generate(num_images, seed=seed + 1, size=INPUT_SIZE, objects_per_image=2)
    pair_scores = model.predict(pairs.astype("float32"), batch_size=batch_size, verbose=0)
    top2 = np.sort(np.argsort(pair_scores, axis=1)[:, -2:], axis=1)
    two_object_top2 = float(np.mean(np.all(top2 == np.sort(pair_labels, axis=1), axis=1)))
    return {"top1": top1, "two_object_top2": two_object_top2}
