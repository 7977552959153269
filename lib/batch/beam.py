"""The Beam runner: the job as an Apache Beam pipeline, on the DirectRunner here or Dataflow, Flink, Spark.

    pending shards -> Reshuffle -> decode each shard into the local runner's batches of images
        (unreadable ones to "skipped") -> RunInference(ExplainerHandler): one batch per call, one
        model and its methods per worker process -> (shard, row) + (shard, skipped)
        -> GroupByKey(shard) -> write each shard atomically, rows in image order

The handler rebuilds the worker's model and methods from the job's `Spec` (a model name, or the
.keras file saved in the job's folder), so that workers on other machines need only this package
and the folder. The batches are the local runner's (`local._stream`, `local.decode_batch`), so the
shards are the local runner's files, bit for bit, for every method.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np

from lib.batch import local, shards
from lib.errors import InputError


def _beam():
    try:
        import apache_beam
    except ImportError:
        raise InputError(
            "runner='beam' needs Apache Beam; pip install 'cnn-visualization-tf2[beam]' (or apache-beam)"
        ) from None
    return apache_beam


def handler_class():
    """`ExplainerHandler`, a RunInference model handler; made on first use so Beam loads only then."""
    from apache_beam.ml.inference.base import ModelHandler

    class ExplainerHandler(ModelHandler):
        """RunInference's model handler: the model is the job's `Worker`, an example one batch.

        The examples are the local runner's batches, (indices, images (B, H, W, 3)), made by
        `decode_shard`, one per call (`min_batch_size=max_batch_size=1`): sampling and perturbation
        methods (occlusion, RISE, SmoothGrad, Integrated Gradients, Eigen-CAM) give an image maps
        that differ in the last bit with the other images of its batch, so Beam's own batching of
        single images would make shards that differ from the local runner's in rounding.

        Args:
            spec: the job's `Spec`; per_image_ids: int32 (N, K) class ids from a CSV, or None.
        """

        def __init__(self, spec, per_image_ids):
            super().__init__(min_batch_size=1, max_batch_size=1)
            self.spec, self.per_image_ids = spec, per_image_ids

        def load_model(self):
            import lib
            from lib.batch import job

            lib.start_tensorflow()
            return job.load_worker(self.spec, self.per_image_ids)

        def run_inference(self, batch, model, inference_args=None):
            return [_rows(model, indices, images) for indices, images in batch]

        def get_num_bytes(self, batch):
            return sum(images.nbytes for _, images in batch)

    return ExplainerHandler


def _rows(worker, indices, images):
    """(index, row) of each image of a batch: the block of `Worker.explain`, cut into rows."""
    block = worker.explain(images, indices)
    return [
        (int(index), {key: values[i] for key, values in block.items()}) for i, index in enumerate(indices)
    ]


def decode_shard(shard, source, spec, shard_size, batch_size):
    """The local runner's batches of a shard, (indices, images) of the readable images; TaggedOutput
    "skipped" (shard, [index, name, reason]) for the others."""
    from apache_beam import pvalue

    for indices, data in local._stream(source, [shard], shard_size, batch_size):
        images, ok, reasons = local.decode_batch(source, spec, indices, data)
        for index, good, reason in zip(indices, ok, reasons, strict=True):
            if not good and index != local.PAD:
                yield pvalue.TaggedOutput(
                    "skipped", (shard, [int(index), source.names[index], reason.decode()])
                )
        if ok.any():
            yield indices[ok], images[ok]


def write_shard(grouped, out, count, names, maps, shard_size):
    """Writes one shard from its (kind, value) pairs, rows sorted by image; returns its row count."""
    shard, parts = grouped
    rows = sorted((value for kind, value in parts if kind == "row"), key=lambda row: row[0])
    skipped = sorted((value for kind, value in parts if kind == "skipped"), key=lambda item: item[0])
    blocks = [
        {
            "index": np.array([index]),
            "path": [names[index]],
            **{key: value[None] for key, value in row.items()},
        }
        for index, row in rows
    ]
    start, stop = local.shard_range(shard, shard_size, len(names))
    metadata = local.shard_metadata(shard, start, stop, skipped, maps)
    shards.write(out / shards.name(shard, count), local.concat(blocks, maps), maps, metadata)
    return len(rows)


def pipeline_options(workers, options):
    """Beam's PipelineOptions: the DirectRunner with `workers` processes unless `options` say otherwise.

    Workers log errors only, unless `options` set `--default_sdk_harness_log_level`.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    flags = list(options or [])
    if not any(flag.startswith("--default_sdk_harness_log_level") for flag in flags):
        flags.append("--default_sdk_harness_log_level=ERROR")
    mode = "multi_processing" if workers > 1 else "in_memory"
    return PipelineOptions(flags, direct_num_workers=workers, direct_running_mode=mode)


# Beam 2.77 warns on every batch when its optional torch-based model manager is not installed.
_NOISE = ("Resource module is not available", "apitools not found")


def _not_noise(record):
    return not record.getMessage().startswith(_NOISE)


@contextlib.contextmanager
def _quiet():
    """Beam's own INFO lines and its torch-less warnings kept off the terminal while the pipeline runs."""
    root, beam_logger = logging.getLogger(), logging.getLogger("apache_beam")
    level = beam_logger.level
    root.addFilter(_not_noise)
    beam_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeFilter(_not_noise)
        beam_logger.setLevel(level)


def run(plan, spec, workers, options) -> int:
    """Runs the plan's pending shards as a Beam pipeline; returns how many images were explained.

    Args:
        plan: the `job.Plan`; spec: the `Spec` workers rebuild the job from (its model a name or file).
        workers: DirectRunner worker processes; options: Beam flags passed through.
    """
    source, size, maps = plan.source, plan.shard_size, plan.worker.maps
    with _quiet():
        beam = _beam()
        from apache_beam.ml.inference.base import RunInference

        handler = handler_class()(spec, plan.worker.per_image_ids)
        with beam.Pipeline(options=pipeline_options(workers, options)) as pipeline:
            decoded = (
                pipeline
                | "shards" >> beam.Create(plan.pending)
                | "spread" >> beam.Reshuffle()
                | "decode"
                >> beam.FlatMap(decode_shard, source, spec, size, plan.batch_size).with_outputs(
                    "skipped", main="ok"
                )
            )
            rows = (
                decoded.ok
                | "explain" >> RunInference(handler)
                | "rows" >> beam.FlatMap(lambda rows: rows)
                | "by shard" >> beam.Map(lambda row: (row[0] // size, ("row", row)))
            )
            skipped = decoded.skipped | "skipped by shard" >> beam.MapTuple(
                lambda s, item: (s, ("skipped", item))
            )
            _ = (
                (rows, skipped)
                | beam.Flatten()
                | "gather" >> beam.GroupByKey()
                | "write" >> beam.Map(write_shard, plan.out, plan.count, source.names, maps, size)
            )
    return plan.explained()
