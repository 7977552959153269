"""Reading a finished job back: the maps, classes and scores of every image, or of one."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from lib.batch import manifest as manifests
from lib.batch import shards
from lib.errors import InputError


@dataclasses.dataclass
class Results:
    """What a job wrote, in image order (skipped images left out).

    Attributes:
        paths: the N image names.
        index: int64 (N,), each image's position in the job's images.
        class_ids: int32 (N, K); scores, probabilities: float32 (N, K).
        maps: {method: float32 (N, K, H, W) or (N, K, H, W, 3)}, dequantised.
        manifest: the job's manifest (model, methods, versions, counts, skipped images).
    """

    paths: list[str]
    index: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    probabilities: np.ndarray
    maps: dict[str, np.ndarray]
    manifest: dict

    def __len__(self) -> int:
        return len(self.paths)


@dataclasses.dataclass
class ImageResult:
    """One image of a job: its name, class ids, scores and probabilities (K,), maps {method: (K, ...)}."""

    path: str
    index: int
    class_ids: np.ndarray
    scores: np.ndarray
    probabilities: np.ndarray
    maps: dict[str, np.ndarray]


def read(out: str | os.PathLike, path: str | os.PathLike | None = None) -> Results | ImageResult:
    """The results of the job in `out`: every image's (`Results`), or one image's (`ImageResult`).

    Args:
        out: the job's folder.
        path: an image's name as the job recorded it (as listed, or its file name if that is unique).

    Raises:
        InputError: the job is unfinished, or no image of that name was explained (skipped ones say so).
    """
    out = Path(out)
    manifest = manifests.read(out)
    files = [out / entry["file"] for entry in manifest["shards"]]
    methods = [m["name"] for m in manifest["methods"]]
    if path is None:
        return _results([_decoded(shards.read(f)[0], methods) for f in files], methods, manifest)
    return _one(out, files, methods, manifest, os.fspath(path))


def _decoded(columns, methods):
    """The shard's columns with each method's maps dequantised to float32."""
    for name in methods:
        columns[name] = shards.dequantise(columns[name], columns.get(f"{name}_lo"), columns.get(f"{name}_hi"))
    return columns


def _results(parts, methods, manifest):
    def joined(key):
        return np.concatenate([part[key] for part in parts])

    return Results(
        paths=[p for part in parts for p in part["path"]],
        index=joined("index"),
        class_ids=joined("class_ids"),
        scores=joined("scores"),
        probabilities=joined("probabilities"),
        maps={name: joined(name) for name in methods},
        manifest=manifest,
    )


def _one(out, files, methods, manifest, path):
    """Finds the image by its name column only, then reads its shard."""
    import pyarrow.parquet as pq

    for file in files:
        names = pq.read_table(file, columns=["path"]).column("path").to_pylist()
        matches = [i for i, name in enumerate(names) if name == path]
        matches = matches or [i for i, name in enumerate(names) if os.path.basename(name) == path]
        if matches:
            columns = _decoded(shards.read(file)[0], methods)
            row = matches[0]
            return ImageResult(
                path=columns["path"][row],
                index=int(columns["index"][row]),
                class_ids=columns["class_ids"][row],
                scores=columns["scores"][row],
                probabilities=columns["probabilities"][row],
                maps={name: columns[name][row] for name in methods},
            )
    skipped = [s for s in manifest["skipped"] if path in (s["path"], os.path.basename(s["path"]))]
    if skipped:
        raise InputError(f"image '{path}' was skipped by the job in '{out}': {skipped[0]['reason']}")
    raise InputError(f"the job in '{out}' has no image '{path}'; pass a name as listed in its shards")
