"""`import lib` changes nothing in the process; only `lib.quiet_tensorflow()`, which scripts call, does."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import lib

ROOT = Path(__file__).resolve().parents[1]

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
    """Runs PROBE as a shell would start it (no TF_CPP_MIN_LOG_LEVEL), from the repository root."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
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
