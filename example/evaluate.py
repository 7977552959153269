"""Which map to trust: every method scored by faithfulness, localisation and randomisation metrics.

Usage: python example/evaluate.py [--models shapes_vgg,squeezenet] [--methods grad_cam,rise] [--images 16]

Writes <out>/report.html (one self-contained page: the tables, the randomisation curves, every method's
maps on a few pictures), <out>/<model>.md (each model's table in markdown) and, for the bundled
models, <out>/<model>_randomisation.png (the randomisation curves).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory, no start-up log on the terminal

# isort: split

import time

from lib import cli, evaluation, plot, report
from lib.atomic import write_atomically
from lib.errors import InputError
from lib.methods import catalog

MODELS = ("shapes_vgg", "squeezenet")  # a bundled model on generated shapes, a real one on photos
GALLERY = 2  # pictures per model whose maps the page shows side by side


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated models: bundled ones ({', '.join(evaluation.BUNDLED)}) on generated shapes "
        f"with exact masks, ImageNet ones ({', '.join(evaluation.IMAGENET)}) on photos and grids of "
        f"photos (default {','.join(MODELS)})",
    )
    parser.add_argument(
        "--methods",
        default=",".join(catalog.names()),
        help=f"comma-separated methods (default: all of {', '.join(catalog.names())})",
    )
    parser.add_argument(
        "--images", type=cli.positive_int, default=16, help="generated images per bundled model (default 16)"
    )
    parser.add_argument(
        "--photos", type=cli.positive_int, default=4, help="photos per ImageNet model (default 4, at most 13)"
    )
    parser.add_argument(
        "--grids", type=int, default=2, help="2x2 grids of photos per ImageNet model (default 2)"
    )
    parser.add_argument(
        "--randomised-images",
        type=cli.positive_int,
        default=4,
        help="images of the randomisation tests, which explain each image once per layer (default 4)",
    )
    cli.add_output_arguments(parser, "evaluate")
    return parser.parse_args(argv)


def chosen(text, known, what):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise InputError(
            f"--{what} {text!r}: unknown {', '.join(unknown) or '(none)'}; pick from {', '.join(known)}"
        )
    return names


def main(args):
    models = chosen(args.models, (*evaluation.BUNDLED, *evaluation.IMAGENET), "models")
    names = chosen(args.methods, catalog.names(), "methods")
    out = cli.prepare_output(args.out)
    sections, started = [], time.perf_counter()
    for name in models:
        print(f"{name}: {len(names)} methods")
        done = evaluation.evaluate_model(
            name, names, args.images, args.photos, args.grids, args.randomised_images, progress=progress
        )
        table = report.markdown_table(done.table)
        path = plot.save_text(out / f"{name}.md", table + "\n")
        print(f"{table}\nwrote {path}")
        curves = done.curves_png()  # rendered once, for the file and the page
        if curves is not None:
            path = write_atomically(
                out / f"{name}_randomisation.png", lambda file, png=curves: file.write(png)
            )
            print(f"wrote {path}")
        sections.append(done.report_section(GALLERY, curves))
    title = f"Which map to trust: {len(names)} methods on {', '.join(models)}"
    page = report.write_report(out / "report.html", title, sections)
    print(f"wrote {page} ({page.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f} s")
    return 0


def progress(method, step):
    print(f"  {method:<22} {step}", flush=True)


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args()))
