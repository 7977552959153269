"""Shards: Parquet files of explained images, one row per image, written whole or not at all.

Why Parquet (through pyarrow) and not TFRecord: it is columnar, so an analysis reads the class ids and
scores of 50,000 images without touching their maps; pandas, polars, DuckDB, Spark and BigQuery read
it as it is; each file carries typed columns and its own metadata (what was skipped, the maps'
shapes), where TFRecord is a stream of opaque protos that only TensorFlow parses.

Columns of a shard (K classes per image):
    index          int64, the image's position in the job's images
    path           string, its name (`sources.Source.names`)
    class_ids      K int32, the classes explained
    scores         K float32, their logits (before any softmax)
    probabilities  K float32, their softmax probabilities
    <method>       fixed-size binary: the image's maps (K, H, W) or (K, H, W, 3) as C-order float32,
                   float16 or uint8 bytes; dtype and shape are in the file's metadata ("maps")
    <method>_lo, <method>_hi  K float32 each, uint8 maps only: map k is lo + q * (hi - lo) / 255

Maps are one binary value per image, not a list of numbers: Parquet writes a repetition level for
every value of a list, which made writing input-space maps (12,288 values an image) cost more CPU
than decoding the images (256 images of (1, 64, 64, 3) float16: 0.08 s as lists, 0.015 s as binary).
`read` turns them back into arrays; with pyarrow alone, `np.frombuffer` does.

Class maps, in [0, 1], are quantised on that fixed range (step 1/255); input-space and score maps on
each map's own [min, max]. The error of a uint8 value is at most half a step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lib.atomic import atomic_path

MAP_DTYPES = ("float32", "float16", "uint8")
METADATA_KEY = b"lib.batch"
LEVELS = 255


def name(shard: int, count: int) -> str:
    return f"shard-{shard:05d}-of-{count:05d}.parquet"


def quantise(maps: np.ndarray, dtype: str, unit_range: bool) -> tuple[np.ndarray, np.ndarray | None, ...]:
    """(values, lo, hi) of maps (n, K, ...) stored as `dtype`; lo and hi (n, K) only for uint8.

    Args:
        unit_range: the maps are class maps in [0, 1], quantised on that range.
    """
    if dtype == "float16":
        import tensorflow as tf

        # TensorFlow's cast rounds as NumPy's does (to nearest even, bit for bit) and is 3x faster
        return tf.cast(maps, tf.float16).numpy(), None, None
    if dtype != "uint8":
        return maps.astype(dtype), None, None
    axes = tuple(range(2, maps.ndim))
    if unit_range:
        lo, hi = np.zeros(maps.shape[:2], np.float32), np.ones(maps.shape[:2], np.float32)
    else:
        lo, hi = maps.min(axis=axes).astype(np.float32), maps.max(axis=axes).astype(np.float32)
    span = _expand(hi - lo, maps.ndim)
    scaled = np.divide(
        maps - _expand(lo, maps.ndim), span, out=np.zeros(maps.shape, np.float32), where=span > 0
    )
    return np.rint(np.clip(scaled, 0, 1) * LEVELS).astype(np.uint8), lo, hi


def dequantise(values: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None) -> np.ndarray:
    """float32 maps from stored values; uint8 values with their (n, K) ranges."""
    if values.dtype != np.uint8:
        return values.astype(np.float32)
    step = _expand((hi - lo) / LEVELS, values.ndim)
    return (_expand(lo, values.ndim) + values.astype(np.float32) * step).astype(np.float32)


def _expand(array, ndim):
    return array.reshape(array.shape + (1,) * (ndim - array.ndim))


def table(block: dict, maps: dict, metadata: dict):
    """The pyarrow Table of a block of rows.

    Args:
        block: "index" (n,), "path" (n,) str, "class_ids", "scores", "probabilities" (n, K), and per
            method "<method>" values (n, *shape) and, for uint8, "<method>_lo", "<method>_hi" (n, K).
        maps: per method {"shape": (K, ...), "dtype": str}, for the schema of an empty shard too.
        metadata: JSON-able, kept in the file's metadata.
    """
    import pyarrow as pa

    n = len(block["index"])
    k = next(iter(maps.values()))["shape"][0]
    columns = {
        "index": pa.array(np.asarray(block["index"], np.int64)),
        "path": pa.array(list(block["path"]), pa.string()),
    }
    for key, dtype in (("class_ids", np.int32), ("scores", np.float32), ("probabilities", np.float32)):
        columns[key] = _fixed(np.asarray(block[key], dtype).reshape(n, k), k)
    for method, meta in maps.items():
        columns[method] = _binary(np.asarray(block[method], meta["dtype"]).reshape(n, *meta["shape"]))
        if meta["dtype"] == "uint8":
            for end in ("lo", "hi"):
                columns[f"{method}_{end}"] = _fixed(np.asarray(block[f"{method}_{end}"], np.float32), k)
    result = pa.table(columns)
    return result.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()})


def _fixed(values, size):
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, size)


def _binary(values):
    """(n, ...) values as n fixed-size binary values of their C-order bytes."""
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    width = values[0].nbytes if len(values) else int(np.prod(values.shape[1:])) * values.itemsize
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(values), [None, pa.py_buffer(values)])


def _unbinary(column, meta):
    """The (n, *shape) array of a fixed-size binary column written by `_binary`."""
    if len(column) == 0:
        return np.zeros((0, *meta["shape"]), meta["dtype"])
    width = column.type.byte_width
    data = column.buffers()[1]
    flat = np.frombuffer(data, np.uint8, count=len(column) * width, offset=column.offset * width)
    return flat.view(meta["dtype"]).reshape(len(column), *meta["shape"])


def write(path: str | os.PathLike, block: dict, maps: dict, metadata: dict) -> Path:
    """Writes one shard atomically: a temporary file beside `path`, renamed into place when whole."""
    import pyarrow.parquet as pq

    result = table(block, maps, metadata)
    with atomic_path(path) as tmp:
        # Dictionary encoding is no use on maps and triples the write time; byte-stream splitting
        # makes floats compress better.
        floats = [f"{field.name}.list.element" for field in result.schema if _is_float_list(field.type)]
        pq.write_table(result, tmp, compression="zstd", use_dictionary=False, use_byte_stream_split=floats)
    return Path(path)


def _is_float_list(kind):
    import pyarrow as pa

    return pa.types.is_fixed_size_list(kind) and pa.types.is_floating(kind.value_type)


def metadata(path: str | os.PathLike) -> dict:
    """The metadata a shard was written with (its shard number, range of images, skipped ones)."""
    import pyarrow.parquet as pq

    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])


def read(path: str | os.PathLike, columns=None) -> tuple[dict, dict]:
    """(columns as numpy arrays, metadata) of one shard; maps keep their stored dtype and shape."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = pq.read_table(path, columns=columns)
    meta = json.loads(file.schema.metadata[METADATA_KEY])
    n, out = file.num_rows, {}
    for key in file.column_names:
        column = file.column(key).combine_chunks()
        if key == "path":
            out[key] = column.to_pylist()
        elif pa.types.is_fixed_size_binary(column.type):
            out[key] = _unbinary(column, meta["maps"][key])
        elif pa.types.is_fixed_size_list(column.type):
            out[key] = column.flatten().to_numpy(zero_copy_only=False).reshape(n, column.type.list_size)
        else:
            out[key] = column.to_numpy()
    return out, meta
