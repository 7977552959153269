"""Reading `.npy` files that hold a pickled dict of weights, without letting the pickle run code.

tensorflow-vgg's `vgg19.npy` and caffe-tensorflow's `googlenet.npy` are dicts saved with `np.save`;
`np.load(allow_pickle=True)` would run whatever their pickle asks for. `load_npy_dict` admits only
numpy arrays, dtypes, scalars and plain containers, rebuilt from checked parts, and refuses anything
else before it runs.
"""

import io
import math
import os
import pickle
import pickletools
import re
import struct
import tokenize

import numpy as np
from numpy.lib import format as npy_format

from lib.errors import MissingFileError, WeightsError

NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
# Errors a damaged header or pickle raises while it is parsed (`WeightsError` is handled first).
_PARSE_ERRORS = (
    SyntaxError,
    tokenize.TokenError,
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    struct.error,
    OverflowError,
    MemoryError,
    RecursionError,
    UnicodeError,
)


# numpy's own unpickling hands the pickle's raw state to C code, which crashes on damaged input, so
# arrays, dtypes and scalars are rebuilt here from checked parts with `np.frombuffer`; the pickle
# only ever reaches the stand-ins below and plain containers.
class _NDArrayName:
    """Stands for `numpy.ndarray`, which pickles name only as `_reconstruct`'s first argument."""


class _ArrayStub:
    """Stands for an array while unpickling; `__setstate__` receives numpy's array state."""

    array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed array state")
        shape, dtype, is_fortran, data = state[-4:]
        self.array = _checked_array(data, dtype, shape, "F" if is_fortran is True else "C")


class _DtypeStub:
    """Stands for a `numpy.dtype`: only plain numeric and object dtypes, in either byte order."""

    def __init__(self, spec, align=False, copy=True):
        if not isinstance(spec, str) or not re.fullmatch(r"[biufcO]\d{0,2}", spec):
            raise pickle.UnpicklingError(f"dtype {spec!r} is not one weight files use")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state):
        order = state[1] if isinstance(state, tuple) and len(state) == 8 else None
        if order not in ("<", ">", "|", "=") or any(part is not None for part in state[2:5]):
            raise pickle.UnpicklingError("malformed dtype state")
        self.dtype = self.dtype.newbyteorder(order) if order in "<>" else self.dtype


def _checked_array(data, dtype, shape, order="C"):
    """An array from pickled parts, after checking that they agree."""
    valid_shape = isinstance(shape, tuple) and len(shape) <= 32
    if not (valid_shape and all(type(n) is int and n >= 0 for n in shape)):
        raise pickle.UnpicklingError(f"malformed array shape {shape!r}")
    if not isinstance(dtype, _DtypeStub) or order not in ("C", "F"):
        raise pickle.UnpicklingError("malformed array dtype or order")
    dtype, count = dtype.dtype, math.prod(shape)
    if dtype.kind == "O":
        if not isinstance(data, list) or len(data) != count:
            raise pickle.UnpicklingError("object array of the wrong length")
        array = np.empty(count, dtype=object)
        for i, item in enumerate(data):
            array[i] = item
        return array.reshape(shape, order=order)
    # Python 2's str arrives as latin1 text; bytes are viewed, not copied (fc6 alone is 0.4 GB)
    data = memoryview(data.encode("latin1") if isinstance(data, str) else data).cast("B")
    if len(data) != count * dtype.itemsize:
        raise pickle.UnpicklingError(f"{len(data)} bytes for {count} values of {dtype}")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order)


def _reconstruct(subtype, shape, typecode):
    if subtype is not _NDArrayName:
        raise pickle.UnpicklingError("an array of a type other than numpy.ndarray")
    return _ArrayStub()


def _scalar(dtype, data):
    if isinstance(dtype, _DtypeStub) and dtype.dtype.kind == "O":
        return data
    return _checked_array(data, dtype, ())[()]


def _frombuffer(data, dtype, shape, order):
    return _checked_array(data, dtype, shape, order)


def _empty_bytes():
    return b""


def _latin1_bytes(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("bytes in an unexpected encoding")
    return text.encode("latin1")


# Every global that numpy's pickles of arrays, dtypes and scalars ask for (protocols 2 to 5).
_SAFE_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDArrayName,
    ("numpy", "dtype"): _DtypeStub,
    ("collections", "OrderedDict"): dict,
    ("_codecs", "encode"): _latin1_bytes,  # bytes under protocol 2 ...
    ("builtins", "bytes"): _empty_bytes,  # ... and b"" (of an empty array)
}


class _WeightsUnpickler(pickle.Unpickler):
    """Unpickler that admits only the stand-ins above; `find_class` runs before anything is called."""

    def __init__(self, file, source):
        super().__init__(file, encoding="latin1")  # latin1: Python 2 pickles (tensorflow-vgg, caffe)
        self.source = source

    def find_class(self, module, name):
        module = re.sub(r"^numpy\.core\b", "numpy._core", module).replace("__builtin__", "builtins")
        if (module, name) not in _SAFE_GLOBALS:
            wanted = f"{module}.{name}" if f"{module}.{name}".isprintable() else ascii(f"{module}.{name}")
            raise WeightsError(
                f"refusing to load '{self.source}': its pickle asks for {wanted[:100]}, which weight "
                "files never contain and which could run code; nothing was executed - use a file from "
                "a source you trust, saved as a dict of numpy arrays"
            )
        return _SAFE_GLOBALS[module, name]


