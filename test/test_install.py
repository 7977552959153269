"""`pip install .` of a clean clone gives a working `lib` in a fresh virtual environment, data included.

The clone is of the committed tree, so a data file that was never added to git fails here. The new
environment reuses this one's third-party packages through a `.pth` file (no TensorFlow download);
only the project is installed into it, without dependencies (pip's build isolation fetches setuptools
from the registry). A `.pth` line only adds a folder to `sys.path`: the `.pth` files inside that
folder, such as an editable install of `lib` here, are not processed, so nothing of the checkout
leaks in. The checks run from an empty folder.
"""

import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "cnn-visualization-tf2"
DATA_FILES = (
    "imagenet_classes.txt",
    "shapes_googlenet.md",
    "shapes_googlenet.weights.h5",
    "shapes_vgg.md",
    "shapes_vgg.weights.h5",
)

pytestmark = pytest.mark.slow

# Run by the new environment's python from an empty folder, after `pip install <clone>`.
CHECK_INSTALLED = f"""
import importlib.metadata as metadata
import sys
from importlib import resources
from pathlib import Path

import lib

lib.start_tensorflow()

import numpy as np
from packaging.requirements import Requirement

from lib.dataflow.shapes import generate
from lib.methods import GradCAM
from lib.nets import bundled, imagenet

assert Path(lib.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), lib.__file__
assert lib.__version__ == metadata.version({DISTRIBUTION!r})

# The distribution holds the package `lib` and nothing else, with its data files and type marker.
files = {{str(path) for path in metadata.files({DISTRIBUTION!r})}}
assert {{name.split("/")[0] for name in files if ".dist-info/" not in name}} == {{"lib"}}, files
assert "lib/py.typed" in files
for name in {DATA_FILES!r}:
    assert f"lib/nets/data/{{name}}" in files, name
    assert (resources.files("lib.nets") / "data" / name).is_file(), name

# Every runtime dependency is declared with a range that the environment the tests ran in satisfies.
for text in metadata.requires({DISTRIBUTION!r}):
    requirement = Requirement(text)
    if requirement.marker is None:  # the test extra's requirements carry `extra == "test"`
        found = metadata.version(requirement.name)
        assert requirement.specifier.contains(found, prereleases=True), (text, found)

# A bundled model with its trained weights explains a generated image.
model = bundled.load("shapes_vgg")
images, labels, _ = generate(16, seed=99)
images = images.astype(np.float32)  # (16, 64, 64, 3) RGB in 0-255
accuracy = float(np.mean(model.predict(images, verbose=0).argmax(axis=1) == labels))
assert accuracy >= 0.75, accuracy  # trained weights (random ones score about 1/8)
maps = GradCAM(model)(images[:2])  # (2, 1, 64, 64): each image's top class
assert maps.shape == (2, 1, 64, 64) and maps.dtype == np.float32, (maps.shape, maps.dtype)
assert 0 <= maps.min() and maps.max() <= 1 and maps.std() > 0.01, (maps.min(), maps.max(), maps.std())
assert len(imagenet.class_names()) == 1000

# The scripts' helpers import, and default to the current folder rather than to site-packages.
from lib import cli

assert cli.SAMPLES_DIR == Path("data", "samples"), cli.SAMPLES_DIR
print("installed lib works")
"""

# After `pip install -e <clone>`: `lib` comes from the clone, its data from the clone's files.
CHECK_EDITABLE = f"""
import sys
from importlib import resources
from pathlib import Path

import lib

clone = Path(sys.argv[1]).resolve()
assert Path(lib.__file__).resolve() == clone / "lib" / "__init__.py", lib.__file__
for name in {DATA_FILES!r}:
    assert (resources.files("lib") / "nets" / "data" / name).is_file(), name
assert "tensorflow" not in sys.modules
print("editable lib works")
"""


def clean_clone(tmp_path):
    """A clone of the committed tree, or a skip where the tests do not run in a git checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the project")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    return clone


def fresh_venv(folder):
    """A new virtual environment that sees this one's installed packages; returns its python."""
    venv.create(folder, with_pip=True, symlinks=os.name != "nt")
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    Path(site_packages, "_borrowed_site_packages.pth").write_text("\n".join(ours) + "\n")
    return python


def run_isolated(python, *argv, cwd):
    """`python argv` from `cwd`, with nothing of the checkout on the import path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    done = subprocess.run([str(python), *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{argv[:3]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def pip_install(python, *argv, cwd):
    run_isolated(
        python, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check", *argv, cwd=cwd
    )


def test_pip_install_of_a_clean_clone_works_from_another_folder(tmp_path):
    clone = clean_clone(tmp_path)
    python = fresh_venv(tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip_install(python, str(clone), cwd=elsewhere)
    assert "installed lib works" in run_isolated(python, "-c", CHECK_INSTALLED, cwd=elsewhere)


def test_editable_install_reads_the_clone(tmp_path):
    clone = clean_clone(tmp_path)
    python = fresh_venv(tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip_install(python, "-e", str(clone), cwd=elsewhere)
    assert "editable lib works" in run_isolated(python, "-c", CHECK_EDITABLE, str(clone), cwd=elsewhere)
