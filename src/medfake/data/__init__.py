"""Manifests, folder layouts, datasets, the six modalities, and the one canonical output path."""

from .canonical import canonical_png_bytes, to_canonical, write_canonical
from .manifest import Record, filter_records, read_folder, read_manifest, write_manifest
from .modalities import (
    CLASSES, HEALTHY, IMAGE_SIZE, MODALITIES, MODALITY_NAMES, NUM_CLASSES, UnknownChoiceError, check_label,
    check_modality, class_index, modality_index,
)

__all__ = [
    "canonical_png_bytes", "to_canonical", "write_canonical", "Record", "filter_records", "read_folder",
    "read_manifest", "write_manifest", "CLASSES", "HEALTHY", "IMAGE_SIZE", "MODALITIES", "MODALITY_NAMES",
    "NUM_CLASSES", "UnknownChoiceError", "check_label", "check_modality", "class_index", "modality_index",
]
