"""Entry point that works on a fresh machine with only python3: `python3 run.py demo|test|figures|bench`.

It creates `.venv/`, installs `requirements.txt` into it (the project itself, editable, with the test
tools; the dependencies are declared in `pyproject.toml`) when either file changed, then runs the job
inside the environment. Extra arguments go to the job (e.g. `python3 run.py test -k grad_cam`).
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
REQUIREMENTS = ROOT / "requirements.txt"
# What the installation depends on: requirements.txt installs the project, pyproject.toml declares its
# dependencies. A change to either re-installs.
INSTALL_INPUTS = (REQUIREMENTS, ROOT / "pyproject.toml")
STAMP = VENV / ".requirements.sha256"

# pytest-xdist workers of `test`, one per core up to 4 (each holds TensorFlow and its own models);
# whole test files go to one worker, so a file's shared fixtures are built once.
TEST_WORKERS = min(os.cpu_count() or 1, 4)
JOBS = {
    "demo": ["example/run_all.py"],
    "figures": ["example/run_all.py", "--figures"],
    "test": ["-m", "pytest", "-n", str(TEST_WORKERS), "--dist", "loadfile", "test"],
    "bench": ["bench/benchmark.py"],
}


def install_digest():
    """SHA-256 over the files that decide what is installed, each with its name."""
    digest = hashlib.sha256()
    for path in INSTALL_INPUTS:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def ensure_environment():
    """Creates the virtual environment and installs the requirements when they changed."""
    wanted = install_digest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PYTHON.exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        venv.create(VENV, with_pip=True)
    print("Installing requirements.txt (first run, or after it or pyproject.toml changed) ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # requirements.txt names the project as `.`, relative to the folder pip runs in.
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True, cwd=ROOT)
    STAMP.write_text(wanted)


def main(argv):
    if not argv or argv[0] not in JOBS:
        print(f"usage: python3 run.py {{{'|'.join(JOBS)}}} [arguments for the job]", file=sys.stderr)
        return 2
    ensure_environment()
    command = [str(PYTHON), *JOBS[argv[0]], *argv[1:]]
    return subprocess.run(command, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
