"""Manipulation localizers: networks that map an image to a per-pixel manipulation logit map, nothing else.

`localizer-unet` is MONAI's `BasicUNet` (2-D, one input channel, one output channel) at full resolution. The
detectors' segmentation heads read the first two stages of a classification encoder, and the regions a RePaint
inpainting or a splice leaves are not in those features (benchmarks/RESULTS.md, "seg46"); a network trained for
the map alone, at every scale, finds them (RESULTS, "Stop 49").

`localizer-fast` is the same network on the image folded into 2×2 pixel blocks (`pixel_unshuffle`: four channels at
half the side, no pixel lost), its map upsampled back: about 4.5x faster on a CPU, cheap enough to run on every image a
detector scores (its top evidence is the detectors' evidence cue, `detection.evidence.EvidenceCue`). A narrower one
(features 8-8-16-32-64-8, 8x faster) learned too little at CPU budgets (benchmarks/RESULTS.md, "Stop 50").

`localizer-stem` folds a full-resolution two-convolution stem (not the pixels) into the UNet and joins the UNet's
pixel-shuffled output with the stem's features in a full-resolution head. Registered for experiments: its 128-px
convolutions cost it more than half of `localizer-fast`'s speed (159 against 372 img/s, RESULTS "Stop 51")."""

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
    stem: int = 0  # >0 (with fold > 1): channels of a full-resolution stem folded into the UNet, and of a head


@dataclass(frozen=True)
class FastLocalizerConfig(LocalizerConfig):
    fold: int = 2


@dataclass(frozen=True)
class StemLocalizerConfig(LocalizerConfig):
    fold: int = 2
    stem: int = 8


class LocalizerUNet(nn.Module):
    """(N, 1, H, W) canonical images in [0, 1] → (N, 1, H, W) manipulation logits (H, W divisible by 16·fold)."""

    def __init__(self, cfg: LocalizerConfig):
        super().__init__()
        from monai.networks.nets import BasicUNet

        if cfg.fold < 1:
            raise ValueError(f"fold must be at least 1, not {cfg.fold}")
        if cfg.stem < 0 or (cfg.stem and cfg.fold == 1):
            raise ValueError(f"stem must be 0, or positive with fold > 1 (stem {cfg.stem}, fold {cfg.fold})")
        self.cfg = cfg
        c = cfg.stem or 1
        self.unet = BasicUNet(spatial_dims=2, in_channels=c * cfg.fold ** 2,
                              out_channels=c * cfg.fold ** 2 if cfg.stem else 1, features=tuple(cfg.features),
                              dropout=cfg.dropout)
        if cfg.stem:
            from monai.networks.blocks import Convolution
            from monai.networks.nets.basic_unet import TwoConv

            act, norm = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}), ("instance", {"affine": True})
            self.stem = TwoConv(2, 1, cfg.stem, act, norm, bias=True, dropout=cfg.dropout)
            self.head = nn.Sequential(Convolution(2, 2 * cfg.stem, cfg.stem, act=act, norm=norm, padding=1),
                                      nn.Conv2d(cfg.stem, 1, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.cfg.center) / self.cfg.scale
        if self.cfg.fold == 1:
            return self.unet(x)
        if self.cfg.stem:
            s = self.stem(x)
            u = F.pixel_shuffle(self.unet(F.pixel_unshuffle(s, self.cfg.fold)), self.cfg.fold)
            return self.head(torch.cat([s, u], dim=1))
        z = self.unet(F.pixel_unshuffle(x, self.cfg.fold))
        return F.interpolate(z, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register("localizer-unet", "localizer", LocalizerConfig)
def build_localizer_unet(cfg: LocalizerConfig) -> LocalizerUNet:
    return LocalizerUNet(cfg)


@register("localizer-fast", "localizer", FastLocalizerConfig)
def build_localizer_fast(cfg: FastLocalizerConfig) -> LocalizerUNet:
    return LocalizerUNet(cfg)


@register("localizer-stem", "localizer", StemLocalizerConfig)
def build_localizer_stem(cfg: StemLocalizerConfig) -> LocalizerUNet:
    return LocalizerUNet(cfg)
