"""Manipulation localizers: networks that map an image to a per-pixel manipulation logit map, nothing else.

`localizer-unet` is MONAI's `BasicUNet` (2-D, one input channel, one output channel) at full resolution. The
detectors' segmentation heads read the first two stages of a classification encoder, and the regions a RePaint
inpainting or a splice leaves are not in those features (benchmarks/RESULTS.md, "seg46"); a network trained for
the map alone, at every scale, finds them (RESULTS, "Stop 49").

`localizer-fast` is the same network on the image folded into 2×2 pixel blocks (`pixel_unshuffle`: four channels at
half the side, no pixel lost), its map upsampled back: about 4.5x faster on a CPU, cheap enough to run on every image a
detector scores (its top evidence is the detectors' evidence cue, `detection.evidence.EvidenceCue`). A narrower one
(features 8-8-16-32-64-8, 8x faster) learned too little at CPU budgets (benchmarks/RESULTS.md, "Stop 50")."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register


@dataclass(frozen=True)
class LocalizerConfig:
    features: tuple[int, int, int, int, int, int] = (16, 16, 32, 64, 128, 16)  # BasicUNet: 5 levels + output
    dropout: float = 0.0
    center: float = 0.5  # input normalisation (x − center) / scale for canonical images in [0, 1]
    scale: float = 0.25
    fold: int = 1  # the image folded into fold×fold pixel blocks (channels) before the UNet; the map upsampled back


@dataclass(frozen=True)
class FastLocalizerConfig(LocalizerConfig):
    fold: int = 2


class LocalizerUNet(nn.Module):
    """(N, 1, H, W) canonical images in [0, 1] → (N, 1, H, W) manipulation logits (H, W divisible by 16·fold)."""

    def __init__(self, cfg: LocalizerConfig):
        super().__init__()
        from monai.networks.nets import BasicUNet

        if cfg.fold < 1:
            raise ValueError(f"fold must be at least 1, not {cfg.fold}")
        self.cfg = cfg
        self.unet = BasicUNet(spatial_dims=2, in_channels=cfg.fold ** 2, out_channels=1, features=tuple(cfg.features),
                              dropout=cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.cfg.center) / self.cfg.scale
        if self.cfg.fold == 1:
            return self.unet(x)
        z = self.unet(F.pixel_unshuffle(x, self.cfg.fold))
        return F.interpolate(z, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register("localizer-unet", "localizer", LocalizerConfig)
def build_localizer_unet(cfg: LocalizerConfig) -> LocalizerUNet:
    return LocalizerUNet(cfg)


@register("localizer-fast", "localizer", FastLocalizerConfig)
def build_localizer_fast(cfg: FastLocalizerConfig) -> LocalizerUNet:
    return LocalizerUNet(cfg)
