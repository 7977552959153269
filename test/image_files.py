"""Image files that tests fabricate: any array saved by Pillow, a header-only PNG of any size, a cut file."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def save(path, array, mode=None, **options):
    """`array` saved to `path` by Pillow (the format follows the suffix); returns `path`."""
    Image.fromarray(array, mode).save(path, **options)
    return path


def png_header(width, height):
    """A PNG that claims `width` x `height` RGB pixels but holds none: ~60 bytes, whatever the size."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def truncated(path, file_format, seed=0):
    """A real 64x64 image file of `file_format` ("PNG", "JPEG", ...) cut in half; returns `path`."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, file_format)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path
