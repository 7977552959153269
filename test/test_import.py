"""`import lib` changes nothing in the process; only `lib.start_tensorflow()`, which scripts call, does."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import lib

ROOT = Path(__file__).resolve().parents[1]
STARTUP_VARIABLES = ("TF_CPP_MIN_LOG_LEVEL", "TF_CPU_ALLOCATOR_USE_BFC")  # conftest set them

# Imports `sys.argv[1]` (comma-separated modules) in a fresh process; reports what changed in
# os.environ, every os.dup/os.dup2 call, and the C++ log lines (`file.cc:line]`) left on stderr.
PROBE = """
import json, os, sys
calls = []
for name in ("dup", "dup2"):
    real = getattr(os, name)
    setattr(os, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
before = dict(os.environ)
for module in sys.argv[1].split(","):
    __import__(module)
if len(sys.argv) > 2:
    getattr(sys.modules["lib"], sys.argv[2])()
after = dict(os.environ)
changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
print(json.dumps({"changed": changed, "calls": calls, "tensorflow": "tensorflow" in sys.modules,
                  "level": os.environ.get("TF_CPP_MIN_LOG_LEVEL")}))
"""


def probe(modules, call=None):
    """Runs PROBE as a shell would start it (without the variables `start_tensorflow` sets), from the root."""
    env = {k: v for k, v in os.environ.items() if k not in STARTUP_VARIABLES}
    argv = [sys.executable, "-c", PROBE, ",".join(modules), *([call] if call else [])]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["cc_lines"] = sorted(re.findall(r"\b\w+\.cc:\d+\]", done.stderr))
    return report


def test_import_lib_alone_imports_no_tensorflow_and_changes_nothing():
    report = probe(["lib"])
    assert report == {"changed": [], "calls": [], "tensorflow": False, "level": None, "cc_lines": []}


def test_import_of_the_packages_changes_only_what_tensorflow_itself_changes():
    tensorflow_alone = probe(["tensorflow", "keras"])
    ours = probe(["lib", "lib.methods", "lib.nets"])
    assert ours["tensorflow"] and ours["calls"] == [] and ours["level"] is None
    assert "TF_CPP_MIN_LOG_LEVEL" not in ours["changed"]
    assert ours["changed"] == tensorflow_alone["changed"]  # TensorFlow sets TF2_BEHAVIOR and others
    assert set(tensorflow_alone["cc_lines"]) <= set(ours["cc_lines"])  # its own log still reaches stderr


def test_quiet_tensorflow_silences_the_start_up_log():
    report = probe(["lib"], call="quiet_tensorflow")
    assert report["tensorflow"] and report["level"] == "3"
    assert report["cc_lines"] == []


def test_quiet_tensorflow_keeps_a_log_level_the_user_set(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    lib.quiet_tensorflow()  # TensorFlow is imported already (conftest): only the level is considered
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


# Starts TensorFlow with `lib.start_tensorflow()`, then reports the minor page faults of one call of
# a compiled function whose 52 MB tensors (SqueezeNet's conv1 at batch 16) are above malloc's mmap
# threshold, after two warm-up calls.
FAULTS = """
import json, os, resource, sys
import lib
lib.start_tensorflow()
import tensorflow as tf
x = tf.random.normal((16, 113, 113, 64))
step = tf.function(lambda x: tf.nn.relu(x * 2.0 + 1.0) * 3.0)
step(x), step(x)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step(x)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({"faults": faults, "bfc": os.environ.get("TF_CPU_ALLOCATOR_USE_BFC")}))
"""


def faults_per_call(**env):
    environ = {k: v for k, v in os.environ.items() if k not in STARTUP_VARIABLES} | env
    done = subprocess.run(
        [sys.executable, "-c", FAULTS], capture_output=True, text=True, env=environ, cwd=ROOT, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_start_tensorflow_pools_cpu_memory_unless_the_user_chose_otherwise():
    pooled, unpooled = faults_per_call(), faults_per_call(TF_CPU_ALLOCATOR_USE_BFC="false")
    assert pooled["bfc"] == "true" and unpooled["bfc"] == "false"
    # each call maps 3 x 52 MB afresh without the pool: 38,000 faults of 4 KB pages, against 0 with it
    assert unpooled["faults"] > 10_000
    assert pooled["faults"] < 0.05 * unpooled["faults"]


def test_start_tensorflow_is_quiet_as_quiet_tensorflow():
    report = probe(["lib"], call="start_tensorflow")
    assert report["tensorflow"] and report["level"] == "3" and report["cc_lines"] == []
    quiet = probe(["lib"], call="quiet_tensorflow")
    assert report["changed"] == sorted([*quiet["changed"], "TF_CPU_ALLOCATOR_USE_BFC"])
