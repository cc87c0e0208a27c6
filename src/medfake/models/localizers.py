"""Manipulation localizers: networks that map an image to a per-pixel manipulation logit map, nothing else.

`localizer-unet` is MONAI's `BasicUNet` (2-D, one input channel, one output channel) at full resolution. The
detectors' segmentation heads read the first two stages of a classification encoder, and the regions a RePaint
inpainting or a splice leaves are not in those features (benchmarks/RESULTS.md, "seg46"); a network trained for
the map alone, at every scale, finds them (RESULTS, "Stop 49")."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .registry import register


@dataclass(frozen=True)
class LocalizerConfig:
    features: tuple[int, int, int, int, int, int] = (16, 16, 32, 64, 128, 16)  # BasicUNet: 5 levels + output
    dropout: float = 0.0
    center: float = 0.5  # input normalisation (x − center) / scale for canonical images in [0, 1]
    scale: float = 0.25


class LocalizerUNet(nn.Module):
    """(N, 1, H, W) canonical images in [0, 1] → (N, 1, H, W) manipulation logits (H, W divisible by 16)."""

    def __init__(self, cfg: LocalizerConfig):
        super().__init__()
        from monai.networks.nets import BasicUNet

        self.cfg = cfg
        self.unet = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=tuple(cfg.features),
                              dropout=cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet((x - self.cfg.center) / self.cfg.scale)


@register("localizer-unet", "localizer", LocalizerConfig)
def build_localizer_unet(cfg: LocalizerConfig) -> LocalizerUNet:
    return LocalizerUNet(cfg)
