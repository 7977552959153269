"""Runs every example on real photos (SqueezeNet, EfficientNet-Lite0), then on the bundled shapes models.

Usage: python example/run_all.py [--figures]

By default figures go to output/<method>/. With --figures they go to doc/<method>/figs/, which
regenerates every figure committed in the docs (deterministically).
"""

import argparse
import importlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory, no start-up log on the terminal
from lib import cli

PHOTOS = ["--images", "photos"]
NO_FIGURES = ("explain_dataset",)  # writes shards, not figures: nothing for doc/
COMPARED = ["--max-images", "2"]  # every method on two photos: Score-CAM and RISE take seconds per image
# (script module, its output folder under output/, its doc folder, extra arguments). The real ImageNet
# networks on photographs come first, each in a subfolder named after the network; the bundled shapes
# models follow, for what needs ground truth or training (CAM training, the pointing game).
EXAMPLES = (
    ("vizfilter", "vizfilter/squeezenet", "firstfilter/squeezenet", ["--model", "squeezenet", *PHOTOS]),
    (
        "gradcam",
        "gradcam/efficientnet_lite0_grids",
        "grad_cam/efficientnet_lite0_grids",
        ["--model", "efficientnet_lite0", "--images", "grids", "--class-id", "espresso", "tripod"],
    ),
    ("gradcam", "gradcam/squeezenet", "grad_cam/squeezenet", ["--model", "squeezenet", *PHOTOS]),
    ("cam", "cam/squeezenet", "cam/squeezenet", ["--model", "squeezenet", *PHOTOS]),
    ("cam", "cam/efficientnet_lite0", "cam/efficientnet_lite0", ["--model", "efficientnet_lite0", *PHOTOS]),
    (
        "guided_backpropagation",
        "guided_backpropagation/squeezenet",
        "guided_backpropagation/squeezenet",
        ["--model", "squeezenet", *PHOTOS],
    ),
    ("deconv", "deconv/squeezenet", "deconv/squeezenet", ["--model", "squeezenet", *PHOTOS]),
    (
        "feature_viz",
        "feature_viz/squeezenet",
        "feature_viz/squeezenet",
        ["--model", "squeezenet", "--steps", "256"],
    ),
    ("compare", "compare/squeezenet", "compare/squeezenet", ["--model", "squeezenet", *PHOTOS, *COMPARED]),
    (
        "compare",
        "compare/efficientnet_lite0",
        "compare/efficientnet_lite0",
        ["--model", "efficientnet_lite0", *PHOTOS],
    ),
    ("vizfilter", "vizfilter", "firstfilter", []),
    ("gradcam", "gradcam", "grad_cam", []),
    ("cam", "cam", "cam", []),
    ("cam", "cam", "cam", ["--train"]),
    ("guided_backpropagation", "guided_backpropagation", "guided_backpropagation", []),
    ("guided_backpropagation", "guided_backpropagation", "guided_backpropagation", ["--sanity-check"]),
    ("deconv", "deconv", "deconv", []),
    ("deconv", "deconv", "deconv", ["--layer", "conv3_2", "--id", "49"]),
    ("compare", "compare", "compare", ["--model", "shapes_vgg", "--images", str(cli.SAMPLES_DIR)]),
    # dataset jobs (lib.batch): Parquet shards and a manifest, not figures; skipped by --figures
    (
        "explain_dataset",
        "explain_dataset/shapes",
        "batch/shapes",
        [
            "--generate",
            "3000",
            "--method",
            "grad_cam,cam",
            "--dtype",
            "uint8",
            "--shard-size",
            "500",
            "--batch-size",
            "50",
        ],
    ),
    (
        "explain_dataset",
        "explain_dataset/photos",
        "batch/photos",
        [
            "--model",
            "squeezenet",
            "--images",
            "photos",
            "--method",
            "grad_cam,guided_grad_cam",
            "--top-k",
            "2",
            "--batch-size",
            "8",
        ],
    ),
    (
        "explain_dataset",
        "explain_dataset/beam",
        "batch/beam",
        [
            "--generate",
            "400",
            "--method",
            "grad_cam,cam",
            "--dtype",
            "uint8",
            "--shard-size",
            "100",
            "--batch-size",
            "50",
            "--runner",
            "beam",
            "--workers",
            "2",
        ],
    ),
    ("evaluate", "evaluate", "metrics", []),  # every method scored on shapes_vgg and SqueezeNet: report.html
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", action="store_true", help="write into doc/<method>/figs instead")
    parser.add_argument("--only", nargs="+", help="run only these scripts (e.g. gradcam deconv)")
    return parser.parse_args(argv)


def main(args):
    sys.path.insert(0, str(ROOT / "example"))
    failures = []
    for script, output_name, doc_name, extra in EXAMPLES:
        if args.only and script not in args.only:
            continue
        if args.figures and script in NO_FIGURES:
            continue
        doc_folder, _, network = doc_name.partition("/")
        out = ROOT / "doc" / doc_folder / "figs" / network if args.figures else ROOT / "output" / output_name
        argv = ["--out", str(out), *extra]
        print(f"\n== {script}.py {' '.join(extra)} -> {out.relative_to(ROOT)}", flush=True)
        module = importlib.import_module(script)
        start = time.perf_counter()
        status = cli.run(module.main, module.parse_args(argv))
        print(f"== {script}.py finished in {time.perf_counter() - start:.0f} s (exit status {status})")
        if status:
            failures.append(script)
    if failures:
        print(f"\nfailed: {', '.join(failures)}", file=sys.stderr)
        return 1
    print("\nAll examples finished; figures are in", "doc/*/figs" if args.figures else "output/")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
