"""Atomic file writes: every file the project writes appears whole or not at all.

A writer works on a temporary file beside the target and renames it over the target when done. A
rename within one folder is atomic, so a reader, a crash, a full disk or Ctrl-C leaves the target with
its previous content or the complete new one, never a partial file, and no temporary file behind.

    write_atomically(out / "maps.npy", lambda file: np.save(file, maps))   # writers of file objects
    with atomic_path(out / "epoch-001.weights.h5") as tmp:                  # writers of paths
        model.save_weights(tmp)
"""

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path` to write to; renames it over `path` when the block ends.

    The temporary name starts with a dot (hidden from `list_images` and from shells) and ends with
    `path`'s name, so writers that check or add a suffix (Keras `save_weights` wants `.weights.h5`,
    `np.savez` adds `.npz`) keep it. Its data reach the disk before the rename makes it visible. If the
    block raises, the temporary file is removed and `path` is untouched.

    Args:
        path: the final file; missing parent folders are created.

    Yields:
        The temporary `Path`; the block must create it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{secrets.token_hex(4)}-{path.name}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Calls `write(file)` on a new binary file beside `path`, then renames it over `path`.

    Args:
        path: the final file; missing parent folders are created.
        write: writes the content to the open binary file it is given; may raise to abandon the write.

    Returns:
        `path` as a `Path`.
    """
    with atomic_path(path) as tmp, open(tmp, "xb") as file:  # "x" honours the umask, like any new file
        write(file)
    return Path(path)
