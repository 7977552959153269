"""Reading PyTorch state dicts (`torch.save(model.state_dict(), path)`) with NumPy alone, running no code.

Two layouts of `.pth` files are read, told apart by their first bytes:
- the legacy one (PyTorch < 1.6, and `_use_new_zipfile_serialization=False`): five pickles in a row
  (magic number, protocol version 1001, system info, the state dict, the list of storage keys), then
  each storage as a little-endian int64 element count and its raw bytes, in the order of that list;
- the zip one (PyTorch >= 1.6): `<name>/data.pkl` holds the state dict, `<name>/data/<key>` each
  storage's raw bytes.

In both, the state dict's pickle names a tensor as `torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, ...)` and a storage by a persistent id `('storage', torch.FloatStorage, key, location,
numel[, view_metadata])`. `_TorchUnpickler` admits only those globals, each mapped to a stand-in of
ours that records checked numbers, so a file whose pickle asks for anything else (`os.system`, ...)
is refused before anything runs; the tensors are then cut out of the storages with their size,
stride and offset and copied.
"""

import io
import math
import pickle
import pickletools
import struct
import zipfile
import zlib

import numpy as np

from lib.errors import WeightsError
from lib.nets.safe_npy import _PARSE_ERRORS, _check_pickle_sizes, existing_file, short_reason

TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # the legacy format's first pickle
LEGACY_PROTOCOL = 1001  # its second
ZIP_SIGNATURE = b"PK\x03\x04"
PICKLE_PROTO = b"\x80"  # the first byte of a pickle of protocol 2 or more, as torch writes them
# torch storage type -> the dtype of its elements; bfloat16 is read as uint16 and widened to float32.
STORAGE_DTYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "u2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
_READ_ERRORS = (*_PARSE_ERRORS, zipfile.BadZipFile, zlib.error, NotImplementedError, OSError)


class _Stub:
    """Base of the stand-ins: refuses the BUILD opcode, which torch's pickles never apply to them."""

    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"state set on a {type(self).__name__}")


class _StorageType(_Stub):
    """Stands for `torch.FloatStorage` and its kin: the element type of a storage."""

    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


class _Storage(_Stub):
    """A storage as a persistent id names it: `size` elements from element `offset` of storage `key`."""

    __slots__ = ("key", "type", "offset", "size")

    def __init__(self, key, storage_type, offset, size):
        self.key, self.type, self.offset, self.size = key, storage_type, offset, size


class _Tensor(_Stub):
    """A tensor as `_rebuild_tensor_v2` receives it, checked to lie inside its storage."""

    __slots__ = ("storage", "offset", "shape", "stride")

    def __init__(self, storage, offset, shape, stride):
        if not isinstance(storage, _Storage) or not _is_count(offset):
            raise pickle.UnpicklingError("a tensor without a storage or with a bad offset")
        valid = isinstance(shape, tuple) and isinstance(stride, tuple) and len(shape) == len(stride) <= 32
        if not (valid and all(map(_is_count, shape + stride))):
            raise pickle.UnpicklingError(f"a tensor of malformed size {shape!r:.60} or stride {stride!r:.60}")
        count = math.prod(shape)
        last = offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
        if count and (last >= storage.size or count > storage.size):
            raise pickle.UnpicklingError(
                f"a tensor of size {shape} and stride {stride} beyond its storage of {storage.size} elements"
            )
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride


