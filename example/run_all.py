"""Runs every example on the bundled models and samples: the project's main job.

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

import lib  # noqa: F401  (quiet TensorFlow start-up)
from lib import cli

# (script module, its output folder under output/, its doc folder, extra arguments for the doc figures)
EXAMPLES = (
    ("vizfilter", "vizfilter", "firstfilter", []),
    ("gradcam", "gradcam", "grad_cam", []),
    ("cam", "cam", "cam", []),
    ("cam", "cam", "cam", ["--train"]),
    ("guided_backpropagation", "guided_backpropagation", "guided_backpropagation", []),
    ("guided_backpropagation", "guided_backpropagation", "guided_backpropagation", ["--sanity-check"]),
    ("deconv", "deconv", "deconv", []),
    ("deconv", "deconv", "deconv", ["--layer", "conv3_2", "--id", "49"]),
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
        out = ROOT / "doc" / doc_name / "figs" if args.figures else ROOT / "output" / output_name
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
