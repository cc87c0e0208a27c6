"""White-box attacks on Detector.score_tensor: FGSM and PGD (L∞), pushing each image across the decision
(fakes towards 'real', reals towards 'fake')."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

EPSILONS = (1 / 255, 2 / 255, 4 / 255)


def _loss(detector, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # ascending the BCE of the true label moves the logit across the decision boundary
    return torch.nn.functional.binary_cross_entropy_with_logits(detector.score_tensor(x), y, reduction="sum")


def fgsm(detector, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(_loss(detector, x, y), x)
    return (x + eps * g.sign()).clamp(0, 1).detach()


def pgd(detector, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10, alpha: float | None = None,
        random_start: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    alpha = eps / 4 if alpha is None else alpha
    x0 = x.detach()
    adv = x0.clone()
    if random_start:
        adv = (adv + (torch.rand(adv.shape, generator=generator) * 2 - 1).to(adv) * eps).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        (g,) = torch.autograd.grad(_loss(detector, adv, y), adv)
        adv = adv.detach() + alpha * g.sign()
        adv = torch.min(torch.max(adv, x0 - eps), x0 + eps).clamp(0, 1)
    return adv.detach()


def _acc(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return ((logits > 0).float() == y).cpu().numpy()


def evaluate_adversarial(detector, arrays: np.ndarray, y_true: Sequence[int], *, epsilons=EPSILONS,
                         pgd_steps: int = 10, batch: int = 32, seed: int = 0, device=None) -> dict:
    """arrays: (N,128,128) float in [0,1]. Accuracy on fake and on real images, clean vs FGSM / PGD at each ε,
    and the drop (clean − attacked). Decision: logit > 0 is fake."""
    dev = torch.device(device) if device else torch.device("cpu")
    x_all = torch.as_tensor(np.asarray(arrays, dtype=np.float32))[:, None]
    y_all = torch.as_tensor(np.asarray(y_true, dtype=np.float32))
    gen = torch.Generator().manual_seed(seed)
    correct: dict[str, list] = {"clean": []}
    for eps in epsilons:
        correct[f"fgsm@{eps * 255:g}"] = []
        correct[f"pgd@{eps * 255:g}"] = []
    for s in range(0, len(x_all), batch):
        x, y = x_all[s : s + batch].to(dev), y_all[s : s + batch].to(dev)
        with torch.no_grad():
            correct["clean"].append(_acc(detector.score_tensor(x), y))
        for eps in epsilons:
            for name, adv in (("fgsm", fgsm(detector, x, y, eps)),
                              ("pgd", pgd(detector, x, y, eps, pgd_steps, generator=gen))):
                with torch.no_grad():
                    correct[f"{name}@{eps * 255:g}"].append(_acc(detector.score_tensor(adv), y))
    y_np = y_all.numpy().astype(int)
    res = {"epsilons_255": [e * 255 for e in epsilons], "pgd_steps": pgd_steps, "n_fake": int(y_np.sum()),
           "n_real": int((1 - y_np).sum()), "conditions": {}}
    clean = np.concatenate(correct["clean"]) if correct["clean"] else np.zeros(0)

    def acc(c, cls):
        sel = y_np == cls
        return float(c[sel].mean()) if sel.any() else float("nan")

    for k, v in correct.items():
        c = np.concatenate(v) if v else np.zeros(0)
        res["conditions"][k] = {"acc_fake": acc(c, 1), "acc_real": acc(c, 0),
                                "drop_fake": acc(clean, 1) - acc(c, 1), "drop_real": acc(clean, 0) - acc(c, 0)}
    return res
