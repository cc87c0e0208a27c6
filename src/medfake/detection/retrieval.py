"""Few-shot retrieval: a bank of L2-normalised encoder embeddings labelled real / synthetic / manipulated.

Embeddings are centred (minus the training-embedding mean, stored with the bank) before L2 normalisation:
pooled ReLU features are all positive, and uncentred cosine similarities crowd near 1.

The kNN score of a query is the similarity-weighted fraction of its k nearest references (cosine) that carry
each fake label; the detector fuses it with its classifier (`blend`): p = (1 - w)·p_classifier + w·p_knn, each
head's w from the card (`retrieval.weights`, chosen on validation). The shipped bank holds a sample of training
embeddings; `add` puts new examples in without retraining (CLI: `--reference DIR`).

Reference folder layout (recursive, any readable image format):

    DIR/real/...            real images
    DIR/synthetic/...       fully generated images (alias: DIR/fake/...)
    DIR/manipulated/...     locally edited images
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..io.errors import MedfakeError

LABELS = ("real", "synthetic", "manipulated")
FOLDER_ALIASES = {"real": "real", "synthetic": "synthetic", "fake": "synthetic", "manipulated": "manipulated"}


def blend(p_classifier, p_knn, w: float):
    """A head's probability with its kNN score fused in: (1 − w)·p_classifier + w·p_knn."""
    return (1 - w) * p_classifier + w * p_knn


def _normalise(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, dtype=np.float32)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-8)


class ReferenceBank:
    """`emb` holds centred, L2-normalised embeddings; `center` is subtracted from raw embeddings first."""

    def __init__(self, k: int = 5, tau: float = 0.05, center: np.ndarray | None = None):
        self.emb = np.zeros((0, 0), np.float32)
        self.labels = np.zeros(0, np.int64)
        self.k = k
        self.tau = tau
        self.center = None if center is None else np.asarray(center, np.float32)

    def _prep(self, e: np.ndarray) -> np.ndarray:
        e = np.asarray(e, np.float32)
        return _normalise(e - self.center if self.center is not None else e)

    def __len__(self) -> int:
        return int(self.labels.size)

    def copy(self) -> "ReferenceBank":
        b = ReferenceBank(self.k, self.tau, self.center)
        b.emb, b.labels = self.emb.copy(), self.labels.copy()
        return b

    def add(self, embeddings: np.ndarray, labels) -> None:
        e = self._prep(embeddings)
        lab = np.asarray([LABELS.index(v) if isinstance(v, str) else int(v) for v in labels], dtype=np.int64)
        if e.shape[0] != lab.size:
            raise ValueError("embeddings and labels differ in length")
        if len(self) and e.shape[1] != self.emb.shape[1]:
            raise ValueError(f"embedding size {e.shape[1]} differs from the bank's {self.emb.shape[1]}")
        self.emb = e if not len(self) else np.concatenate([self.emb, e])
        self.labels = np.concatenate([self.labels, lab])

    def knn(self, queries: np.ndarray) -> np.ndarray:
        """(N, 3) similarity-weighted label fractions among the k nearest references (rows sum to 1)."""
        q = self._prep(queries)
        out = np.zeros((q.shape[0], len(LABELS)), dtype=np.float64)
        if not len(self):
            out[:, 0] = 1.0
            return out
        # the product through torch, not numpy: numpy's BLAS keeps its own threads spinning after each call, and
        # beside torch's threads on a 2-core machine that slowed every detection batch by ~30 %
        # (benchmarks/RESULTS.md, 2026-12-02)
        sim = (torch.from_numpy(np.ascontiguousarray(q)) @ torch.from_numpy(np.ascontiguousarray(self.emb)).T).numpy()
        k = min(self.k, len(self))
        idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sim, idx, 1).astype(np.float64)
        w = np.exp((s - s.max(1, keepdims=True)) / self.tau)
        w /= w.sum(1, keepdims=True)
        lab = self.labels[idx]
        for j in range(len(LABELS)):
            out[:, j] = (w * (lab == j)).sum(1)
        return out

    def save(self, path: str | Path) -> Path:
        import torch

        from ..models.weights import save_weights

        # the unit-length embeddings as fp16: half the file, and every shipped detector's verdicts on the benchmark's
        # val and test images stay the same (benchmarks/RESULTS.md, stop 37); the centre stays fp32
        state = {"embeddings": torch.as_tensor(self.emb).half(), "labels": torch.as_tensor(self.labels)}
        if self.center is not None:
            state["center"] = torch.as_tensor(self.center)
        return save_weights(state, path, fp16=False, metadata={"k": self.k, "tau": self.tau})

    @classmethod
    def load(cls, path: str | Path) -> "ReferenceBank":
        from safetensors import safe_open

        from ..models.weights import load_state

        sd = load_state(path)
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        b = cls(int(meta.get("k", 5)), float(meta.get("tau", 0.05)),
                sd["center"].float().numpy() if "center" in sd else None)
        b.emb, b.labels = sd["embeddings"].float().numpy(), sd["labels"].numpy().astype(np.int64)
        return b


def reference_files(root: str | Path) -> list[tuple[Path, str]]:
    """(file, label) pairs from DIR/{real,synthetic|fake,manipulated}/** ; anything else is an error."""
    from ..io.readers import iter_image_files

    root = Path(root)
    if not root.is_dir():
        raise MedfakeError(f"reference folder not found: {root}")
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        label = FOLDER_ALIASES.get(sub.name.lower())
        if label is None:
            raise MedfakeError(f"{sub}: unknown reference label folder; use {', '.join(FOLDER_ALIASES)}")
        out += [(f, label) for f in iter_image_files([sub])]
    if not out:
        raise MedfakeError(f"{root}: no reference images (expected {root}/real/*, {root}/synthetic/* ...)")
    return out
