"""Fixtures for the evaluation tests: a tiny real image set, tiny generators trained 2 steps, and a small
real detector (logistic regression on differentiable pixel statistics) implementing the Detector contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medfake.detection.base import Detector, Prediction
from medfake.io.image import Image
from medfake.io.writers import write_png

MODS = {"chest_xray": ("NORMAL", "PNEUMONIA"), "lung_ct": ("COVID", "NonCOVID")}
TINY_DDPM = {"channels": [16, 16, 32], "attention_levels": [False, False, False], "norm_num_groups": 8,
             "num_head_channels": 8}
TINY_DCGAN = {"ngf": 8, "ndf": 8}
TINY_VAE = {"channels": [8, 8, 16], "norm_num_groups": 8}


def smooth_image(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """A smooth, anatomy-ish grey image (blurred blobs) — compresses and looks nothing like noise."""
    from scipy.ndimage import gaussian_filter

    a = gaussian_filter(rng.random((size, size)), 6)
    a = (a - a.min()) / (np.ptp(a) + 1e-9)
    yy, xx = np.mgrid[0:size, 0:size] / size
    a = 0.6 * a + 0.4 * np.exp(-((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.1)
    return np.clip(a, 0, 1).astype(np.float32)


def write_real_folder(root: Path, per_class: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for m, labels in MODS.items():
        for lab in labels:
            for i in range(per_class):
                write_png(smooth_image(rng), root / m / lab / f"{lab}_{i}.png")
    return root


@pytest.fixture(scope="session")
def real_folder(tmp_path_factory) -> Path:
    return write_real_folder(tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, real_folder) -> Path:
    """models dir with ddpm, dcgan and vae (.json + .safetensors) trained 2 steps."""
    from medfake.data import read_manifest
    from medfake.synthesis.train import train_generator

    out = tmp_path_factory.mktemp("models")
    recs = read_manifest(real_folder)
    torch.set_num_threads(1)
    train_generator("ddpm", recs, out, name="ddpm", config=TINY_DDPM, steps=2, batch_size=4, device="cpu",
                    ckpt_every=1000, log_every=1)
    train_generator("dcgan", recs, out, name="dcgan", config=TINY_DCGAN, steps=2, batch_size=4, device="cpu",
                    ckpt_every=1000, log_every=1)
    train_generator("vae", recs, out, name="vae", config=TINY_VAE, steps=2, batch_size=4, device="cpu",
                    ckpt_every=1000, log_every=1)
    return out


# ------------------------------------------------------------------ a small real detector

def _features(x: torch.Tensor) -> torch.Tensor:
    """Differentiable per-image statistics of x (N,1,H,W) in [0,1]: mean, std, mean |Laplacian|,
    high-frequency energy — smooth real images and noisy fakes differ in the last two."""
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype).view(1, 1, 3, 3)
    lap = torch.nn.functional.conv2d(x, k, padding=1)[:, :, 1:-1, 1:-1]
    return torch.stack([x.mean((1, 2, 3)), x.std((1, 2, 3)), lap.abs().mean((1, 2, 3)),
                        lap.pow(2).mean((1, 2, 3)).sqrt()], 1)


class PixelStatsDetector(Detector):
    """Logistic regression (scikit-learn) on pixel statistics; its weights run in torch for score_tensor."""

    name = "pixel-stats-lr"
    version = "test"

    def __init__(self):
        self.card = {"name": self.name, "threshold": 0.5}
        self.mean = self.scale = self.w = None
        self.b = 0.0

    def fit(self, images: list[Image], y) -> "PixelStatsDetector":
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        X = _features(self._tensor(images)).numpy()
        sc = StandardScaler().fit(X)
        lr = LogisticRegression(max_iter=1000, C=1.0).fit(sc.transform(X), np.asarray(y))
        self.mean = torch.tensor(sc.mean_, dtype=torch.float32)
        self.scale = torch.tensor(sc.scale_, dtype=torch.float32)
        self.w = torch.tensor(lr.coef_[0], dtype=torch.float32)
        self.b = float(lr.intercept_[0])
        return self

    @staticmethod
    def _tensor(images) -> torch.Tensor:
        from medfake.data import to_canonical

        return torch.from_numpy(np.stack([to_canonical(im) for im in images]))[:, None]

    def score_tensor(self, x: torch.Tensor) -> torch.Tensor:
        return ((_features(x) - self.mean) / self.scale) @ self.w + self.b

    def predict(self, images, *, explain: bool = False):
        with torch.no_grad():
            p = torch.sigmoid(self.score_tensor(self._tensor(images))).numpy()
        out = []
        for im, pi in zip(images, p):
            heat = mask = None
            if explain:
                a = im.array
                hp = np.abs(a - np.pad(a, 1, mode="edge")[1:-1, :-2])
                heat = hp / (hp.max() + 1e-9)
                mask = heat > 0.5
            out.append(Prediction(modality=im.meta.modality or "chest_xray", p_synthetic=float(pi),
                                  p_manipulated=0.0, verdict="synthetic" if pi >= 0.5 else "real",
                                  heatmap=heat, mask=mask))
        return out


@pytest.fixture()
def pixel_detector_cls():
    return PixelStatsDetector


def manipulation_methods() -> list[str]:
    """Classical manipulations plus the fast diffusion one, when the manipulation stage is importable."""
    try:
        from medfake.manipulation import manipulate  # noqa: F401
    except ImportError:
        return []
    return ["copy-move", "splice", "retouch", "repaint-ddim"]


BUILD_KW = dict(synthetic=["ddpm", "ddim", "dcgan"], per_modality=8, ddpm_steps=3, ddim_steps=3, repaint_steps=4,
                seed=7)


@pytest.fixture(scope="session")
def built(tmp_path_factory, real_folder, tiny_models) -> Path:
    """A small built data set (16 reals, 48 synthetic, up to 64 manipulated) shared by the tests."""
    from medfake.evaluation import build_dataset

    out = tmp_path_factory.mktemp("built")
    build_dataset(real_folder, out, manipulated=manipulation_methods(), models_dir=tiny_models, progress=False,
                  **BUILD_KW)
    return out
