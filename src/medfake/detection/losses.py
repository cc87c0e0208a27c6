"""Losses: supervised contrastive (SupCon, Khosla et al. 2020, "L_out" form; MONAI only ships the unsupervised
SimCLR ContrastiveLoss) and the segmentation loss (MONAI DiceLoss + BCE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """features: (N, V, D) L2-normalised projections of V views per sample; labels: (N,).

    For every anchor, the mean over its positives (same label, other view/sample) of
    -log softmax(similarity / τ) over all non-anchor entries."""
    n, v, _ = features.shape
    z = features.reshape(n * v, -1)
    y = labels.repeat_interleave(v)
    logits = z @ z.T / temperature
    self_mask = torch.eye(n * v, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    keep = n_pos > 0
    if not keep.any():
        return z.sum() * 0.0
    mean_log_prob_pos = log_prob.masked_fill(~pos, 0.0).sum(1)[keep] / n_pos[keep]
    return -mean_log_prob_pos.mean()


class SegLoss(torch.nn.Module):
    """Dice (MONAI, sigmoid) + BCE on per-pixel manipulation logits; samples with weight 0 are ignored."""

    def __init__(self):
        super().__init__()
        from monai.losses import DiceLoss

        self.dice = DiceLoss(sigmoid=True, reduction="none", smooth_nr=1e-5, smooth_dr=1e-5)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if weight.sum() <= 0:
            return logits.sum() * 0.0
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(1, 2, 3))
        dice = self.dice(logits, target).reshape(logits.shape[0], -1).mean(1)
        # Dice is undefined in spirit for empty targets (real images): use BCE alone there
        has_fg = (target.flatten(1).sum(1) > 0).float()
        per = bce + has_fg * dice
        return (per * weight).sum() / weight.sum()
