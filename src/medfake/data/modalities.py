"""The six modalities, their labels, and which labels mean 'lesion' vs 'healthy'."""

from __future__ import annotations

from ..io.errors import MedfakeError

MODALITIES: dict[str, tuple[str, ...]] = {
    "brain_mri": ("glioma", "meningioma", "notumor", "pituitary"),
    "chest_xray": ("NORMAL", "PNEUMONIA"),
    "lung_ct": ("COVID", "NonCOVID"),
    "kidney_ct": ("Cyst", "Normal", "Stone", "Tumor"),
    "breast_us": ("benign", "malignant", "normal"),
    "knee_xray": ("0", "1", "2", "3", "4"),
}
HEALTHY: dict[str, str] = {
    "brain_mri": "notumor",
    "chest_xray": "NORMAL",
    "lung_ct": "NonCOVID",
    "kidney_ct": "Normal",
    "breast_us": "normal",
    "knee_xray": "0",
}
MODALITY_NAMES = tuple(MODALITIES)
IMAGE_SIZE = 128

# one flat index over (modality, label) pairs: the conditioning classes of the generators
CLASSES: tuple[tuple[str, str], ...] = tuple((m, lab) for m, labels in MODALITIES.items() for lab in labels)
CLASS_INDEX = {c: i for i, c in enumerate(CLASSES)}
NUM_CLASSES = len(CLASSES)


class UnknownChoiceError(MedfakeError, ValueError):
    pass


def check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise UnknownChoiceError(f"unknown modality {modality!r}; choose one of: {', '.join(MODALITY_NAMES)}")
    return modality


def check_label(modality: str, label: str | None) -> str | None:
    check_modality(modality)
    if label is None:
        return None
    label = str(label)
    if label not in MODALITIES[modality]:
        raise UnknownChoiceError(
            f"unknown label {label!r} for {modality}; choose one of: {', '.join(MODALITIES[modality])}"
        )
    return label


def class_index(modality: str, label: str) -> int:
    check_label(modality, label)
    return CLASS_INDEX[(modality, label)]


def modality_index(modality: str) -> int:
    return MODALITY_NAMES.index(check_modality(modality))
