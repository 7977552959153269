"""`run`: set a job up (images, model, methods, classes), claim its folder, and hand it to a runner."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lib.batch import job as jobs
from lib.batch import local, shards, sources
from lib.batch import manifest as manifests
from lib.errors import InputError

RUNNERS = ("local", "beam")


@dataclasses.dataclass
class Summary:
    """What a run did.

    Attributes:
        out: the job's folder; manifest: its manifest.json.
        shards: shards of the job; written: those this run wrote (the others were there already).
        explained: images this run explained; skipped: unreadable images of the whole job.
        seconds: wall time of the explaining and writing; images_per_second: explained / seconds.
    """

    out: Path
    manifest: Path
    shards: int
    written: int
    explained: int
    skipped: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.explained / self.seconds if self.seconds > 0 else 0.0


def run(
    images: str | os.PathLike | Sequence,
    model,
    methods,
    out: str | os.PathLike,
    runner: str = "local",
    *,
    layer: str | None = None,
    top_k: int = 1,
    class_ids: Sequence[int] | str | os.PathLike | None = None,
    dtype: str = "float16",
    map_size: str = "image",
    size: tuple[int, int] | None = None,
    crop: bool = False,
    weights: str | None = None,
    batch_size: int = 32,
    shard_size: int = 1024,
    workers: int = 1,
    devices: int | None = None,
    pipeline_options: Sequence[str] | None = None,
    progress: bool = False,
    on_shard: Callable[[int], None] | None = None,
) -> Summary:
    """Explains every image of `images` with `methods` and writes shards and a manifest to `out`.

    A rerun with the same `out` writes only the shards that are missing, and refuses a job that
    differs from the one the folder holds.

    Args:
        images: a folder, a glob, a text file of paths, TFRecord files, "photos", or a list of paths
            (`lib.batch.sources`).
        model: a keras.Model, a name of `lib.cli.model_names()`, or a saved model file (.keras, .h5).
        methods: a catalog name ("grad_cam"), names separated by commas, a list of names, or
            Explainer objects on `model` (local runner only).
        out: the job's folder.
        runner: "local" (in this process) or "beam" (an Apache Beam pipeline).
        layer: the layer of the methods that take one; None: each method's default (the last spatial).
        top_k: classes per image, each image's highest, when `class_ids` is None.
        class_ids: the same ids for every image, or a CSV "path,class_id" of ids per image.
        dtype: maps stored as "float32", "float16" or "uint8" (`lib.batch.shards`).
        map_size: "image", or "layer": class maps at the layer's size (area averages).
        size: (height, width) for a model that takes any size; others use their input size.
        crop: centre-crop each image to the input's aspect ratio before resizing.
        weights: `--weights` of a named ImageNet model.
        batch_size: images per forward pass, in both runners (part of the job: see `_identity`).
        shard_size: images per shard file.
        workers: Beam worker processes (DirectRunner); the local runner uses one process.
        devices: split each batch over this many of the visible devices with MirroredStrategy
            (local runner); None: one device.
        pipeline_options: Beam pipeline flags ("--runner=DataflowRunner", ...), passed through.
        progress: show a progress bar with images/s and the time left.
        on_shard: called with each shard number once that shard is written.

    Returns:
        `Summary`.

    Raises:
        InputError, MissingFileError: bad images, model, methods or options, or a folder holding
            another job.
    """
    _check_options(runner, dtype, map_size, batch_size, shard_size, workers)
    if runner == "beam":
        _check_beam(methods, devices)
    source = sources.open_source(images)
    model, reference, size = _model(model, weights, size, runner, out)
    explainers = jobs.build_explainers(model, jobs.method_names(methods), layer)
    fixed, per_image = _class_ids(class_ids, source, model)
    spec = jobs.Spec(
        model=reference or "",
        weights=weights,
        methods=tuple((name, e.layer) for name, e in explainers.items()),
        size=size,
        top_k=top_k,
        class_ids=fixed,
        dtype=dtype,
        map_size=map_size,
        crop=crop,
    )
    worker = jobs.Worker(_on_devices(explainers, devices), spec, per_image)
    identity = _identity(spec, worker, model, source, (shard_size, batch_size), class_ids)
    out = _claim(out, identity, model, reference, runner)
    count = math.ceil(len(source) / shard_size)
    pending = [i for i, path in enumerate(manifests.shard_paths(out, count)) if not path.exists()]
    plan = jobs.Plan(source, worker, out, pending, shard_size, count, batch_size)
    started = time.perf_counter()
    explained = _dispatch(plan, runner, workers, pipeline_options, progress, on_shard)
    seconds = time.perf_counter() - started
    path = manifests.write(out, identity, count)
    skipped = manifests.read(out)["counts"]["skipped"]
    return Summary(out, path, count, len(pending), explained, skipped, seconds)


def _check_options(runner, dtype, map_size, batch_size, shard_size, workers):
    if runner not in RUNNERS:
        raise InputError(f"runner={runner!r}; pass one of {', '.join(RUNNERS)}")
    if dtype not in shards.MAP_DTYPES:
        raise InputError(f"dtype={dtype!r}; pass one of {', '.join(shards.MAP_DTYPES)}")
    if map_size not in jobs.MAP_SIZES:
        raise InputError(f"map_size={map_size!r}; pass one of {', '.join(jobs.MAP_SIZES)}")
    for label, value in (("batch_size", batch_size), ("shard_size", shard_size), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{label}={value!r}; pass a positive integer")


def _check_beam(methods, devices):
    """Beam workers rebuild the methods from their names: objects and their options cannot travel."""
    if not all(isinstance(method, str) for method in jobs.method_names(methods)):
        raise InputError("runner='beam' rebuilds the methods in each worker; pass method names, not objects")
    if devices is not None:
        raise InputError("devices= is for the local runner; a Beam worker uses one device")


def _model(model, weights, size, runner, out):
    """(keras.Model, its name or file for workers, image size) of `model`."""
    from lib import cli

    reference = None
    if isinstance(model, (str, os.PathLike)):
        reference = os.fspath(model)
        subject = cli.load_subject(reference, weights)
        model, fixed = subject.model, subject.image_size
    else:
        cli.check_image_cnn(model, getattr(model, "name", "model"))
        fixed = cli.model_input_size(model)
    if fixed is not None and size is not None and tuple(size) != fixed:
        raise InputError(f"size={tuple(size)} but the model takes {fixed}; leave size out")
    if fixed is None and size is None:
        raise InputError("the model takes images of any size; pass size=(height, width) to resize them to")
    return model, reference, tuple(int(side) for side in (fixed or size))


def _class_ids(class_ids, source, model):
    """(the same ids for every image as a tuple, or None; int32 (N, K) ids per image, or None)."""
    from lib.methods.targets import parse_class_ids

    if class_ids is None:
        return None, None
    classes = int(model.outputs[0].shape[-1])
    if isinstance(class_ids, (str, os.PathLike)):
        table = sources.class_id_table(class_ids, source)
        parse_class_ids(table, len(table), classes)  # the library's range checks and messages
        return None, table
    ids = parse_class_ids(list(class_ids), 1, classes)
    return tuple(int(i) for i in ids[0]), None


def _on_devices(explainers, devices):
    if devices is None:
        return explainers
    from lib.batch.devices import Mirrored

    return {name: Mirrored(explainer, devices) for name, explainer in explainers.items()}


def _identity(spec, worker, model, source, sizes, class_ids):
    """What makes two runs the same job: compared key by key on a rerun (`manifest.claim`).

    The batch size is part of it: sampling and perturbation methods (occlusion, RISE, SmoothGrad,
    Integrated Gradients, Eigen-CAM) give an image maps that differ in the last bit with the other
    images of its batch, so a resumed run must batch as the interrupted one did.
    """
    import hashlib

    if isinstance(class_ids, (str, os.PathLike)):
        classes = {"csv_sha256": hashlib.sha256(worker.per_image_ids.tobytes()).hexdigest()}
    else:
        classes = {"ids": list(spec.class_ids)} if spec.class_ids else {"top_k": spec.top_k}
    methods = [
        {"name": name, "layer": meta["layer"], "kind": meta["kind"], "shape": list(meta["shape"])}
        for name, meta in worker.maps.items()
    ]
    return {
        "model": spec.model or model.name,
        "weights_sha256": jobs.weights_sha256(model),
        "input_size": list(spec.size),
        "crop": spec.crop,
        "methods": methods,
        "classes": classes,
        "dtype": spec.dtype,
        "map_size": spec.map_size,
        "shard_size": sizes[0],
        "batch_size": sizes[1],
        "images": len(source),
        "images_sha256": source.fingerprint(),
    }


def _claim(out, identity, model, reference, runner):
    from lib import cli

    out = cli.prepare_output(out)
    manifests.claim(out, identity)
    manifests.remove_stale_temporaries(out)
    if runner == "beam" and reference is None and not (out / manifests.MODEL_FILE).exists():
        from lib.atomic import atomic_path

        with atomic_path(out / manifests.MODEL_FILE) as tmp:  # what each Beam worker loads
            model.save(tmp)
    return out


def _dispatch(plan, runner, workers, options, progress, on_shard):
    from lib import cli

    if not plan.pending:
        return 0
    total, size = len(plan.source), plan.shard_size
    bar = cli.progress(sum(min(size, total - s * size) for s in plan.pending)) if progress else None
    if runner == "local":
        return local.run(plan, bar, on_shard)
    from lib.batch import beam

    spec = plan.worker.spec
    if not spec.model:
        spec = dataclasses.replace(spec, model=os.fspath(plan.out / manifests.MODEL_FILE))
    return beam.run(plan, spec, workers, options)
