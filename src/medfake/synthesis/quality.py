"""Offline quality and memorisation measures for generators.

- Fréchet distance (MONAI's FIDMetric) on penultimate features of a classifier the project trains on the
  real train split (no pretrained Inception exists offline; this follows FRD's idea of domain features).
- Memorisation: each generated image's nearest-training-image distance in that feature space, compared with
  the real test images' nearest-training distances.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.datasets import ImageDataset, train_transforms
from ..data.manifest import Record
from ..models.cards import load_model, write_card
from ..models.registry import create, make_config
from ..models.weights import save_weights


def train_feature_net(records: list[Record], out_dir: str | Path, *, epochs: int = 3, batch_size: int = 64,
                      lr: float = 2e-3, seed: int = 0, name: str = "features") -> dict:
    from rich.progress import track

    torch.manual_seed(seed)
    cfg = make_config("feature-resnet")
    net = create("feature-resnet", cfg)
    ds = ImageDataset(records, train_transforms(augment=True))
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(dl))
    t0, correct, seen = time.time(), 0, 0
    for ep in range(epochs):
        correct = seen = 0
        for b in track(dl, description=f"feature net epoch {ep + 1}/{epochs}"):
            logits = net(b["image"])
            y = torch.as_tensor(b["cls"]).long()
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
    out_dir = Path(out_dir)
    save_weights(net, out_dir / f"{name}.safetensors")
    card = {"name": name, "architecture": "feature-resnet", "kind": "features", "version": time.strftime("%Y%m%d"),
            "config": cfg, "weights": f"{name}.safetensors", "data": f"{len(records)} real train images",
            "epochs": epochs, "train_accuracy_last_epoch": round(correct / max(seen, 1), 4),
            "training_minutes": round((time.time() - t0) / 60, 1), "metrics": {}}
    write_card(out_dir / f"{name}.json", card)
    return card


@torch.no_grad()
def features(net, arrays: np.ndarray | list, batch_size: int = 128) -> np.ndarray:
    """arrays: (N,128,128) float in [0,1] → (N, D) features."""
    arrays = np.asarray(arrays, dtype=np.float32)
    out = []
    for i in range(0, len(arrays), batch_size):
        x = torch.from_numpy(arrays[i : i + batch_size])[:, None] * 2 - 1
        out.append(net.features(x).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    from monai.metrics import FIDMetric

    return float(FIDMetric()(torch.from_numpy(a).double(), torch.from_numpy(b).double()))


def nearest_distances(query: np.ndarray, bank: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """Cosine distance from each query feature to its nearest bank feature."""
    q = query / (np.linalg.norm(query, axis=1, keepdims=True) + 1e-8)
    k = bank / (np.linalg.norm(bank, axis=1, keepdims=True) + 1e-8)
    d = 1.0 - q @ k.T
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def memorisation(gen_feats: np.ndarray, train_feats: np.ndarray, test_feats: np.ndarray) -> dict:
    g = nearest_distances(gen_feats, train_feats)
    r = nearest_distances(test_feats, train_feats)
    p1 = float(np.percentile(r, 1))
    return {"gen_nn_median": float(np.median(g)), "real_test_nn_median": float(np.median(r)),
            "real_test_nn_p1": p1, "frac_gen_closer_than_p1": float((g < p1).mean())}


def load_feature_net(name: str = "features", models_dir=None):
    net, card = load_model(name, models_dir)
    return net, card
