"""Reading and writing medical images. Imports nothing else of medfake except the version."""

from .errors import ImageReadError, ImageTooLargeError, MedfakeError, NotAnImageError, UnsupportedFormatError
from .image import Image, Meta, to_uint
from .readers import WINDOW_PRESETS, iter_image_files, parse_window, read_image, read_images
from .writers import Provenance, dicom_bytes, native_stored_values, png_bytes, write_dicom, write_png

__all__ = [
    "Image", "Meta", "to_uint", "ImageReadError", "ImageTooLargeError", "MedfakeError", "NotAnImageError",
    "UnsupportedFormatError",
    "WINDOW_PRESETS", "iter_image_files", "parse_window", "read_image", "read_images", "Provenance",
    "dicom_bytes", "native_stored_values", "png_bytes", "write_dicom", "write_png",
]
