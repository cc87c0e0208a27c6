"""Torch datasets on MONAI transforms."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..io.readers import read_image
from .canonical import to_canonical
from .manifest import Record
from .modalities import CLASS_INDEX, MODALITY_NAMES


def load_array(path) -> np.ndarray:
    return to_canonical(read_image(path))


def train_transforms(augment: bool = True):
    """MONAI dictionary transforms on key 'image' (1×H×W float in [0,1])."""
    from monai.transforms import Compose, RandAffined, RandFlipd, ScaleIntensityRanged, ToTensord

    ts = []
    if augment:
        ts += [
            RandFlipd(keys="image", prob=0.5, spatial_axis=1),
            RandAffined(keys="image", prob=0.3, rotate_range=0.05, scale_range=0.05, padding_mode="border"),
        ]
    ts += [ScaleIntensityRanged(keys="image", a_min=0.0, a_max=1.0, b_min=-1.0, b_max=1.0), ToTensord(keys="image")]
    return Compose(ts)


class ImageDataset(torch.utils.data.Dataset):
    """Records → dict(image=1×128×128 tensor in [-1,1], cls=(modality,label) index, modality=index).

    Images are decoded once and cached in memory (medimg128 is 9,480 × 16 KB)."""

    def __init__(self, records: Sequence[Record], transform=None, cache: bool = True):
        self.records = list(records)
        self.transform = transform if transform is not None else train_transforms(augment=False)
        self._cache: dict[int, np.ndarray] = {}
        self.cache = cache

    def __len__(self) -> int:
        return len(self.records)

    def array(self, i: int) -> np.ndarray:
        if i in self._cache:
            return self._cache[i]
        a = load_array(self.records[i].path)
        if self.cache:
            self._cache[i] = a
        return a

    def __getitem__(self, i: int) -> dict:
        r = self.records[i]
        d = self.transform({"image": self.array(i)[None]})
        img = d["image"]
        img = img.as_tensor() if hasattr(img, "as_tensor") else torch.as_tensor(img)
        return {
            "image": img.float(),
            "cls": CLASS_INDEX.get((r.modality, r.label), -1),
            "modality": MODALITY_NAMES.index(r.modality) if r.modality in MODALITY_NAMES else -1,
        }
