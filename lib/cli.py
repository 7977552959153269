"""Plumbing shared by the example scripts: common flags, model and image loading, one-line errors.

Scripts stay thin: they parse flags with these helpers, call `lib` methods, and hand their `main`
to `run`, which turns the project's errors into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lib.errors import InputError, VizError

if TYPE_CHECKING:
    import keras
    from numpy.typing import ArrayLike

    from lib.dataflow.images import Picture

# The scripts' defaults: the sample images `data/samples` and the figures' folder `output/` of the
# checkout that holds this `lib`. An installed copy has no checkout around it; its defaults are then
# `data/samples` and `output/` in the current folder.
_CHECKOUT = Path(__file__).resolve().parents[1]
ROOT = _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else Path()
SAMPLES_DIR = ROOT / "data" / "samples"
# The ImageNet networks by name: builder module, builder, input side, default weights (None: random,
# with a warning). The builders are imported only when chosen, which keeps a script's start-up short.
IMAGENET_MODELS = {
    "vgg19": ("lib.nets.vgg", "vgg19", 224, None),
    "googlenet": ("lib.nets.googlenet", "googlenet", 224, None),
    "squeezenet": ("lib.nets.squeezenet", "squeezenet", 227, "imagenet"),  # weights from packages
    "efficientnet_lite0": ("lib.nets.efficientnet", "efficientnet_lite0", 224, "imagenet"),
}
MODEL_FILE_SUFFIXES = (".keras", ".h5")


@dataclasses.dataclass
class Subject:
    """A model to explain, with what the scripts need to know about it.

    Attributes:
        name: the `--model` name, or the file name of a model loaded from a file.
        model: functional `keras.Model` taking RGB 0-255 images to logits.
        class_names: name of each output class, in class-id order.
        image_size: `(height, width)` images are resized to, or None for a model that takes any size
            (images then keep their own).
        path: the file the model was loaded from; None for a named model.
    """

    name: str
    model: keras.Model
    class_names: tuple[str, ...]
    image_size: tuple[int, int] | None
    path: Path | None = None


def model_names() -> tuple[str, ...]:
    """Names accepted by `--model` besides a model file: the bundled models, then the ImageNet ones."""
    from lib.nets import bundled

    return (*bundled.names(), *IMAGENET_MODELS)


def add_model_arguments(parser: argparse.ArgumentParser, default_model: str) -> None:
    """`--model` (a name or a saved Keras model), `--weights` and `--list-layers`."""
    parser.add_argument(
        "--model",
        default=default_model,
        metavar="NAME_OR_FILE",
        help=f"network to explain: {', '.join(model_names())}, or a saved Keras model (.keras, .h5)",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="weights of an ImageNet model: 'imagenet' or a weights file (vgg19/googlenet: random without "
        "it; squeezenet/efficientnet_lite0: 'imagenet' by default); bundled models and model files have "
        "their own",
    )
    parser.add_argument(
        "--list-layers",
        action="store_true",
        help="print the model's layers (name, type, output shape, spatial or not) and exit",
    )


def positive_int(text: str) -> int:
    """argparse type: an int of at least 1, so that a bad count fails while flags are parsed."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """`--images` (a path or a named set, read with `image_sources`), `--batch-size` and `--crop`."""
    parser.add_argument(
        "--images",
        default=SAMPLES_DIR,
        help="an image file, a folder, or a named set: 'photos' (the real photos of lib.dataflow.photos) "
        "or 'grids' (448x448 2x2 grids of them); a file or folder of that name wins (default: bundled "
        "samples)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass")
    parser.add_argument(
        "--crop",
        action="store_true",
        help="centre-crop each image to the model's input aspect ratio before resizing it, instead of "
        "resizing (squashing) the whole image",
    )


IMAGE_SETS = ("photos", "grids")  # what `--images` names besides paths


def image_sources(value: str | os.PathLike) -> list[str] | list[Picture]:
    """The images `--images` names: the files at a path, or the in-memory `Picture`s of a named set.

    A file or folder that exists wins over a set of the same name. The sets:
        "photos": every photo of `lib.dataflow.photos`, named "<photo>.<ext>" (e.g. "chelsea.png");
        "grids": the 2x2 grids of `photos.DEFAULT_GRIDS`, 448x448 with cells of 224, named
            "grid_<photo>_<photo>_<photo>_<photo>.png"; each Picture's `args[0]` lists its photos.

    Returns:
        list of str paths (`list_images` of the path) or of Pictures.

    Raises:
        MissingFileError, InputError: as `list_images` for paths; MissingFileError naming the
            `pip install` when a package that ships the photos is missing.
    """
    from lib.dataflow import photos
    from lib.dataflow.images import list_images

    text = os.fspath(value)
    if text not in IMAGE_SETS or os.path.exists(text):
        return list_images(value)
    grids = photos.DEFAULT_GRIDS
    needed = photos.names() if text == "photos" else sorted({name for names in grids for name in names})
    for name in needed:
        photos.photo_path(name)  # a missing package fails here, in one line, before any work
    if text == "photos":
        return [photos.picture(name) for name in photos.names()]
    return [photos.grid_picture(names, cell=photos.GRID_CELL) for names in grids]


def add_class_id_argument(parser: argparse.ArgumentParser, default: str) -> None:
    """`--class-id`: one or more class ids or names; `default` says what happens without it."""
    parser.add_argument(
        "--class-id",
        nargs="+",
        default=None,
        metavar="ID_OR_NAME",
        help=f"class ids or names, e.g. 3 or disk (default: {default})",
    )


def add_output_arguments(parser: argparse.ArgumentParser, method: str) -> None:
    parser.add_argument("--out", type=Path, default=ROOT / "output" / method, help="folder for the figures")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def load_subject(name: str, weights: str | None = None) -> Subject:
    """Builds or loads the model that `--model` names, with its class names and input size.

    Args:
        name: one of `model_names()`, or the path of a saved Keras model (.keras, .h5).
        weights: for the ImageNet models: "imagenet" or a weights file; None takes their default
            (random for vgg19 and googlenet, with a warning that their maps mean nothing).

    Raises:
        InputError: an unknown name; a model file that is missing, cannot be loaded or is not an image
            CNN; `weights` for a model that has its own.
    """
    from lib.nets import bundled

    check_model_arg(name)
    if name in bundled.names():
        if weights is not None:
            raise InputError(f"--weights is for the ImageNet models; bundled model '{name}' has its own")
        from lib.dataflow.shapes import CLASS_NAMES

        return Subject(name, bundled.load(name), CLASS_NAMES, (bundled.INPUT_SIZE, bundled.INPUT_SIZE))
    if name in IMAGENET_MODELS:
        from lib.nets.imagenet import class_names

        side = IMAGENET_MODELS[name][2]
        model = imagenet_builder(name)(weights=imagenet_weights(name, weights))
        return Subject(name, model, class_names(), (side, side))
    path = Path(name)
    if weights is not None:
        raise InputError(f"--weights is for the ImageNet models; model file '{path}' has its own")
    model = load_model_file(path)
    return Subject(path.name, model, file_class_names(model), model_input_size(model), path)


def check_model_arg(value: str) -> None:
    """Refuses a `--model` value that is neither a model name nor an existing .keras/.h5 file.

    Cheap (a file's first bytes are read, nothing is loaded), so that scripts can call it before they
    write anything.

    Raises:
        InputError: naming the value and what `--model` takes.
    """
    if value in model_names():
        return
    path = Path(value)
    if path.suffix.lower() not in MODEL_FILE_SUFFIXES:
        raise InputError(
            f"--model '{value}' is neither a model name ({', '.join(model_names())}) nor a saved Keras "
            "model (.keras, .h5); save yours with model.save('net.keras')"
        )
    if not path.exists():
        raise InputError(f"model file '{path}' does not exist; check --model")
    if not path.is_file():
        raise InputError(f"model file '{path}' is a folder; pass the .keras or .h5 file itself")
    _check_file_kind(path)


def imagenet_builder(name: str) -> Callable[..., keras.Model]:
    """The builder function of an ImageNet model of `IMAGENET_MODELS`, imported now."""
    import importlib

    module_name, builder, _, _ = IMAGENET_MODELS[name]
    return getattr(importlib.import_module(module_name), builder)


def imagenet_weights(name: str, weights: str | None) -> str | None:
    """`weights`, or the ImageNet model's default; warns when that default leaves the weights random."""
    weights = IMAGENET_MODELS[name][3] if weights is None else weights
    if weights is None:
        warnings.warn(
            f"{name} has random weights (no --weights given): its maps mean nothing; "
            f"pass --weights with a trained weights file",
            stacklevel=3,
        )
    return weights


def load_model_file(path: str | os.PathLike) -> keras.Model:
    """A saved Keras model (.keras, .h5), loaded in safe mode: no Python code from the file runs.

    `lib.nets.layers`, which registers our custom layers, is imported first, so that models saved from
    `lib.nets` load too.

    Raises:
        InputError: the file is missing or of another kind, Keras cannot load it, or it is not an
            image CNN (`check_image_cnn`).
    """
    import keras

    import lib.nets.layers  # noqa: F401  (registers CaffePreprocess and LocalResponseNorm)

    check_model_arg(str(path))
    try:
        model = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # Keras's loaders raise ValueError, TypeError, OSError, KeyError, zip errors..
        raise InputError(
            f"Keras {keras.__version__} cannot load model file '{path}' in safe mode "
            f"({_first_sentence(err)}); pass a model saved by Keras 3 with model.save('net.keras'), "
            "without Lambda layers"
        ) from None
    check_image_cnn(model, path)
    return model


def _check_file_kind(path):
    """Refuses a .keras file that is not a zip archive and an .h5 file that is not HDF5, from their bytes."""
    import zipfile

    from lib.nets.weights import HDF5_SIGNATURE

    with open(path, "rb") as file:
        head = file.read(len(HDF5_SIGNATURE))
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise InputError(f"model file '{path}' is not a .keras (zip) archive; re-save the model")
    if path.suffix.lower() == ".h5" and head != HDF5_SIGNATURE:
        raise InputError(f"model file '{path}' is not an HDF5 file; re-save the model")


def _first_sentence(error, limit=160):
    """The first sentence of `error`'s message, at most `limit` characters, for one-line messages."""
    text = str(error).strip().split("\n")[0] or type(error).__name__
    if len(text) > limit and ". " in text:
        text = text.split(". ")[0] + "."
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_image_cnn(model: keras.Model, source: object) -> None:
    """Refuses a model that the examples cannot explain: not one RGB image input (N, H, W, 3) and one
    output of class scores (N, classes), or without a Conv2D layer.

    Raises:
        InputError: naming `source` (the model's file) and what is wrong.
    """
    from lib.methods.filters import conv_layers
    from lib.methods.graph import ModelGraph

    try:
        graph = ModelGraph(model)
    except VizError as err:
        raise InputError(f"model '{source}' cannot be explained: {err}") from None
    shape, logits = graph.input_shape, graph.logits_shape
    if len(shape) != 4 or shape[-1] != 3 or (shape[1] is None) != (shape[2] is None):
        raise InputError(
            f"model '{source}' takes input of shape {shape}; the examples need RGB images "
            "(N, H, W, 3), with both H and W fixed or both free"
        )
    if len(logits) != 2 or not logits[-1]:
        raise InputError(f"model '{source}' outputs shape {logits}, not class scores (N, classes)")
    if not conv_layers(model):
        raise InputError(f"model '{source}' has no Conv2D layer; the examples explain convolutional networks")


def model_input_size(model: keras.Model) -> tuple[int, int] | None:
    """(height, width) of a model's image input, or None if it takes images of any size."""
    height, width = tuple(model.inputs[0].shape)[1:3]
    return None if height is None or width is None else (int(height), int(width))


def file_class_names(model: keras.Model) -> tuple[str, ...]:
    """The ImageNet class names for a model with 1000 outputs, else 'class 0' .. 'class C-1'."""
    from lib.nets import imagenet

    count = int(model.outputs[0].shape[-1])
    if count == imagenet.NUM_CLASSES:
        return imagenet.class_names()
    return tuple(f"class {i}" for i in range(count))


def list_layers(model: keras.Model) -> str:
    """The layers of `model` as a table: name, type, output shape, and whether the output is spatial.

    Names are those `--layer` takes: layers of nested models are prefixed with the nested model's
    name ('block/conv2'), as `lib.methods.graph.ModelGraph` names them. Spatial layers, with an
    (N, h, w, C) output, are those the map methods can explain.
    """
    from lib.methods.graph import ModelGraph

    graph = ModelGraph(model)
    spatial = set(graph.spatial_names())
    rows = [("layer", "type", "output shape", "spatial")]
    for step in graph.steps:
        shape = ", ".join(str(s) for s in step.shapes)
        rows.append((step.name, type(step.op).__name__, shape, "yes" if step.name in spatial else "no"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        f"model '{model.name}': input {graph.input_shape}, {len(graph.steps)} layers, {len(spatial)} "
        "spatial (N, h, w, C) ones, which --layer takes"
    ]
    for name, kind, shape, flag in rows:
        lines.append(f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {shape:<{widths[2]}}  {flag}")
    if graph.softmax:
        lines.append(f"the methods explain the scores before the softmax of '{graph.softmax}'")
    return "\n".join(lines)


def default_layers(model: keras.Model, count: int) -> list[str]:
    """`count` spatial layers spread evenly over the depth of `model`, the deepest last.

    What a script shows without `--layer` when it has no hand-picked layers for the model. The
    candidates are the features of a block, from the first convolution on: the outputs of
    non-linearities (a ReLU or activation layer, or a layer with a fused activation) and of merges
    (Concatenate, Add); every spatial layer from the first convolution on if there are none.
    """
    import keras

    from lib.methods.graph import ModelGraph, activation_name

    graph = ModelGraph(model)
    spatial = set(graph.spatial_names())
    steps = [step for step in graph.steps if step.name in spatial]
    steps = steps[next((i for i, s in enumerate(steps) if isinstance(s.op, keras.layers.Conv2D)), 0) :]
    kinds = (keras.layers.ReLU, keras.layers.Activation, keras.layers.Concatenate, keras.layers.Add)
    features = [s for s in steps if isinstance(s.op, kinds) or activation_name(s.op) not in ("", "linear")]
    names = [step.name for step in features or steps]
    if len(names) <= count:
        return names
    picks = np.round(np.linspace(0, len(names) - 1, count + 1)[1:]).astype(int)
    return [names[i] for i in sorted(set(picks))]


class ImageRun:
    """Iterates over a folder run in batches, with progress and an end-of-run summary.

    `paths` may mix files and `Picture`s (`image_sources`). `size` None keeps each image's own size,
    for models that take any: a batch then never mixes sizes (it is cut where the size changes).
    `crop` centre-crops each image to the aspect ratio of `size` before resizing; it does nothing
    when `size` is None.

    Usage:
        run = ImageRun(paths, size=(64, 64), batch_size=8, crop=False)
        for batch in run:   # batch.images float32 (n, h, w, 3), batch.paths
            ...
        print(run.summary())   # "12 images, 1 skipped: bad.jpg (cannot read image ...)"
    """

    def __init__(
        self,
        paths: Iterable[str | os.PathLike | Picture],
        size: tuple[int, int] | None,
        batch_size: int,
        crop: bool = False,
    ) -> None:
        self.paths, self.size, self.batch_size, self.crop = list(paths), size, batch_size, crop
        self.done, self.skipped = 0, []

    def __iter__(self):
        from lib.dataflow.images import iter_batches

        bar = progress(len(self.paths))
        crop = bool(self.crop) and self.size is not None
        for batch in iter_batches(self.paths, self.batch_size, size=self.size, crop=crop):
            self.skipped.extend(batch.skipped)
            if len(batch.paths):
                yield batch
            self.done += len(batch.paths)
            bar.add(len(batch.paths) + len(batch.skipped))

    def summary(self) -> str:
        text = f"{self.done} image{'' if self.done == 1 else 's'}, {len(self.skipped)} skipped"
        if self.skipped:
            text += ": " + "; ".join(f"{os.path.basename(path)} ({reason})" for path, reason in self.skipped)
        return text


def progress(total: int) -> keras.utils.Progbar:
    """A `keras.utils.Progbar` over `total` images; call `.add(n)` after each batch.

    On a terminal the bar is redrawn in place; in logs and CI (no terminal) Keras prints one line at
    the end instead of one per update.
    """
    import keras

    return keras.utils.Progbar(total, unit_name="image", verbose=1 if sys.stdout.isatty() else 2)


def parse_class_id(values: Sequence[str] | None, class_names: Sequence[str]) -> list[int] | None:
    """`--class-id` values (ids or class names) as a list of int ids, or None if the flag was not given.

    Raises:
        InputError: a value is neither a class name nor an id in 0 .. len(class_names) - 1.
    """
    from lib.methods.targets import parse_class_ids

    if values is None:
        return None
    ids = []
    for value in values:
        if re.fullmatch(r"[+-]?[0-9]+", value):
            ids.append(int(value))
        elif value in class_names:
            ids.append(list(class_names).index(value))
        else:
            raise InputError(
                f"--class-id {value!r} is neither an id nor a class name; e.g. {class_names[0]!r}"
            )
    parse_class_ids(ids, 1, len(class_names))  # the library's range check and message
    return ids


def softmax(logits: ArrayLike) -> np.ndarray:
    """float64 probabilities (..., classes) of logits (..., classes), computed without overflow."""
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def top_classes(scores: ArrayLike, k: int) -> np.ndarray:
    """int (N, k): each row's k highest-scoring class ids, highest first; ties keep the lower id first."""
    return np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :k]


def class_targets(class_ids: Sequence[int] | None, k: int):
    """The methods' `class_ids`: the requested ids for every image, or `TopK(k)`, each image's top k.

    With `TopK` the method picks the classes in its own pass and its `explain()` reports them, so a
    script runs one forward pass per batch.
    """
    from lib.methods.targets import TopK

    return TopK(k) if class_ids is None else list(class_ids)


def top_labels(model: keras.Model, images: np.ndarray, class_names: Sequence[str], k: int = 1) -> list[str]:
    """'disk 0.61, cross 0.37' per image: the model's top-k classes (names cut to 18) and probabilities."""
    probabilities = softmax(model(images, training=False))  # (N, classes)
    return [
        ", ".join(f"{class_names[c][:18]} {p[c]:.3g}" for c in row)
        for p, row in zip(probabilities, top_classes(probabilities, k), strict=True)
    ]


def score_titles(class_names: Sequence[str], result, i: int) -> list[str]:
    """'disk  p=0.93, logit 7.1' for each class an `Explanation` explains in image `i`."""
    rows = zip(result.class_ids[i], result.probabilities[i], result.scores[i], strict=True)
    return [f"{class_names[c]}  p={p:.2f}, logit {s:.1f}" for c, p, s in rows]


def class_labels(class_names: Sequence[str], result, i: int) -> list[str]:
    """'disk 0.93' for each class an `Explanation` explains in image `i`: name and probability."""
    rows = zip(result.class_ids[i], result.probabilities[i], strict=True)
    return [f"{class_names[c]} {p:.2f}" for c, p in rows]


def unique_stems(paths: Iterable[str | os.PathLike]) -> list[str]:
    """File stems, with a counter added where two files in different folders share one."""
    stems, seen = [], {}
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def prepare_output(folder: str | os.PathLike) -> Path:
    """Creates the output folder and proves it is writable, before any work is done.

    Raises:
        InputError: the folder cannot be created or written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise InputError(
            f"cannot write to output folder '{folder}' ({err.strerror}); pass another --out"
        ) from None
    return folder


def run(main: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Runs a script's `main(args)`: project errors become one stderr line and exit status 2.

    Warnings print as one `warning: ...` line each. `args.debug` shows the traceback instead.
    """
    default_format = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *rest, **kw: f"warning: {message}\n"
    try:
        return main(args) or 0
    except (VizError, FileNotFoundError, PermissionError) as err:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; files already written are complete, nothing partial was left", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = default_format