def _resolved(obj, done):
    """`obj` with every `_ArrayStub` replaced by its array; `done` memoises shared objects by id."""
    if id(obj) in done:
        if done[id(obj)] is None:
            raise pickle.UnpicklingError("an object that contains itself")
        return done[id(obj)]
    done[id(obj)] = None
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise pickle.UnpicklingError("an array without data")
        result = _resolved(obj.array, done)
    elif type(obj) is dict:
        result = {key: _resolved(value, done) for key, value in obj.items()}
    elif type(obj) in (list, tuple):
        result = [_resolved(item, done) for item in obj]
    elif isinstance(obj, np.ndarray) and obj.dtype.kind == "O":
        result = np.empty(obj.size, dtype=object)
        for i, item in enumerate(obj.reshape(-1)):
            result[i] = _resolved(item, done)
        result = result.reshape(obj.shape)
    elif isinstance(obj, (np.ndarray, np.generic, str, bytes, int, float, bool, type(None))):
        result = obj
    else:
        raise pickle.UnpicklingError(f"a {type(obj).__name__} where weights hold arrays")
    done[id(obj)] = result
    return result


def short_reason(error: BaseException) -> str:
    """An exception as one short line, to quote inside our own message."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= 160 else text[:157] + "..."


def existing_file(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise WeightsError(f"weights={path!r} is not None, 'imagenet' or the path of a weights file")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(
            f"weights file '{path}' does not exist; check the path, or pass weights=None for random weights"
        )
    if not os.path.isfile(path):
        raise WeightsError(f"weights '{path}' is a directory; pass the path of the weights file in it")
    return path


def _check_pickle_sizes(data: bytes) -> None:
    """Refuses a pickle whose declared sizes exceed the data, before the C unpickler sizes buffers by them.

    pickletools checks each declared length against the bytes that follow; memo indices are bounded
    here, since a valid pickle stores at most one memo entry per opcode.
    """
    for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > len(data):
            raise pickle.UnpicklingError(f"memo index {arg} beyond the data")


def _read_npy_header(f, path):
    """Reads the header of an open `.npy`; returns its `(shape, dtype)`."""
    version = npy_format.read_magic(f)
    read_header = _NPY_HEADER_READERS.get(version)
    if read_header is None:
        raise WeightsError(f"'{path}' is a .npy of version {version}; re-save it with numpy.save")
    shape, _, dtype = read_header(f)
    return shape, dtype


def _unpickle(data: bytes, path, kind):
    """The object a weights pickle holds, rebuilt by `_WeightsUnpickler` from checked parts.

    `kind` names the file format in the error for damaged data (".npy file", "pickle of weights").
    """
    try:
        _check_pickle_sizes(data)
        return _resolved(_WeightsUnpickler(io.BytesIO(data), path).load(), {})
    except WeightsError:
        raise
    except _PARSE_ERRORS as e:
        raise WeightsError(f"'{path}' is truncated or not a {kind} ({short_reason(e)})") from None


def _as_dict(content, path) -> dict:
    if not isinstance(content, dict):
        raise WeightsError(f"'{path}' holds a {type(content).__name__}, not a dict of layers")
    return content


def load_npy_dict(path) -> dict:
    """Loads a `.npy` that holds a pickled dict (`np.save(path, {...})`) without running its code.

    Only numpy arrays (numeric or of objects), dtypes, scalars, dicts, lists and tuples are admitted,
    and they are rebuilt from checked parts, so neither the pickle nor damage to it can run code.

    Args:
        path: the `.npy` file.

    Returns:
        The dict, with numpy arrays, lists and dicts as values. Arrays are views of the file's bytes
        and may be read-only; copy one to change it in place.

    Raises:
        lib.errors.MissingFileError: `path` does not exist.
        lib.errors.WeightsError: the file is truncated, not a `.npy`, not a pickled dict, or its
            pickle asks for anything but numpy arrays and containers (refused before it runs).
    """
    path = existing_file(path)
    with open(path, "rb") as f:
        try:
            shape, dtype = _read_npy_header(f, path)
        except _PARSE_ERRORS as e:
            raise WeightsError(f"'{path}' is truncated or not a .npy file ({short_reason(e)})") from None
        if dtype.kind != "O":
            raise WeightsError(
                f"'{path}' holds a {dtype} array of shape {shape}, not the pickled dict of layers "
                "that weights .npy files hold"
            )
        array = _unpickle(f.read(), path, ".npy file")
    return _as_dict(array.item() if isinstance(array, np.ndarray) and array.size == 1 else array, path)


def load_pickle_dict(path) -> dict:
    """Loads a plain pickle of a dict of numpy arrays (`pickle.dump({...}, f)`) without running its code.

    The same restricted unpickler as `load_npy_dict`, for weights shipped as `.pkl` files (the
    SqueezeNet weights of the `ndf` package: `{"conv1": [W, b], "fire2/squeeze1x1": [W, b], ...}`).

    Raises:
        lib.errors.MissingFileError: `path` does not exist.
        lib.errors.WeightsError: truncated or damaged, not a dict, or its pickle asks for anything but
            numpy arrays and containers (refused before it runs).
    """
    path = existing_file(path)
    with open(path, "rb") as f:
        return _as_dict(_unpickle(f.read(), path, "pickle of weights"), path)
