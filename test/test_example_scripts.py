"""Every example script as a program: bad input is one `error: ...` line and exit status 2, no traceback.

Warnings print as `warning: ...` lines. Scripts run in-process through `cli.run` (the same code path as
`__main__`, much faster), except where the real process matters: no traceback on stderr, and a real
Ctrl-C, which leaves only complete files. Checks that concern one script live in its test_example_*.py.
"""

import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from example_support import files, load_example, run_as_from_a_shell
from PIL import Image

from lib import cli

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("gradcam", "guided_backpropagation", "deconv", "vizfilter", "cam")
IMAGE = cli.SAMPLES_DIR / "04_ring.png"


@functools.cache
def script(name):
    return load_example(name)


def script_process(*argv, **kwargs):
    """`example/<script>.py argv` as a process started from a shell (where TensorFlow's log level is not
    yet set: `import lib` then sets it and keeps TensorFlow's start-up lines off stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, ROOT / "example" / argv[0], *argv[1:]]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A shell's background jobs ignore SIGINT, and Python then installs no KeyboardInterrupt
        # handler: give the script the Ctrl-C a terminal would, whatever started the tests.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kwargs,
    )


def assert_complete(path):
    """`path` is a whole PNG, .npy or .mat file: it decodes to the end."""
    if path.suffix == ".png":
        with Image.open(path) as image:
            image.load()
    elif path.suffix == ".npy":
        assert np.isfinite(np.load(path)).all()
    else:
        scipy.io.loadmat(path)


def _interrupt_once_written(process, out):
    """Sends Ctrl-C (SIGINT) to `process` as soon as its first .npy file is in `out`."""
    deadline = time.monotonic() + 150
    while not list(out.glob("*.npy")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)


@pytest.fixture(scope="module", autouse=True)
def processes(tmp_path_factory):
    """The two script runs that need a real process, started with the first test so that they overlap
    the in-process tests: {"error": (process, missing --images), "ctrl-c": (process, --out folder)}."""
    root = tmp_path_factory.mktemp("processes")
    folder, out, missing = root / "images", root / "out", root / "failed" / "photos"
    folder.mkdir()
    missing.parent.mkdir()
    samples = sorted(cli.SAMPLES_DIR.glob("*.png"))
    for i in range(24):
        shutil.copy(samples[i % len(samples)], folder / f"{i:02d}.png")
    interrupted = script_process("gradcam.py", "--images", folder, "--out", out, "--batch-size", "1")
    failed = script_process("gradcam.py", "--images", missing, "--out", missing.parent / "out")
    threading.Thread(target=_interrupt_once_written, args=(interrupted, out), daemon=True).start()
    yield {"error": (failed, missing), "ctrl-c": (interrupted, out)}
    for process in (interrupted, failed):
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_script_checks_its_output_folder_before_any_work(tmp_path, capsys, monkeypatch, name):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "out"

    def work(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(cli, "load_subject", work)
    status, stdout, err = run_as_from_a_shell(capsys, script(name), "--images", IMAGE, "--out", out)
    assert (status, stdout) == (2, "")
    assert err == [f"error: cannot write to output folder '{out}' (Not a directory); pass another --out"]
    assert files(tmp_path) == ["file"] and (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("name", ["deconv", "vizfilter", "cam"])
def test_missing_images_create_no_output_folder(tmp_path, capsys, name):
    missing, out = tmp_path / "nowhere", tmp_path / "out"
    status, stdout, err = run_as_from_a_shell(capsys, script(name), "--images", missing, "--out", out)
    assert (status, stdout, err) == (2, "", [f"error: path '{missing}' does not exist; check it"])
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "-3"])
@pytest.mark.parametrize("name", ["gradcam", "guided_backpropagation", "deconv", "vizfilter"])
def test_a_batch_size_below_1_is_refused_while_the_flags_are_parsed(tmp_path, capsys, name, value):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        script(name).parse_args(["--batch-size", value, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("usage: ")
    assert err[-1].endswith(f"error: argument --batch-size: {value} is not a positive integer")
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback_then_the_same_line(tmp_path, capsys):
    argv = ["--layer", "nope", "--out", tmp_path, "--debug"]
    status, out, err = run_as_from_a_shell(capsys, script("gradcam"), *argv)
    assert status == 2 and err[0] == "Traceback (most recent call last):"
    assert err[-2].startswith("lib.errors.LayerError: no layer 'nope'")
    assert err[-1].startswith("error: no layer 'nope' in the model; pick one of")


def test_a_script_error_is_one_stderr_line_and_exit_status_2_without_traceback(processes):
    process, missing = processes["error"]
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert (out, err) == ("", f"error: path '{missing}' does not exist; check it\n")
    assert files(missing.parent) == []


def test_ctrl_c_during_a_folder_run_leaves_only_complete_files_and_a_clear_message(processes):
    process, out = processes["ctrl-c"]
    _, err = process.communicate(timeout=180)
    assert process.returncode == 130, err
    assert err.splitlines() == ["interrupted; files already written are complete, nothing partial was left"]
    written = files(out)
    assert written and not [name for name in written if name.startswith(".") or name.endswith(".tmp")]
    assert len(written) < 3 * 24  # it was interrupted, not finished
    for name in written:
        assert_complete(out / name)
