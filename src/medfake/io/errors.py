from __future__ import annotations


class MedfakeError(Exception):
    """Base class for errors a user can act on (shown without a traceback)."""


class ImageReadError(MedfakeError):
    """A file could not be read as an image; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageTooLargeError(ImageReadError):
    """The declared image size exceeds the pixel limit (decompression-bomb guard)."""


class UnsupportedFormatError(ImageReadError):
    pass


class NotAnImageError(ImageReadError):
    """A readable DICOM object whose pixel data are not a picture (a Segmentation's label map, an RT Dose grid)."""
