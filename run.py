"""Entry point that works on a fresh machine with only python3: `python3 run.py demo|test|figures|bench`.

It creates `.venv/`, installs `requirements.txt` into it when that file changed, then runs the job
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
STAMP = VENV / ".requirements.sha256"

JOBS = {
    "demo": ["example/run_all.py"],
    "figures": ["example/run_all.py", "--figures"],
    "test": ["-m", "pytest", "test"],
    "bench": ["bench/benchmark.py"],
}


def ensure_environment():
    """Creates the virtual environment and installs the pinned requirements when they changed."""
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PYTHON.exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        venv.create(VENV, with_pip=True)
    print("Installing requirements.txt (first run only; a few minutes) ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
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
