"""What the example-script tests share: load a script as a module, run it as a shell would, check figures."""

import contextlib
import importlib.util
import io
import shutil
import sys
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from lib import cli

ROOT = Path(__file__).resolve().parents[1]


def load_example(name):
    """The module of `example/<name>.py` (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "example" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(script, *argv):
    """(exit status, stdout, stderr, warning messages) of a script module run as from the shell."""
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        status = cli.run(script.main, script.parse_args([str(a) for a in argv]))
    return status, out.getvalue(), err.getvalue(), [str(item.message) for item in caught]


def _warning_to_stderr(message, category, filename, lineno, file=None, line=None):
    # What Python does outside pytest, which records warnings instead of printing them.
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_as_from_a_shell(capsys, script, *argv):
    """(exit status, stdout, stderr lines) of a script module, its warnings printed to stderr as a
    script's are (then `cli.run` turns them into `warning: ...` lines)."""
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # hidden outside __main__ too
        warnings.showwarning = _warning_to_stderr
        status = cli.run(script.main, script.parse_args([str(a) for a in argv]))
    out, err = capsys.readouterr()
    return status, out, err.splitlines()


def image_folder(root, names, bad=()):
    """A folder with copies of the named sample images and text files named like images."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(cli.SAMPLES_DIR / name, root / name)
    for name in bad:
        (root / name).write_text("not an image")
    return root


def files(folder):
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).exists() else []


def assert_picture(path, min_side=150, max_side=2500, min_std=10, min_colors=0):
    """A real picture: RGB(A), of a plausible size, not nearly constant, with enough distinct colours."""
    image = iio.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4), path
    assert min_side <= min(image.shape[:2]) and max(image.shape[:2]) <= max_side, (path, image.shape)
    assert image[..., :3].std() > min_std, f"{path} is nearly constant"
    if min_colors:
        assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > min_colors, path
