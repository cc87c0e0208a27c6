"""A small real-image classifier whose penultimate features serve the Fréchet distance (no downloaded
Inception weights exist here; FRD-style, the feature network is trained by the project on the real train split)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.modalities import NUM_CLASSES
from .registry import register


@dataclass(frozen=True)
class FeatureNetConfig:
    block_inplanes: tuple[int, ...] = (16, 32, 64, 128)
    layers: tuple[int, ...] = (1, 1, 1, 1)
    num_classes: int = NUM_CLASSES


class FeatureNet(nn.Module):
    def __init__(self, cfg: FeatureNetConfig):
        super().__init__()
        from monai.networks.nets import ResNet

        self.cfg = cfg
        self.backbone = ResNet(block="basic", layers=list(cfg.layers), block_inplanes=list(cfg.block_inplanes),
                               spatial_dims=2, n_input_channels=1, feed_forward=False)
        self.fc = nn.Linear(cfg.block_inplanes[-1], cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@register("feature-resnet", "features", FeatureNetConfig)
def build_feature_net(cfg: FeatureNetConfig) -> FeatureNet:
    return FeatureNet(cfg)
