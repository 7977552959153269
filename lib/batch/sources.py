"""The images of a batch job: where they come from, in a fixed order, and how each one is decoded.

`images` may be a folder, a glob ("val/**/*.JPEG"), a text file of paths (one a line, relative to
the file's folder), TFRecord files of encoded images (".tfrecord", ".tfrec", or a glob of them), the
named sets "photos" and "grids" of the scripts, or a list of paths and `Picture`s. The order is fixed
(folders and globs sorted, lists as given), so that image `i` of a job is always the same image and
shard `s` always holds the same ones.

A TFRecord holds one `tf.train.Example` per image, with the encoded file in the feature
"image/encoded" and, optionally, its name in "image/filename" (the layout of the TensorFlow models'
ImageNet converters); images without a name are called "<file>#<record>".
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lib.dataflow import images as image_io
from lib.errors import InputError, MissingFileError

TFRECORD_SUFFIXES = (".tfrecord", ".tfrec")
ENCODED, FILENAME = "image/encoded", "image/filename"


@dataclasses.dataclass
class Source:
    """N images in a fixed order.

    Attributes:
        names: the N names recorded in the shards: the path as given, a Picture's name, or the
            TFRecord's "image/filename".
        items: for files, the N paths and Pictures to read; None for TFRecord sources.
        records: for TFRecord sources, (file, record number) of each image; None otherwise.
    """

    names: list[str]
    items: list | None = None
    records: list[tuple[str, int]] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def fingerprint(self) -> str:
        """sha256 of the names in order: a rerun with other images in the same folder is refused."""
        digest = hashlib.sha256()
        for name in self.names:
            digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        return digest.hexdigest()

    def encoded(self, start: int, stop: int):
        """(index, bytes) of the TFRecord images start .. stop - 1, read in order."""
        import tensorflow as tf

        files = sorted({self.records[i][0] for i in range(start, stop)}, key=self._file_order)
        index = start
        for file in files:
            first = min(r for f, r in self.records[start:stop] if f == file)
            count = sum(1 for f, _ in self.records[start:stop] if f == file)
            for record in tf.data.TFRecordDataset(file).skip(first).take(count).as_numpy_iterator():
                yield index, _parse(record)[0]
                index += 1

    def _file_order(self, file):
        return next(i for i, (f, _) in enumerate(self.records) if f == file)


def open_source(images: str | os.PathLike | Sequence) -> Source:
    """The `Source` that `images` names (see the module docstring).

    Raises:
        MissingFileError: a path that does not exist.
        InputError: nothing to read there, or a list that is empty.
    """
    if isinstance(images, image_io.Picture) or not isinstance(images, (str, os.PathLike)):
        items = [images] if isinstance(images, image_io.Picture) else list(images)
        if not items:
            raise InputError("no images given; pass a folder, a glob, a text file of paths or a list")
        if all(not isinstance(item, image_io.Picture) and _is_tfrecord(item) for item in items):
            return _tfrecord_source([os.fspath(item) for item in items])
        return _file_source(
            [item if isinstance(item, image_io.Picture) else os.fspath(item) for item in items]
        )
    text = os.fspath(images)
    if glob.has_magic(text) and not os.path.exists(text):
        found = sorted(glob.glob(text, recursive=True))
        if not found:
            raise InputError(f"no files match '{text}'; check the pattern")
        if all(_is_tfrecord(path) for path in found):
            return _tfrecord_source(found)
        return _file_source([path for path in found if _is_image_file(path)])
    if _is_tfrecord(text):
        return _tfrecord_source([text])
    if text.endswith(".txt") and os.path.isfile(text):
        return _file_source(_listed(text))
    from lib import cli

    return _file_source(cli.image_sources(text))  # a file, a folder, "photos" or "grids"


def _is_image_file(path):
    return os.path.isfile(path) and path.rpartition(".")[2].lower() in image_io.IMAGE_EXTENSIONS


def _is_tfrecord(path):
    return os.fspath(path).lower().endswith(TFRECORD_SUFFIXES)


def _file_source(items):
    if not items:
        raise InputError("no image files found; check --images")
    return Source(names=[os.fspath(item) for item in items], items=items)


def _listed(path):
    """The paths in a text file, one a line; relative ones are relative to the file's folder."""
    folder = Path(path).parent
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    paths = [line if os.path.isabs(line) else os.fspath(folder / line) for line in lines if line]
    if not paths:
        raise InputError(f"'{path}' lists no image paths; write one path a line")
    return paths


