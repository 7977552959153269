"""The job's files beside its shards: `job.json`, what the folder is a run of, and `manifest.json`.

`job.json` is written before the first shard. A rerun in the same folder with the same job resumes;
with another model, weights, method, layer, classes, storage or images it is refused, as CAM training
refuses to resume another training. `manifest.json` is written when every shard is there, from the
shards' own metadata, so that an interrupted and resumed run ends with the same manifest as one
uninterrupted run.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from lib.atomic import write_atomically
from lib.batch import shards
from lib.errors import InputError

JOB_FILE, MANIFEST_FILE, MODEL_FILE = "job.json", "manifest.json", "model.keras"


def _dump(path, data):
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return write_atomically(path, lambda file: file.write(text.encode()))


def claim(out: Path, job: dict) -> None:
    """Writes `job.json`, or checks that the folder's one describes the same job.

    Raises:
        InputError: the folder holds a run of another job; names the first setting that differs.
    """
    path = out / JOB_FILE
    if not path.exists():
        _dump(path, job)
        return
    try:
        held = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"'{path}' is unreadable; delete the folder {out} to start over") from None
    for key in sorted(set(held) | set(job)):
        if held.get(key) != job.get(key):
            raise InputError(
                f"'{out}' holds a run of another job ({key}: {_short(held.get(key))} there, "
                f"{_short(job.get(key))} now); pass another --out, or delete the folder to start over"
            )


def _short(value, limit=70):
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def versions() -> dict:
    """Versions of what made the maps."""
    from importlib import metadata

    import lib

    found = {"python": platform.python_version(), "lib": lib.__version__}
    for package in ("tensorflow", "keras", "numpy", "pyarrow", "apache-beam"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def shard_paths(out: Path, count: int) -> list[Path]:
    return [out / shards.name(i, count) for i in range(count)]


def remove_stale_temporaries(out: Path) -> None:
    """Deletes the hidden temporary files a killed run left (`lib.atomic` names them `.tmp-*`)."""
    for path in out.glob(".tmp-*-shard-*.parquet"):
        path.unlink(missing_ok=True)


def write(out: Path, job: dict, count: int) -> Path:
    """`manifest.json` from `job` and the metadata of the `count` shards, which must all exist."""
    entries, skipped, explained = [], [], 0
    for path in shard_paths(out, count):
        meta = shards.metadata(path)
        rows = meta["stop"] - meta["start"] - len(meta["skipped"])
        entries.append({"file": path.name, "images": rows, "skipped": len(meta["skipped"])})
        skipped += [{"index": i, "path": p, "reason": r} for i, p, r in meta["skipped"]]
        explained += rows
    manifest = {
        **job,
        "versions": versions(),
        "counts": {"images": job["images"], "explained": explained, "skipped": len(skipped), "shards": count},
        "skipped": skipped,
        "shards": entries,
    }
    return _dump(out / MANIFEST_FILE, manifest)


def read(out: str | os.PathLike) -> dict:
    """The manifest of a finished job.

    Raises:
        InputError: no manifest (the job is unfinished, or the folder is not a job's).
    """
    path = Path(out) / MANIFEST_FILE
    if not path.is_file():
        held = "an unfinished job; rerun it to finish" if (Path(out) / JOB_FILE).exists() else "no job"
        raise InputError(f"'{out}' has no {MANIFEST_FILE}: it holds {held}")
    return json.loads(path.read_text())
