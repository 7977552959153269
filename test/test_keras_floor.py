"""The method, graph and Keras-internals tests on the lowest TensorFlow and Keras that pyproject.toml allows.

The first run creates `.venv-floor/` in the repository (ignored by git through its own `.gitignore`)
from `floor-requirements.txt`, which downloads TensorFlow and takes a few minutes; later runs reuse it
until that file changes.
"""

import contextlib
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import fcntl  # POSIX
except ImportError:
    fcntl = None

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = Path(__file__).with_name("floor-requirements.txt")
VENV = ROOT / ".venv-floor"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
STAMP = VENV / ".floor-requirements.sha256"
TESTS = [
    "test/test_keras_internals.py",
    "test/test_methods_core.py",
    "test/test_methods_graph.py",
    "test/test_methods_grad_cam.py",
    "test/test_methods_rules.py",
    "test/test_methods_deconvnet.py",
    "test/test_filters.py",
    "test/test_methods_bundled.py",
    "test/test_image_steps.py",
]
# TensorFlow 2.16 has wheels for CPython 3.9 to 3.12 only.
FLOOR_PYTHONS = ((3, 9), (3, 12))
# The floor environment sees only its own packages, whatever the environment running this test has.
PARENT_ONLY = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTEST_ADDOPTS")


def pins():
    """`{name: version}` of floor-requirements.txt, a version such as "2.16.1" or "1.11.*"."""
    lines = (line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines())
    return dict(line.split("==") for line in lines if line)


def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_floor_pins_are_the_lower_bounds_of_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]
    floors = {}
    for dependency in declared:
        match = re.match(r"\s*([A-Za-z0-9_.-]+)[^;]*?>=\s*([0-9.]+)", dependency)
        if match:
            floors[normalized(match[1])] = match[2]
    for name, pin in pins().items():
        floor = floors.get(normalized(name))
        assert floor, f"{name} is pinned in {REQUIREMENTS.name} but has no '>=' bound in pyproject.toml"
        parts = pin.removesuffix(".*").split(".")
        assert parts[: len(floor.split("."))] == floor.split("."), (
            f"{REQUIREMENTS.name} pins {name}=={pin} but pyproject.toml allows {name}>={floor}; "
            "make the pin the lower bound"
        )


@contextlib.contextmanager
def locked(path):
    """An exclusive lock on `path` (POSIX), so that two test runs do not install at once."""
    with open(path, "w") as handle:
        if fcntl:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def run(command, timeout):
    env = {k: v for k, v in os.environ.items() if k not in PARENT_ONLY}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def ensure_floor_environment():
    """Creates `.venv-floor/` with floor-requirements.txt, once per version of that file."""
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    VENV.mkdir(exist_ok=True)
    (VENV / ".gitignore").write_text("# created by test/test_keras_floor.py\n*\n")
    with locked(VENV / ".lock"):
        if STAMP.exists() and STAMP.read_text() == wanted:
            return
        if not PYTHON.exists():
            done = run([sys.executable, "-m", "venv", str(VENV)], timeout=600)
            assert done.returncode == 0, f"python -m venv {VENV} failed:\n{done.stderr[-3000:]}"
        pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        done = run([*pip, "-r", str(REQUIREMENTS)], timeout=3600)
        assert done.returncode == 0, (
            f"installing {REQUIREMENTS.name} into {VENV} failed (network?); the output ends:\n"
            f"{done.stderr[-3000:]}"
        )
        STAMP.write_text(wanted)


def installed_versions(names):
    code = "import sys, importlib.metadata as m; print(*(m.version(n) for n in sys.argv[1:]))"
    done = run([str(PYTHON), "-c", code, *names], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(zip(names, done.stdout.split(), strict=True))


@pytest.mark.slow
def test_method_tests_pass_on_the_lowest_allowed_tensorflow_and_keras():
    if not FLOOR_PYTHONS[0] <= sys.version_info[:2] <= FLOOR_PYTHONS[1]:
        pytest.skip(f"TensorFlow {pins()['tensorflow']} has no wheels for Python {sys.version_info[:2]}")
    ensure_floor_environment()
    wanted = pins()
    for name, version in installed_versions(list(wanted)).items():
        pin = wanted[name]
        assert version == pin or (pin.endswith(".*") and version.startswith(pin[:-1])), (name, version)
    done = run([str(PYTHON), "-m", "pytest", *TESTS, "-q", "-p", "no:cacheprovider"], timeout=3600)
    summary = "\n".join(done.stdout.splitlines()[-60:])
    assert done.returncode == 0, (
        f"method tests on the floor versions failed:\n{summary}\n{done.stderr[-2000:]}"
    )
