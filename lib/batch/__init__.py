"""Explain a whole dataset: a resumable batch job that writes compact Parquet shards and a manifest.

    import lib.batch
    summary = lib.batch.run("val/", "squeezenet", "grad_cam,guided_grad_cam", "out/val")  # local runner
    lib.batch.run("val/", "squeezenet", "grad_cam", "out/val", runner="beam", workers=2)  # Apache Beam
    results = lib.batch.read("out/val")                 # every image: paths, class_ids, maps["grad_cam"]
    one = lib.batch.read("out/val", "val/cat.jpg")      # one image: maps["grad_cam"] (K, H, W)

The modules: `sources` (which images, in which order, decoded how), `job` (the model, methods and
classes, and the explaining shared by the runners), `shards` (the Parquet files), `manifest`
(job.json and manifest.json), `local` (in this process), `decoding` (its helper process that decodes
ahead), `beam` (RunInference), `devices` (MirroredStrategy), `results` (`read`). See doc/batch.md.
"""

from lib.batch.results import ImageResult, Results, read
from lib.batch.runs import Summary, run

__all__ = ["ImageResult", "Results", "Summary", "read", "run"]