class _StateDict(dict):
    """Stands for `collections.OrderedDict`; the state (torch's `_metadata`) it receives is dropped."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("malformed OrderedDict state")


def _is_count(value) -> bool:
    return type(value) is int and value >= 0


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, hooks):
    if not isinstance(data, _Tensor):
        raise pickle.UnpicklingError("a parameter that is not a tensor")
    return data


_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{(module, name): _StorageType(name) for name in STORAGE_DTYPES for module in ("torch", "torch.cuda")},
}


class _TorchUnpickler(pickle.Unpickler):
    """Admits only `_SAFE_GLOBALS`, and collects the storages that persistent ids declare.

    Attributes:
        storages: `{key: (storage type, number of elements)}` of the root storages seen so far.
    """

    def __init__(self, data: bytes, source):
        _check_pickle_sizes(data)
        super().__init__(io.BytesIO(data))
        self.source = source
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) not in _SAFE_GLOBALS:
            wanted = f"{module}.{name}" if f"{module}.{name}".isprintable() else ascii(f"{module}.{name}")
            raise WeightsError(
                f"refusing to load '{self.source}': its pickle asks for {wanted[:100]}, which PyTorch state "
                "dicts never contain and which could run code; nothing was executed - use a file from a "
                "source you trust, saved with torch.save(model.state_dict(), path)"
            )
        return _SAFE_GLOBALS[module, name]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"persistent id {pid!r:.60} is not a storage")
        _, storage_type, key, _location, size, *view = pid
        if not (isinstance(storage_type, _StorageType) and type(key) is str and _is_count(size)):
            raise pickle.UnpicklingError(f"malformed storage id {pid!r:.100}")
        if self.storages.setdefault(key, (storage_type, size)) != (storage_type, size):
            raise pickle.UnpicklingError(f"storage '{key}' declared twice with different types or sizes")
        if not view or view[0] is None:  # the whole storage
            return _Storage(key, storage_type, 0, size)
        view = view[0]  # (view key, offset, size) of a part of the storage, in the legacy format
        if not (isinstance(view, tuple) and len(view) == 3 and all(map(_is_count, view[1:]))):
            raise pickle.UnpicklingError(f"malformed storage view {view!r:.60}")
        if view[1] + view[2] > size:
            raise pickle.UnpicklingError(f"a view beyond storage '{key}'")
        return _Storage(key, storage_type, view[1], view[2])


def _next_pickle(data: bytes, stream: io.BytesIO, path) -> _TorchUnpickler:
    """An unpickler of the pickle at `stream`'s position in `data`; `stream` moves past its STOP opcode."""
    start = stream.tell()
    for _ in pickletools.genops(stream):
        pass
    return _TorchUnpickler(data[start : stream.tell()], path)


def _read_legacy(path) -> tuple[dict, dict]:
    """Parses a legacy file. Returns the unpickled state dict and `{storage key: 1-D array}`."""
    with open(path, "rb") as f:
        data = f.read()
    stream = io.BytesIO(data)
    magic = _next_pickle(data, stream, path).load()
    protocol = _next_pickle(data, stream, path).load() if magic == TORCH_MAGIC else None
    if protocol != LEGACY_PROTOCOL:
        raise WeightsError(
            f"'{path}' is a pickle but not a PyTorch file (it starts with {magic!r:.30}, not torch's magic "
            "number and protocol); pass a file written by torch.save"
        )
    sys_info = _next_pickle(data, stream, path).load()
    if not isinstance(sys_info, dict):
        raise pickle.UnpicklingError("the system information is not a dict")
    unpickler = _next_pickle(data, stream, path)
    state = unpickler.load()
    keys = _next_pickle(data, stream, path).load()
    if not isinstance(keys, list) or not all(type(key) is str for key in keys):
        raise pickle.UnpicklingError("the list of storage keys is malformed")
    order = "<" if sys_info.get("little_endian", True) else ">"
    return state, _legacy_storages(data, stream.tell(), keys, unpickler.storages, order)


def _legacy_storages(data: bytes, position: int, keys, declared: dict, order: str) -> dict:
    """`{key: 1-D array}` of the storages from `position` on: each an int64 count, then its elements."""
    buffers = {}
    for key in keys:
        storage_type, size = declared.get(key, (None, None))
        if storage_type is None:
            raise pickle.UnpicklingError(f"data for a storage '{key:.40}' that no tensor uses")
        (count,) = struct.unpack_from(order + "q", data, position)
        dtype = storage_type.dtype.newbyteorder(order)
        if count != size or position + 8 + size * dtype.itemsize > len(data):
            raise pickle.UnpicklingError(f"storage '{key}' of {size} elements has {count}, or is cut short")
        buffers[key] = np.frombuffer(data, dtype, count=size, offset=position + 8)
        position += 8 + size * dtype.itemsize
    return buffers


def _stored_record(archive: zipfile.ZipFile, name: str) -> bytes:
    info = archive.getinfo(name)  # KeyError for a missing record
    if info.compress_type != zipfile.ZIP_STORED:
        raise pickle.UnpicklingError(f"record '{name}' is compressed, which torch.save never does")
    return archive.read(info)


