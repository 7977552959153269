"""Explain a whole dataset into Parquet shards and a manifest; a rerun with the same --out resumes.

Usage: python example/explain_dataset.py [--model shapes_vgg] [--method grad_cam,cam] [--images DIR]
       [--out output/explain_dataset] [--runner local|beam] [--workers 2]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory, no start-up log on the terminal

# isort: split

import lib.batch
from lib import cli
from lib.batch import runs, shards
from lib.batch.job import MAP_SIZES
from lib.dataflow.shapes import write_image_folder

GENERATED_SEED = 2026


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_model_arguments(parser, "shapes_vgg")
    parser.add_argument(
        "--method", default="grad_cam", help="method names, comma-separated (default grad_cam)"
    )
    parser.add_argument(
        "--images",
        default=str(cli.SAMPLES_DIR),
        help="a folder, a quoted glob, a text file of paths, TFRecord files or 'photos' (default: samples)",
    )
    parser.add_argument(
        "--generate",
        type=cli.positive_int,
        default=None,
        metavar="N",
        help="explain N generated shapes images instead, written once to <out>/generated/",
    )
    parser.add_argument(
        "--layer", default=None, help="layer of the methods that take one (default: the last)"
    )
    parser.add_argument("--top-k", type=cli.positive_int, default=1, help="classes per image (default 1)")
    cli.add_class_id_argument(parser, "each image's top --top-k classes; or one .csv of 'path,class_id' rows")
    parser.add_argument("--dtype", choices=shards.MAP_DTYPES, default="float16", help="how maps are stored")
    parser.add_argument(
        "--map-size", choices=MAP_SIZES, default="image", help="class maps at the image's or the layer's size"
    )
    parser.add_argument("--batch-size", type=cli.positive_int, default=32, help="images per forward pass")
    parser.add_argument("--shard-size", type=cli.positive_int, default=1024, help="images per shard file")
    parser.add_argument("--crop", action="store_true", help="centre-crop to the input's aspect ratio first")
    parser.add_argument("--runner", choices=runs.RUNNERS, default="local", help="local or beam")
    parser.add_argument(
        "--workers", type=cli.positive_int, default=1, help="Beam worker processes (DirectRunner)"
    )
    parser.add_argument(
        "--devices",
        type=cli.positive_int,
        default=None,
        help="split each batch over this many devices (MirroredStrategy)",
    )
    parser.add_argument(
        "--pipeline-option",
        action="append",
        default=[],
        metavar="FLAG",
        help="a Beam pipeline flag to pass on, e.g. --pipeline-option=--runner=DataflowRunner (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--out", type=Path, default=cli.ROOT / "output" / "explain_dataset", help="the job's folder"
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser.parse_args(argv)


def class_ids(args):
    """--class-id as ids, names, or the path of one CSV; None without it."""
    values = args.class_id
    if values and len(values) == 1 and values[0].lower().endswith(".csv"):
        return values[0]
    if values is None:
        return None
    return cli.parse_class_id(values, class_names(args))


def class_names(args):
    """The model's class names, without building a named model (only a model file is loaded)."""
    from lib.nets import bundled

    if args.model in bundled.names():
        from lib.dataflow.shapes import CLASS_NAMES

        return CLASS_NAMES
    if args.model in cli.IMAGENET_MODELS:
        from lib.nets.imagenet import class_names as imagenet_names

        return imagenet_names()
    return cli.load_subject(args.model, args.weights).class_names


def images(args):
    if args.generate is None:
        return args.images
    folder = args.out / "generated"
    if not (folder / "done").exists():  # written once, so that a rerun resumes on the same images
        write_image_folder(folder, args.generate, seed=GENERATED_SEED)
        (folder / "done").write_text(f"{args.generate} images, seed {GENERATED_SEED}\n")
    return folder


def main(args):
    if args.list_layers:
        print(cli.list_layers(cli.load_subject(args.model, args.weights).model))
        return 0
    cli.check_model_arg(args.model)
    summary = lib.batch.run(
        images(args),
        args.model,
        args.method,
        args.out,
        args.runner,
        layer=args.layer,
        top_k=args.top_k,
        class_ids=class_ids(args),
        dtype=args.dtype,
        map_size=args.map_size,
        crop=args.crop,
        weights=args.weights,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        workers=args.workers,
        devices=args.devices,
        pipeline_options=args.pipeline_option,
        progress=not args.quiet,
    )
    done = summary.shards - summary.written
    print(
        f"{summary.explained} images explained ({summary.skipped} skipped in the job) at "
        f"{summary.images_per_second:.0f} images/s; {summary.written} shard(s) written"
        + (f", {done} were there already" if done else "")
    )
    print(f"shards: {summary.out}/shard-*.parquet ({summary.shards}); manifest: {summary.manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args()))