def _tfrecord_source(files):
    """Reads every record once for its name; the images are decoded later, shard by shard."""
    import tensorflow as tf

    names, records = [], []
    for file in files:
        if not os.path.isfile(file):
            raise MissingFileError(f"TFRecord file '{file}' does not exist; check --images")
        try:
            for number, record in enumerate(tf.data.TFRecordDataset(file).as_numpy_iterator()):
                name = _parse(record)[1]
                names.append(name or f"{file}#{number}")
                records.append((file, number))
        except tf.errors.DataLossError:
            raise InputError(f"TFRecord file '{file}' is corrupt or truncated; rewrite it") from None
    if not names:
        raise InputError(f"the TFRecord files {', '.join(files)} hold no records")
    return Source(names=names, records=records)


def _parse(record):
    """(encoded image bytes, name or "") of one serialised `tf.train.Example`."""
    import tensorflow as tf

    example = tf.train.Example.FromString(record)
    feature = example.features.feature
    if ENCODED not in feature:
        raise InputError(f"a TFRecord example has no '{ENCODED}' feature; write the encoded image there")
    name = feature[FILENAME].bytes_list.value[0].decode() if FILENAME in feature else ""
    return feature[ENCODED].bytes_list.value[0], name


class _NamedBytes(io.BytesIO):
    """Encoded bytes that print as their image's name, so the reader's messages name the image."""

    def __init__(self, data, name):
        super().__init__(data)
        self.name = name

    def __str__(self):
        return self.name


def decode(item, size: tuple[int, int], crop: bool = False, name: str | None = None) -> np.ndarray:
    """One image (H, W, 3) of `size`, its values as `lib.dataflow.images.load_images` reads them.

    A file or record already at `size` comes back as the reader's uint8, for the caller to store
    into its float32 batch in one cast: resizing would only convert it, one more copy of every pixel
    (a tenth of the decoding helper's time on 64x64 PNG files). Any other image comes back float32.

    Args:
        item: a path, a `Picture`, or the encoded bytes of a TFRecord image (then `name` names it).
        size: (height, width).
        crop: centre-crop to the aspect ratio of `size` first.

    Raises:
        InputError, MissingFileError: the image cannot be read.
    """
    if isinstance(item, bytes):
        # the reader's own decoder: the same conversions, size limit and messages as for files
        image = image_io._decode(_NamedBytes(item, name or "record"))
    elif isinstance(item, image_io.Picture):
        image = item.load()
    else:
        image = image_io.read_image(item)
    if crop:
        image = image_io.centre_crop(image, size[1] / size[0])
    if image.dtype == np.uint8 and image.shape[:2] == tuple(size):
        return image
    return image_io.resize(image, size=size)


def class_id_table(path: str | os.PathLike, source: Source) -> np.ndarray:
    """int32 (N, K): the class ids of each image from a CSV "path,class_id" (K ids split by spaces).

    A row matches an image by its name as listed, or by the file name alone.

    Raises:
        MissingFileError: no such CSV.
        InputError: an image without a row, ids that are not integers, or rows of different K.
    """
    if not os.path.isfile(path):
        raise MissingFileError(f"class-id file '{path}' does not exist; write 'path,class_id' rows")
    table = {}
    with open(path, newline="") as file:
        for row in csv.reader(file):
            if len(row) < 2 or row[0].strip().lower() == "path":
                continue
            try:
                ids = [int(value) for value in row[1].split()]
            except ValueError:
                raise InputError(f"'{path}': class ids {row[1]!r} are not integers") from None
            table[row[0].strip()] = ids
            table.setdefault(os.path.basename(row[0].strip()), ids)
    rows = []
    for name in source.names:
        ids = table.get(name, table.get(os.path.basename(name)))
        if ids is None:
            raise InputError(f"'{path}' has no class ids for image '{name}'; add a row '{name},<id>'")
        rows.append(ids)
    if len({len(ids) for ids in rows}) != 1:
        raise InputError(f"'{path}' gives images different numbers of classes; give each the same K")
    return np.asarray(rows, np.int32)
