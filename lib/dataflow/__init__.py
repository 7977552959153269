"""Data for the library: the generated shapes dataset (`shapes`), image file I/O (`images`), and real
photographs from installed packages with grids of them (`photos`)."""

from lib.dataflow.images import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    LoadResult,
    Picture,
    centre_crop,
    check_images,
    class_folders,
    iter_batches,
    list_images,
    load_images,
    read_image,
    resize,
)
from lib.dataflow.shapes import CLASS_NAMES, generate, write_image_folder

__all__ = [
    "CLASS_NAMES",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "LoadResult",
    "Picture",
    "centre_crop",
    "check_images",
    "class_folders",
    "generate",
    "iter_batches",
    "list_images",
    "load_images",
    "read_image",
    "resize",
    "write_image_folder",
]
