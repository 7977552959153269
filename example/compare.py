"""Every method side by side on the same pictures and classes: rows image x class, columns methods.

Usage: python example/compare.py [--model squeezenet] [--images photos] [--methods grad_cam,score_cam]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory, no start-up log on the terminal

# isort: split

import numpy as np

from lib import cli, plot
from lib.compare import DEFAULT_LAYERS, compare, comparison_figure, per_image
from lib.errors import InputError
from lib.methods import catalog

PHOTOS = ("coffee", "chelsea", "camera", "grace_hopper")  # the default pictures: one clear class each
DPI = 80
COLORS = 256  # palette PNGs: a figure of 18 columns of photos stays a few hundred kB


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_model_arguments(parser, "squeezenet")
    cli.add_image_arguments(parser)
    parser.set_defaults(images="photos")
    parser.add_argument(
        "--methods",
        default=",".join(catalog.names()),
        help=f"comma-separated methods (default: all of {', '.join(catalog.names())})",
    )
    parser.add_argument("--layer", default=None, help="layer of the class-map methods (default: per network)")
    cli.add_class_id_argument(parser, "each image's top class")
    parser.add_argument(
        "--max-images", type=cli.positive_int, default=4, help="pictures compared (default 4)"
    )
    cli.add_output_arguments(parser, "compare")
    return parser.parse_args(argv)


def chosen_methods(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in catalog.ENTRIES]
    if unknown or not names:
        missing = ", ".join(unknown) or "(none)"
        raise InputError(f"--methods {text!r}: unknown {missing}; pick from {', '.join(catalog.names())}")
    return names


def pictures(args, size):
    """The images compared: the default photos for `--images photos`, else the first of `--images`."""
    sources = cli.image_sources(args.images)
    if args.images == "photos":
        sources = [s for s in sources if Path(s.name).stem in PHOTOS]
    run = cli.ImageRun(sources[: args.max_images], size, batch_size=args.max_images, crop=args.crop)
    batches = list(run)
    if not batches:
        raise InputError(f"none of the images could be read: {run.summary()}")
    return batches[0]


def main(args):
    if args.list_layers:
        print(cli.list_layers(cli.load_subject(args.model, args.weights).model))
        return 0
    names = chosen_methods(args.methods)
    cli.check_model_arg(args.model)
    out = cli.prepare_output(args.out)
    subject = cli.load_subject(args.model, args.weights)
    class_ids = cli.parse_class_id(args.class_id, subject.class_names)
    layer = args.layer or DEFAULT_LAYERS.get(subject.name)
    print(f"comparing {len(names)} methods on {subject.name} (layer {layer or 'the last spatial one'})")
    batch = pictures(args, subject.image_size)
    print(f"read {len(batch.paths)} image(s) from {args.images}")

    def report(compared):
        print(f"  {compared.label:<22} {per_image(compared.seconds):>12}  {compared.settings}")

    results = compare(subject.model, batch.images, names, class_ids=class_ids, layer=layer, progress=report)
    where = layer or "last spatial layer"
    title = f"{len(names)} methods on {subject.name} ({where}): time per image once compiled"
    fig = comparison_figure(
        batch.images, [Path(p).stem for p in batch.paths], results, subject.class_names, title
    )
    path = plot.save_figure(fig, out / "compare.png", dpi=DPI, colors=COLORS)
    maps = {r.name: np.asarray(r.result.maps, np.float32) for r in results}
    plot.save_mat(out / "compare.mat", {**maps, "class_ids": np.asarray(results[0].result.class_ids)})
    print(f"wrote {path} and compare.mat (each method's maps) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args()))
