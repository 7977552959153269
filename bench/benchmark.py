"""Speed of the methods as ratios to a forward and a forward-plus-backward floor timed in the same run.

Usage: .venv/bin/python bench/benchmark.py [--models vgg19] [--batch-sizes 1 8] [--repeats R] [--quick]

For each model and batch size the script times, in interleaved rounds (every call once per round, so
a change in machine load hits all of them alike): the compiled forward pass, forward plus backward
to the input, and each method's `__call__`, all on the same numpy images, as a user has them. Each
line gives the median wall time per image, and the median over rounds of the method's wall-time and
CPU-time ratios to its floor in the same round. Targets (issue 4): Grad-CAM and CAM at most 1.15x the
forward pass; Guided Grad-CAM for K classes at most 1.15x one forward plus K backward passes, a
backward pass being (forward + backward) - forward. CPU time (all threads of the process) is the
steadier measure on a machine shared with other jobs. Peak memory is the process's resident-set
high-water mark (CPU memory; `tf.config.experimental.get_memory_info` covers GPUs only). Then each
method is called on 1,000 single images in a loop, and the resident memory it gains is printed
(issue 4: it must not grow). The last lines time a fresh process that imports lib, loads a bundled
model and classifies 64 images (issue 3: under 10 s).
"""

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lib

lib.start_tensorflow()  # before keras: pooled CPU memory, no start-up log on the terminal

# isort: split
import numpy as np
import tensorflow as tf

# Every method object traces once per batch size, by design; `time_rounds` checks for real retracing.
tf.get_logger().setLevel("ERROR")

from lib.errors import LayerError
from lib.methods.cam import CAM
from lib.methods.deconvnet import Deconvnet
from lib.methods.grad_cam import GradCAM, GuidedGradCAM
from lib.methods.guided_backprop import GuidedBackprop
from lib.nets import bundled
from lib.nets.vgg import vgg19

