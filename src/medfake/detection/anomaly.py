"""Anomaly score: Mahalanobis distance of a detector's encoder embedding from the distribution of *real* training
images (mean + Ledoit-Wolf shrunk covariance, scikit-learn). Large = unlike any real image seen in training.
Reported as `scores["anomaly"]` and the CSV column `anomaly`; it does not enter the verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class MahalanobisScorer:
    def __init__(self, mean: np.ndarray, precision: np.ndarray, reference_p99: float | None = None):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.precision = np.asarray(precision, dtype=np.float64)
        self.reference_p99 = reference_p99

    @classmethod
    def fit(cls, features: np.ndarray) -> "MahalanobisScorer":
        from sklearn.covariance import LedoitWolf

        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"anomaly fit needs at least 2 real feature vectors, got shape {f.shape}")
        lw = LedoitWolf().fit(f)
        scorer = cls(lw.location_, lw.precision_)
        scorer.reference_p99 = float(np.quantile(scorer.score(f), 0.99))
        return scorer

    def score(self, features: np.ndarray) -> np.ndarray:
        d = np.asarray(features, dtype=np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", d, self.precision, d), 0.0))

    def save(self, path: str | Path) -> Path:
        import torch

        from ..models.weights import save_weights

        return save_weights({"mean": torch.as_tensor(self.mean), "precision": torch.as_tensor(self.precision)},
                            path, fp16=False, metadata={"reference_p99": self.reference_p99})

    @classmethod
    def load(cls, path: str | Path) -> "MahalanobisScorer":
        from safetensors import safe_open

        from ..models.weights import load_state

        sd = load_state(path)
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        p99 = meta.get("reference_p99")
        return cls(sd["mean"].double().numpy(), sd["precision"].double().numpy(),
                   float(p99) if p99 not in (None, "None") else None)
