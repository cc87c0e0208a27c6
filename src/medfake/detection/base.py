"""The detector contract shared by detection, evaluation, the CLI and the service.

A Detector takes canonical images (Image, any size: it resizes through medfake.data.to_canonical) and
returns one row per image. Every probability is in [0, 1].
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..io.image import Image

VERDICTS = ("real", "synthetic", "manipulated", "uncertain", "error")
CSV_HEADER = ("path", "modality", "p_synthetic", "p_manipulated", "verdict")


@dataclass
class Prediction:
    modality: str  # predicted (or known) modality name
    p_synthetic: float
    p_manipulated: float
    verdict: str  # one of VERDICTS
    scores: dict = field(default_factory=dict)  # extra scores: anomaly, retrieval, p_modality, ...
    heatmap: np.ndarray | None = None  # H×W float [0,1], the input image's size (Grad-CAM for synthetic)
    mask: np.ndarray | None = None  # H×W bool, predicted manipulated region (the input image's size)
    note: str = ""  # what the reader should know about this verdict (e.g. a small input's raised thresholds)


class Detector(ABC):
    """Registered detectors implement this. `name`/`version` come from the model card."""

    name: str = "detector"
    version: str = "0"
    card: dict

    @abstractmethod
    def predict(self, images: Sequence[Image], *, explain: bool = False) -> list[Prediction]:
        """Batch inference. explain=True fills heatmap/mask at each input image's own size."""

    @abstractmethod
    def score_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable: x (N,1,128,128) in [0,1] → (N,) logit of 'fake' (synthetic or manipulated).
        Used by the adversarial evaluation (FGSM/PGD)."""
