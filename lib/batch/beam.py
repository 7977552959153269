"""The Beam runner: the job as an Apache Beam pipeline, on the DirectRunner here or Dataflow, Flink, Spark.

    pending shards -> Reshuffle -> decode each shard's images (unreadable ones to "skipped")
        -> RunInference(ExplainerHandler)  batches of min_batch_size .. max_batch_size images,
                                          one model and its methods per worker process
        -> (shard, row) + (shard, skipped) -> GroupByKey(shard) -> write each shard atomically

The handler rebuilds the worker's model and methods from the job's `Spec` (a model name, or the
.keras file saved in the job's folder), so that workers on other machines need only this package
and the folder. Shards are the same files as the local runner's: rows are sorted by image before
writing, and a method's maps of an image do not depend on the other images of its batch.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np

from lib.batch import local, shards
from lib.errors import InputError, MissingFileError


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
        """RunInference's model handler: the model is the job's `Worker`, the examples (index, image).

        Args:
            spec: the job's `Spec`; per_image_ids: int32 (N, K) class ids from a CSV, or None.
            batch_size: `max_batch_size` of RunInference's batching.
        """

        def __init__(self, spec, per_image_ids, batch_size, min_batch_size=None):
            # Beam's adaptive batching starts at 1 and doubles; every new size traces the methods
            # again, so by default batches are of batch_size (the rest of a bundle comes smaller).
            low = batch_size if min_batch_size is None else min(min_batch_size, batch_size)
            super().__init__(min_batch_size=low, max_batch_size=batch_size)
            self.spec, self.per_image_ids = spec, per_image_ids

        def load_model(self):
            import lib
            from lib.batch import job

            lib.quiet_tensorflow()
            return job.load_worker(self.spec, self.per_image_ids)

        def run_inference(self, batch, model, inference_args=None):
            indices = np.array([index for index, _ in batch], np.int64)
            block = model.explain(np.stack([image for _, image in batch]), indices)
            keys = [key for key in block if key not in ("index", "path")]
            return [(int(index), {key: block[key][i] for key in keys}) for i, index in enumerate(indices)]

        def get_num_bytes(self, batch):
            return sum(image.nbytes for _, image in batch)

    return ExplainerHandler


def decode_shard(shard, source, spec, shard_size):
    """(index, image) of each readable image of a shard; TaggedOutput "skipped" for the others."""
    from apache_beam import pvalue

    from lib.batch import sources

    start, stop = local.shard_range(shard, shard_size, len(source))
    if source.records is not None:
        items = source.encoded(start, stop)
    else:
        items = ((index, source.items[index]) for index in range(start, stop))
    for index, item in items:
        try:
            yield index, sources.decode(item, spec.size, spec.crop, source.names[index])
        except (InputError, MissingFileError) as err:
            yield pvalue.TaggedOutput("skipped", (shard, [index, source.names[index], str(err)]))


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


def run(source, spec, worker, out, pending, shard_size, count, batch_size, workers, options, per_image_ids):
    """Runs the pending shards as a Beam pipeline; returns how many images were explained."""
    with _quiet():
        beam = _beam()
        from apache_beam.ml.inference.base import RunInference

        handler = handler_class()(spec, per_image_ids, batch_size)
        with beam.Pipeline(options=pipeline_options(workers, options)) as pipeline:
            decoded = (
                pipeline
                | "shards" >> beam.Create(pending)
                | "spread" >> beam.Reshuffle()
                | "decode"
                >> beam.FlatMap(decode_shard, source, spec, shard_size).with_outputs("skipped", main="ok")
            )
            rows = (
                decoded.ok
                | "explain" >> RunInference(handler)
                | "by shard" >> beam.Map(lambda row: (row[0] // shard_size, ("row", row)))
            )
            skipped = decoded.skipped | "skipped by shard" >> beam.MapTuple(
                lambda s, item: (s, ("skipped", item))
            )
            _ = (
                (rows, skipped)
                | beam.Flatten()
                | "gather" >> beam.GroupByKey()
                | "write" >> beam.Map(write_shard, out, count, source.names, worker.maps, shard_size)
            )
    return sum(
        meta["stop"] - meta["start"] - len(meta["skipped"])
        for meta in (shards.metadata(out / shards.name(shard, count)) for shard in pending)
    )