def _read_zip(path) -> tuple[dict, dict]:
    """Parses a zip-based file. Returns the unpickled state dict and `{storage key: 1-D array}`."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise WeightsError(
                f"'{path}' is a zip file but not a PyTorch one (no single '<name>/data.pkl'); pass a file "
                "written by torch.save"
            )
        prefix = pickles[0].removesuffix("data.pkl")
        has_order = f"{prefix}byteorder" in archive.namelist()
        big_endian = has_order and _stored_record(archive, f"{prefix}byteorder") == b"big"
        unpickler = _TorchUnpickler(_stored_record(archive, pickles[0]), path)
        state = unpickler.load()
        buffers = {}
        for key, (storage_type, size) in unpickler.storages.items():
            record = _stored_record(archive, f"{prefix}data/{key}")
            dtype = storage_type.dtype.newbyteorder(">" if big_endian else "<")
            if len(record) < size * dtype.itemsize:
                raise pickle.UnpicklingError(f"storage '{key}' holds fewer than its {size} elements")
            buffers[key] = np.frombuffer(record, dtype, count=size)
    return state, buffers


def _array(tensor: _Tensor, buffers: dict) -> np.ndarray:
    """The tensor's values, cut from its storage with its size, stride and offset, as a new array."""
    storage = tensor.storage
    if storage.key not in buffers:
        raise pickle.UnpicklingError(f"no data for storage '{storage.key}'")
    base = buffers[storage.key][storage.offset : storage.offset + storage.size]
    if not math.prod(tensor.shape):
        return np.zeros(tensor.shape, base.dtype.newbyteorder("="))
    view = np.lib.stride_tricks.as_strided(
        base[tensor.offset :],
        shape=tensor.shape,
        strides=tuple(s * base.itemsize for s in tensor.stride),
        writeable=False,
    )
    if storage.type.name == "BFloat16Storage":  # the upper half of a float32
        return (view.astype(np.uint32) << 16).view(np.float32)
    return view.astype(base.dtype.newbyteorder("="), order="C", copy=True)


def read_torch_state_dict(path) -> dict[str, np.ndarray]:
    """Reads a PyTorch state dict saved with `torch.save`, in the legacy or the zip layout, without torch.

    Only tensors in an `OrderedDict` are admitted; the pickle cannot call anything but our stand-ins.

    Args:
        path: the `.pth` / `.pt` file.

    Returns:
        `{parameter name: array}` in the file's order, each a new C-contiguous array of the tensor's
        shape and dtype (bfloat16 widened to float32), e.g. `conv.weight` as `(out, in, kh, kw)`.

    Raises:
        lib.errors.MissingFileError: `path` does not exist.
        lib.errors.WeightsError: the file is truncated or damaged, not a PyTorch file, holds anything
            but tensors, or its pickle asks for a global a state dict never needs (refused before it runs).
    """
    path = existing_file(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(ZIP_SIGNATURE))
    except OSError as e:
        raise WeightsError(f"cannot read '{path}': {e.strerror}") from None
    if head == ZIP_SIGNATURE:
        read = _read_zip
    elif head.startswith(PICKLE_PROTO):
        read = _read_legacy
    else:
        raise WeightsError(
            f"'{path}' is empty or not a PyTorch file (neither a zip archive nor a pickle); pass a file "
            "written by torch.save(model.state_dict(), path)"
        )
    try:
        return _arrays(*read(path), path)
    except WeightsError:
        raise
    except _READ_ERRORS as e:
        raise WeightsError(f"'{path}' is truncated or not a PyTorch .pth file ({short_reason(e)})") from None


def _arrays(state, buffers, path) -> dict[str, np.ndarray]:
    if not isinstance(state, dict):
        raise WeightsError(f"'{path}' holds a {type(state).__name__}, not a state dict of tensors")
    for key, value in state.items():
        if type(key) is not str or not isinstance(value, _Tensor):
            raise WeightsError(
                f"'{path}' holds a {type(value).__name__} at {key!r:.60}, not only tensors; save "
                "model.state_dict() alone"
            )
    return {key: _array(tensor, buffers) for key, tensor in state.items()}
