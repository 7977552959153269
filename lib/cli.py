"""Plumbing shared by the example scripts: common flags, model and image loading, one-line errors.

Scripts stay thin: they parse flags with these helpers, call `lib` methods, and hand their `main`
to `run`, which turns the project's errors into one line on stderr and exit status 2.
"""

import argparse
import dataclasses
import os
import re
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import numpy as np

from lib.errors import InputError, VizError

ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = ROOT / "data" / "samples"
FULL_SIZE_MODELS = ("vgg19", "googlenet")
FULL_SIZE_INPUT = 224


@dataclasses.dataclass
class Subject:
    """A model to explain, with what the scripts need to know about it.

    Attributes:
        name: `--model` value.
        model: functional `keras.Model` taking RGB 0-255 images to logits.
        class_names: name of each output class, in class-id order.
        image_size: the square input size images are resized to.
    """

    name: str
    model: object
    class_names: tuple
    image_size: int


def model_names():
    """Values accepted by `--model`: the bundled models, then the full-size builders."""
    from lib.nets import bundled

    return (*bundled.names(), *FULL_SIZE_MODELS)


def add_model_arguments(parser, default_model):
    parser.add_argument("--model", default=default_model, choices=model_names(), help="network to explain")
    parser.add_argument(
        "--weights",
        default=None,
        help="weights for vgg19/googlenet: 'imagenet' (vgg19) or a .npy/.h5 path; bundled models have theirs",
    )


def positive_int(text):
    """argparse type: an int of at least 1, so that a bad count fails while flags are parsed."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def add_image_arguments(parser):
    parser.add_argument(
        "--images",
        type=Path,
        default=SAMPLES_DIR,
        help="an image file or a folder (default: bundled samples)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass")


def add_class_id_argument(parser, default):
    """`--class-id`: one or more class ids or names; `default` says what happens without it."""
    parser.add_argument(
        "--class-id",
        nargs="+",
        default=None,
        metavar="ID_OR_NAME",
        help=f"class ids or names, e.g. 3 or disk (default: {default})",
    )


def add_output_arguments(parser, method):
    parser.add_argument("--out", type=Path, default=ROOT / "output" / method, help="folder for the figures")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def load_subject(name, weights=None):
    """Builds or loads the model named by `--model`, with its class names and input size.

    Full-size models without weights get random ones and a warning that their maps mean nothing.
    """
    from lib.nets import bundled

    if name in bundled.names():
        if weights is not None:
            raise InputError(f"--weights is for vgg19/googlenet; bundled model '{name}' has its own")
        from lib.dataflow.shapes import CLASS_NAMES

        return Subject(name, bundled.load(name), CLASS_NAMES, bundled.INPUT_SIZE)
    if name not in FULL_SIZE_MODELS:
        raise InputError(f"unknown model '{name}'; choose one of {', '.join(model_names())}")
    from lib.nets.googlenet import googlenet
    from lib.nets.imagenet import class_names
    from lib.nets.vgg import vgg19

    if weights is None:
        warnings.warn(
            f"{name} has random weights (no --weights given): its maps mean nothing; "
            f"pass --weights with a trained weights file",
            stacklevel=2,
        )
    builder = vgg19 if name == "vgg19" else googlenet
    return Subject(name, builder(weights=weights), class_names(), FULL_SIZE_INPUT)


class ImageRun:
    """Iterates over a folder run in batches, with progress and an end-of-run summary.

    Usage:
        run = ImageRun(paths, size=64, batch_size=8)
        for batch in run:   # batch.images float32 (n, size, size, 3), batch.paths
            ...
        print(run.summary())   # "12 images, 1 skipped: bad.jpg (cannot read image ...)"
    """

    def __init__(self, paths, size, batch_size):
        self.paths, self.size, self.batch_size = list(paths), size, batch_size
        self.done, self.skipped = 0, []

    def __iter__(self):
        from lib.dataflow.images import iter_batches

        bar = progress(len(self.paths))
        for batch in iter_batches(self.paths, self.batch_size, size=self.size):
            self.skipped.extend(batch.skipped)
            if len(batch.paths):
                yield batch
            self.done += len(batch.paths)
            bar.add(len(batch.paths) + len(batch.skipped))

    def summary(self):
        text = f"{self.done} image{'' if self.done == 1 else 's'}, {len(self.skipped)} skipped"
        if self.skipped:
            text += ": " + "; ".join(f"{os.path.basename(path)} ({reason})" for path, reason in self.skipped)
        return text


def progress(total):
    """A `keras.utils.Progbar` over `total` images; call `.add(n)` after each batch.

    On a terminal the bar is redrawn in place; in logs and CI (no terminal) Keras prints one line at
    the end instead of one per update.
    """
    import keras

    return keras.utils.Progbar(total, unit_name="image", verbose=1 if sys.stdout.isatty() else 2)


def parse_class_id(values, class_names):
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


def softmax(logits):
    """float64 probabilities (..., classes) of logits (..., classes), computed without overflow."""
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def top_classes(scores, k):
    """int (N, k): each row's k highest-scoring class ids, highest first; ties keep the lower id first."""
    return np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :k]


def chosen_classes(logits, class_ids, k):
    """int (N, K): the requested `class_ids` (K ids) for every image, or each one's top `k`."""
    if class_ids is not None:
        return np.tile(np.asarray(class_ids, np.int64), (len(logits), 1))
    return top_classes(logits, k)


def top_labels(model, images, class_names, k=1):
    """'disk 0.61, cross 0.37' per image: the model's top-k classes (names cut to 18) and probabilities."""
    probabilities = softmax(model(images, training=False))  # (N, classes)
    return [
        ", ".join(f"{class_names[c][:18]} {p[c]:.3g}" for c in row)
        for p, row in zip(probabilities, top_classes(probabilities, k), strict=True)
    ]


def score_title(class_names, class_id, logits):
    """'disk  p=0.93, logit 7.1' for one image's logits (classes,)."""
    probability = softmax(logits)[class_id]
    return f"{class_names[class_id]}  p={probability:.2f}, logit {logits[class_id]:.1f}"


def unique_stems(paths):
    """File stems, with a counter added where two files in different folders share one."""
    stems, seen = [], {}
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def prepare_output(folder):
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


def run(main, args):
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