MODELS = ("shapes_vgg", "shapes_googlenet", "vgg19")  # small first: peak memory then grows stepwise
LAYERS = {"vgg19": "conv5_4", **bundled.LAST_CONV_LAYER}
DEFAULT_REPEATS = {"vgg19": 3}  # per model; others use SMALL_REPEATS
SMALL_REPEATS = 20
FLOORS = ("forward", "forward+backward")
TARGET = 1.15
CLASSES_K3 = [0, 1, 2]
LOAD_TIME_LIMIT = 10.0  # seconds, issue 3
FEATURE_VIZ_REPEATS = 7  # rounds of one optimisation step (issue 14), then one full 512-step run
FEATURE_VIZ_BATCH = 16
PHOTO_JOB_IMAGES = 512  # JPEG photos of the batch-job section's second part, SqueezeNet at batch 16
FAMILY_REPEATS = 3  # rounds of the issue-12 methods (Score-CAM alone is 512 forward passes a call)
LOOP_MODEL = "shapes_vgg"
LOOP_WARM_UP = 100  # calls before the resident set size is first read
LOOP_GROWTH_LIMIT = 10.0  # MB of resident memory a method may gain over the measured calls


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed rounds per model and batch (default {DEFAULT_REPEATS['vgg19']} for vgg19, "
        f"{SMALL_REPEATS} for the bundled models)",
    )
    parser.add_argument(
        "--feature-viz-repeats",
        type=int,
        default=FEATURE_VIZ_REPEATS,
        help="timed rounds of one feature-visualization step of 16 objectives on SqueezeNet (0 skips them)",
    )
    parser.add_argument(
        "--batch-images",
        type=int,
        default=2000,
        help="generated images of the batch-job section (bench/batch.py; 0 skips it)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, bundled models only")
    parser.add_argument("--skip-load-time", action="store_true", help="skip the fresh-process load timing")
    parser.add_argument(
        "--family-repeats",
        type=int,
        default=FAMILY_REPEATS,
        help="timed rounds of the method families on SqueezeNet, one image per call (0 skips them)",
    )
    parser.add_argument(
        "--loop-calls",
        type=int,
        default=1000,
        help=f"single-image calls per method in the memory-in-a-loop check on {LOOP_MODEL} (0 skips it)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.models = [m for m in args.models if m != "vgg19"] or ["shapes_vgg"]
        args.repeats = 2
        args.loop_calls = min(args.loop_calls, 200)
        args.family_repeats = min(args.family_repeats, 1)
        args.feature_viz_repeats = 0
        args.batch_images = min(args.batch_images, 300)
    return args


def build_model(name):
    """The model to time and how its weights were obtained; speed does not depend on the weights."""
    if name == "vgg19":
        return vgg19(weights=None), "random weights"
    if bundled.weights_path(name).is_file():
        return bundled.load(name), "trained weights"
    return bundled.build(name), "random weights (trained weights not found)"


def floors(model):
    """Compiled forward pass and forward plus backward to the input, as the issue defines them."""

    @tf.function
    def forward(x):
        return model(x, training=False)

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(model(x, training=False)[:, 0])  # the sum of one logit
        return tape.gradient(score, x)

    return dict(
        zip(FLOORS, (lambda x: forward(x).numpy(), lambda x: forward_backward(x).numpy()), strict=True)
    )


def methods(model, layer):
    """name -> (call, backward passes in its floor, target or None), and the method objects."""
    grad_cam, guided = GradCAM(model, layer), GuidedGradCAM(model, layer)
    backprop, deconv = GuidedBackprop(model), Deconvnet(model, layer)
    objects = [grad_cam, guided, backprop, deconv]
    timed = {
        "Grad-CAM": (lambda x: grad_cam(x), 0, TARGET),
        "Guided Grad-CAM K=1": (lambda x: guided(x), 1, TARGET),
        "Guided Grad-CAM K=3": (lambda x: guided(x, class_ids=CLASSES_K3), 3, TARGET),
        "Guided backprop K=1": (lambda x: backprop(x), 1, None),
        "Deconvnet k=1": (lambda x: deconv(x, k=1), 1, None),
    }
    try:
        cam = CAM(model)
    except LayerError:  # no global average pooling -> dense at the top (VGG19's fc6-fc8)
        return timed, objects
    return {"Grad-CAM": timed.pop("Grad-CAM"), "CAM": (lambda x: cam(x), 0, TARGET), **timed}, [*objects, cam]


def time_rounds(calls, images, repeats, tracing_count):
    """Wall and CPU seconds of each call in each round, after one warm-up call of each.

    Returns:
        {name: float array (2, repeats)}: wall seconds, then CPU seconds of all the process's threads.

    Raises:
        RuntimeError: if a method traced again during the timed rounds (the times would be wrong).
    """
    for call in calls.values():
        call(images)  # traces and compiles
    traced = tracing_count()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            wall, cpu = time.perf_counter(), time.process_time()
            call(images)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    if tracing_count() != traced:
        raise RuntimeError("a method retraced during the timed rounds; its times include tracing")
    return {name: np.array(pairs).T for name, pairs in times.items()}


def rows_for(model_name, model, batch, repeats):
    """Table rows for one model and batch size."""
    size = model.inputs[0].shape[1:3]
    images = np.random.default_rng(batch).uniform(0, 255, (batch, *size, 3)).astype("float32")
    timed, objects = methods(model, LAYERS[model_name])
    calls = {**floors(model), **{name: call for name, (call, _, _) in timed.items()}}
    # every call gets the same numpy array, as users have it; each converts it to a tensor once
    times = time_rounds(calls, images, repeats, lambda: sum(m.tracing_count for m in objects))
    fwd, both = times["forward"], times["forward+backward"]  # (wall/cpu, round)
    rows = [_row(model_name, batch, name, times[name], fwd) for name in FLOORS]
    for name, (_, backward_passes, target) in timed.items():
        floor = (backward_passes, fwd + backward_passes * (both - fwd))  # per round
        rows.append(_row(model_name, batch, name, times[name], fwd, floor, target))
    return rows


def _row(model_name, batch, method, seconds, fwd, floor=None, target=None):
    """One line of the table from (wall/cpu, round) times; ratios are medians of per-round ratios."""
    row = {"model": model_name, "batch": batch, "method": method}
    row["ms/image"] = 1000 * float(np.median(seconds[0])) / batch
    row["x fwd"] = float(np.median(seconds[0] / fwd[0]))
    if floor is None:
        return {**row, "floor": "", "x floor": "", "cpu x floor": "", "target": ""}
    passes, floor_seconds = floor
    ratio = np.median(seconds / floor_seconds, axis=1)  # (wall, cpu)
    over = [kind for kind, r in zip(("wall", "cpu"), ratio, strict=True) if target and r > target]
    verdict = (
        "" if target is None else ("PASS" if not over else "over" if len(over) == 2 else f"{over[0]} over")
    )
    label = passes if isinstance(passes, str) else "fwd" if passes == 0 else f"fwd + {passes} bwd"
    return {
        **row,
        "floor": label,
        "x floor": float(ratio[0]),
        "cpu x floor": float(ratio[1]),
        "target": verdict,
    }


def print_table(rows):
    """A Markdown table, readable as it is in a terminal."""
    columns = list(rows[0])
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    for i, values in enumerate([columns, *cells]):
        print("| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def _cell(value):
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def peak_rss_mb():
    """Peak resident set size of this process so far, in MB (Linux reports KB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def current_rss_mb():
    """Resident set size of this process now, in MB; None where /proc is missing (macOS)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def report_loop_memory(calls):
    """Call each method on `calls` single images in a loop and print the resident memory it gained.

    Issue 4: a loop over a thousand single images must not grow memory (nor retrace). The first
    `LOOP_WARM_UP` calls fill TensorFlow's caches and are not counted.
    """
    model, _ = build_model(LOOP_MODEL)
    timed, objects = methods(model, LAYERS[LOOP_MODEL])
    size = model.inputs[0].shape[1:3]
    pool = np.random.default_rng(7).uniform(0, 255, (50, 1, *size, 3)).astype("float32")  # cycled
    growth = {}
    for name, (call, _, _) in timed.items():
        for i in range(LOOP_WARM_UP):
            call(pool[i % len(pool)])
        traced, before = sum(m.tracing_count for m in objects), current_rss_mb()
        for i in range(calls):
            call(pool[i % len(pool)])
        if sum(m.tracing_count for m in objects) != traced:
            raise RuntimeError(f"{name} retraced in a loop over single images of one size")
        growth[name] = None if before is None else current_rss_mb() - before
    if None in growth.values():
        print(f"loop of {calls} single images on {LOOP_MODEL}: no retracing; memory not measured (no /proc)")
        return
    over = [name for name, mb in growth.items() if mb > LOOP_GROWTH_LIMIT]
    verdict = (
        f"over {LOOP_GROWTH_LIMIT:.0f} MB: {', '.join(over)}"
        if over
        else f"PASS (limit {LOOP_GROWTH_LIMIT:.0f} MB)"
    )
    changes = ", ".join(f"{name} {mb:+.1f} MB" for name, mb in growth.items())
    print(
        f"loop of {calls} single images on {LOOP_MODEL}, resident memory: {changes}; no retracing; {verdict}"
    )


# Timed from before the TensorFlow import; prints the seconds at each stage and whether the weights
# were the trained ones. Random images: classifying them costs the same as classifying shapes.
LOAD_SCRIPT = """
import time
start = time.perf_counter()
import sys
sys.path.insert(0, {root!r})
import lib
lib.start_tensorflow()  # as the scripts start: this stage is the TensorFlow import
import keras
from lib.nets import bundled
imported = time.perf_counter()
trained = bundled.weights_path({name!r}).is_file()
model = bundled.load({name!r}) if trained else bundled.build({name!r})
loaded = time.perf_counter()
import numpy as np
images = np.random.default_rng(0).uniform(0, 255, (64, 64, 64, 3)).astype("float32")
classes = model.predict(images, batch_size=64, verbose=0).argmax(axis=1)
done = time.perf_counter()
print(imported - start, loaded - imported, done - loaded, trained)
"""


def load_time(name):
    """Seconds to import, load and classify in a fresh process, the total with interpreter start-up,
    and whether the trained weights were found."""
    start = time.perf_counter()
    script = LOAD_SCRIPT.format(root=str(ROOT), name=name)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    *stages, trained = out.stdout.split()[-4:]
    return [float(s) for s in stages], time.perf_counter() - start, trained == "True"


def report_load_time(name):
    """Print the fresh-process timing of `name` against the 10 s limit."""
    (imported, loaded, classified), total, trained = load_time(name)
    inside = imported + loaded + classified
    verdict = "PASS" if inside <= LOAD_TIME_LIMIT else f"over {LOAD_TIME_LIMIT:.0f} s"
    print(
        f"fresh process, {name} ({'trained' if trained else 'random'} weights): {inside:.1f} s {verdict} = "
        f"import lib {imported:.1f} s + load {loaded:.1f} s + classify 64 images {classified:.1f} s "
        f"({total:.1f} s with interpreter start-up and exit)",
        flush=True,
    )


def main(args):
    devices = ", ".join(d.device_type for d in tf.config.list_physical_devices()) or "CPU"
    print(f"TensorFlow {tf.__version__} on {devices}, {os.cpu_count()} cores, {_load()} at start", flush=True)
    rows, started = [], time.perf_counter()
    for name in args.models:
        before, section = peak_rss_mb(), time.perf_counter()
        model, weights = build_model(name)
        repeats = args.repeats or DEFAULT_REPEATS.get(name, SMALL_REPEATS)
        for batch in args.batch_sizes:
            rows += rows_for(name, model, batch, repeats)
        print(
            f"{name} ({weights}, {repeats} rounds, {time.perf_counter() - section:.0f} s, {_load()}): "
            f"peak RSS {peak_rss_mb():.0f} MB, +{peak_rss_mb() - before:.0f} MB in this section "
            "(a process high-water mark)",
            flush=True,
        )
        del model
    print()
    print_table(rows)
    for kind in ("over", "wall over", "cpu over"):
        lines = [f"{r['model']} batch {r['batch']} {r['method']}" for r in rows if r["target"] == kind]
        print(f"{kind} target: {', '.join(lines) or 'none'}")
    print(f"timing took {time.perf_counter() - started:.0f} s, {_load()} at end", flush=True)
    if args.family_repeats > 0:
        report_families(args.family_repeats)
    if args.feature_viz_repeats > 0:
        report_feature_viz(args.feature_viz_repeats)
    if args.loop_calls > 0:
        report_loop_memory(args.loop_calls)
    if not args.skip_load_time:
        for name in [m for m in args.models if m in bundled.names()]:
            report_load_time(name)
    if args.batch_images:
        report_batch(args)


def report_batch(args):
    """The dataset job of issue 15: local and Beam runners against the in-process loop (`batch.py`)."""
    from batch import report

    print(flush=True)
    methods = ("grad_cam",) if args.quick else ("grad_cam", "cam", "guided_grad_cam", "saliency")
    report(images=args.batch_images, methods=methods, repeats=1 if args.quick else 2, beam=not args.quick)
    if not args.quick:  # the job the issue names, ImageNet-sized photos before an ImageNet network
        print(flush=True)
        photos = min(args.batch_images, PHOTO_JOB_IMAGES)
        methods = ("grad_cam", "guided_grad_cam")
        report(photos, 16, "squeezenet", methods, repeats=2, beam=False, files="photos")


def report_families(repeats):
    """The method families of issue 12 on SqueezeNet, each against its own floor (`families.py`)."""
    from families import FAST_ROUNDS, family_rows

    started = time.perf_counter()
    rows = family_rows(time_rounds, _row, floors, batch=1, repeats=repeats)
    print(
        f"\nmethod families on squeezenet (fire9_concat, C = 512), one image per call, {repeats} rounds "
        f"({repeats * FAST_ROUNDS} for the gradient methods), {_load()}:"
    )
    print_table(rows)
    lines = [r["method"] for r in rows if r["target"] not in ("", "PASS")]
    print(f"over target: {', '.join(lines) or 'none'}; took {time.perf_counter() - started:.0f} s")
    print("peer: tf-keras-vis's Score-CAM takes more than 60 s for one VGG19 image on this kind of CPU")


def report_feature_viz(repeats):
    """One optimisation step of feature visualization and inversion on SqueezeNet (`feature_viz.py`)."""
    from feature_viz import FULL_RUN, TARGET, feature_viz_rows, full_run_seconds, vgg19_rows

    rows = feature_viz_rows(time_rounds, _row, floors, batch=FEATURE_VIZ_BATCH, repeats=repeats)
    rows += vgg19_rows(time_rounds, _row, floors, batch=4, repeats=max(1, repeats // 2))
    print(
        f"\nfeature visualization on squeezenet, B = {FEATURE_VIZ_BATCH} objectives per step, "
        f"{repeats} rounds, target {TARGET}x forward+backward, {_load()}:"
    )
    print_table(rows)
    seconds = full_run_seconds()
    print(
        f"a {FULL_RUN['steps']}-step visualisation of {FULL_RUN['channels']} channels of "
        f"{FULL_RUN['layer']}: {seconds:.0f} s, tracing included ({_load()})"
    )


def _load():
    return f"load average {os.getloadavg()[0]:.1f}"


if __name__ == "__main__":
    main(parse_args())
