"""Detector architectures, all 1-channel 128 px input in [0, 1], trained from scratch.

Every detector returns the same dict from `forward(x)`:

- ``syn``: (N,) logit that the image is fully synthetic
- ``manip``: (N,) logit that the image is locally manipulated, or None (12-class ResNet has no such head)
- ``modality``: (N, 6) modality logits (order of `data.MODALITY_NAMES`)
- ``seg``: (N, 1, H, W) per-pixel manipulation logits at the input size, or None
- ``emb``: (N, D) pooled encoder features (retrieval bank, anomaly score, SupCon projection input)

Registered names: ``resnet18-12`` (MONAI ResNet, 12 classes = modality × {real, fake}, MedXFake-style),
``effnet-attn`` (MONAI EfficientNet-B0 features + CBAM attention head), ``dual-srm`` (spatial stream + fixed
SRM noise-residual stream, multi-head with segmentation whose map also feeds p_manipulated; the default),
``spatial-cnn`` (the same network with the noise stream switched off: the ablation that says what the SRM stream
adds) and ``manip-supcon`` (the dual-srm network trained with a supervised-contrastive warm-up; same architecture,
own name and card).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.modalities import MODALITY_NAMES
from .registry import register

NUM_MODALITIES = len(MODALITY_NAMES)


def _to_signed(x: torch.Tensor) -> torch.Tensor:
    return x * 2.0 - 1.0


class ProjectionHead(nn.Module):
    """MLP projection for supervised-contrastive pre-training (Khosla et al. 2020); unused at inference."""

    def __init__(self, dim: int, out: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, out))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(emb), dim=1)


# ------------------------------------------------------------------ (a) ResNet-18, 12 classes
@dataclass(frozen=True)
class ResNet12Config:
    layers: tuple[int, ...] = (2, 2, 2, 2)
    block_inplanes: tuple[int, ...] = (64, 128, 256, 512)
    proj_dim: int = 64


class ResNet12(nn.Module):
    """MONAI ResNet (basic blocks) over 12 classes: index 2·modality + fake."""

    def __init__(self, cfg: ResNet12Config):
        super().__init__()
        from monai.networks.nets import ResNet

        self.cfg = cfg
        self.net = ResNet(block="basic", layers=list(cfg.layers), block_inplanes=list(cfg.block_inplanes),
                          spatial_dims=2, n_input_channels=1, conv1_t_size=7, conv1_t_stride=2,
                          num_classes=2 * NUM_MODALITIES, feed_forward=False)
        dim = cfg.block_inplanes[-1]
        self.fc = nn.Linear(dim, 2 * NUM_MODALITIES)
        self.proj = ProjectionHead(dim, cfg.proj_dim)
        self.gradcam_layer = "net.layer4"

    def forward(self, x: torch.Tensor) -> dict:
        emb = self.net(_to_signed(x))  # feed_forward=False → pooled features (N, D)
        logits = self.fc(emb)
        pair = logits.view(-1, NUM_MODALITIES, 2)  # [..., 0] real, [..., 1] fake
        syn = torch.logsumexp(pair[..., 1], 1) - torch.logsumexp(pair[..., 0], 1)
        return {"syn": syn, "manip": None, "modality": torch.logsumexp(pair, 2), "seg": None, "emb": emb,
                "logits12": logits}


@register("resnet18-12", "detector", ResNet12Config)
def build_resnet12(cfg: ResNet12Config) -> ResNet12:
    return ResNet12(cfg)


# ------------------------------------------------------------------ (b) EfficientNet-B0 + CBAM
class CBAM(nn.Module):
    """Convolutional block attention (Woo et al. 2018): channel attention, then spatial attention."""

    def __init__(self, channels: int, reduction: int = 16, kernel: int = 7):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ca = torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1)))
        x = x * ca
        sa = torch.sigmoid(self.spatial(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))
        return x * sa


@dataclass(frozen=True)
class EffNetAttnConfig:
    model_name: str = "efficientnet-b0"
    # set both to build a narrower/shallower EfficientNet with the b0 block layout (tests, quick runs)
    width_coefficient: float | None = None
    depth_coefficient: float | None = None
    dropout: float = 0.2
    proj_dim: int = 64


class EffNetAttn(nn.Module):
    def __init__(self, cfg: EffNetAttnConfig):
        super().__init__()
        from monai.networks.nets import EfficientNet, EfficientNetBN

        self.cfg = cfg
        if cfg.width_coefficient is None and cfg.depth_coefficient is None:
            self.backbone = EfficientNetBN(cfg.model_name, pretrained=False, spatial_dims=2, in_channels=1,
                                           num_classes=1)
        else:
            blocks = ["r1_k3_s11_e1_i32_o16_se0.25", "r2_k3_s22_e6_i16_o24_se0.25", "r2_k5_s22_e6_i24_o40_se0.25",
                      "r3_k3_s22_e6_i40_o80_se0.25", "r3_k5_s11_e6_i80_o112_se0.25",
                      "r4_k5_s22_e6_i112_o192_se0.25", "r1_k3_s11_e6_i192_o320_se0.25"]
            self.backbone = EfficientNet(blocks, spatial_dims=2, in_channels=1, num_classes=1,
                                         width_coefficient=cfg.width_coefficient or 1.0,
                                         depth_coefficient=cfg.depth_coefficient or 1.0, image_size=128)
        dim = self.backbone._fc.in_features
        self.backbone._fc = nn.Identity()  # the heads below replace the classifier
        self.attn = CBAM(dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.head_syn = nn.Linear(dim, 1)
        self.head_manip = nn.Linear(dim, 1)
        self.head_modality = nn.Linear(dim, NUM_MODALITIES)
        self.proj = ProjectionHead(dim, cfg.proj_dim)
        self.gradcam_layer = "attn"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        h = b._swish(b._bn0(b._conv_stem(b._conv_stem_padding(_to_signed(x)))))
        h = b._blocks(h)
        return b._swish(b._bn1(b._conv_head(b._conv_head_padding(h))))

    def forward(self, x: torch.Tensor) -> dict:
        h = self.attn(self.features(x))
        emb = F.adaptive_avg_pool2d(h, 1).flatten(1)
        e = self.drop(emb)
        return {"syn": self.head_syn(e).squeeze(1), "manip": self.head_manip(e).squeeze(1),
                "modality": self.head_modality(e), "seg": None, "emb": emb}


@register("effnet-attn", "detector", EffNetAttnConfig)
def build_effnet_attn(cfg: EffNetAttnConfig) -> EffNetAttn:
    return EffNetAttn(cfg)


# ------------------------------------------------------------------ (c) dual-stream spatial + SRM noise
# Three SRM high-pass kernels (Fridrich & Kodovsky 2012) as used by RGB-N (Zhou et al. 2018).
SRM_KERNELS = (
    [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],  # /4
    [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]],  # /12
    [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],  # /2
)
SRM_NORMS = (4.0, 12.0, 2.0)


class SRMFilter(nn.Module):
    """Fixed (non-trainable, a buffer) SRM high-pass filters with truncation (TLU) on 8-bit intensity units."""

    def __init__(self, truncation: float = 3.0):
        super().__init__()
        k = torch.tensor(SRM_KERNELS, dtype=torch.float32) / torch.tensor(SRM_NORMS).view(3, 1, 1)
        self.register_buffer("weight", k.unsqueeze(1))  # (3, 1, 5, 5)
        self.truncation = truncation

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        r = F.conv2d(x01 * 255.0, self.weight, padding=2)
        return torch.clamp(r, -self.truncation, self.truncation) / self.truncation


@dataclass(frozen=True)
class DualSRMConfig:
    stem: int = 8  # channels of each stream's stem (64 px)
    widths: tuple[int, ...] = (16, 32, 64, 128, 192)  # fused encoder stages at 32, 16, 8, 4, 2 px
    subunits: int = 2  # convolutions per residual unit
    seg_channels: int = 16
    srm_truncation: float = 3.0
    dropout: float = 0.1
    proj_dim: int = 64
    # p_manipulated also reads the segmentation map (mean of its top 1% logits and its mean logit), so image-level
    # manipulation evidence is where the per-pixel supervision put it (as in MVSS-Net's map-to-label fusion)
    manip_from_seg: bool = True
    # False: no SRM noise stream; the spatial stem alone gives the 2 * stem channels the stages read
    noise_stream: bool = True


@dataclass(frozen=True)
class SpatialCNNConfig(DualSRMConfig):
    noise_stream: bool = False


SEG_TOPK_FRACTION = 0.01


def seg_evidence(seg: torch.Tensor) -> torch.Tensor:
    """(N, 2) image-level statistics of per-pixel manipulation logits: mean of the top 1% and the mean, ÷ 4."""
    flat = seg.flatten(1)
    k = max(1, int(flat.shape[1] * SEG_TOPK_FRACTION))
    return torch.stack([flat.topk(k, dim=1).values.mean(1), flat.mean(1)], 1) * 0.25


class DualSRM(nn.Module):
    """Spatial stream (conv on the image) ⊕ noise stream (fixed SRM residuals → conv), fused at 64 px and run
    through MONAI residual units; heads for p_synthetic, p_manipulated, modality and a light segmentation
    decoder (32 px and 16 px features → 128 px per-pixel manipulation logits)."""

    def __init__(self, cfg: DualSRMConfig):
        super().__init__()
        if len(cfg.widths) < 2:
            raise ValueError("dual-srm needs at least two encoder stages (widths)")
        from monai.networks.blocks import Convolution, ResidualUnit

        self.cfg = cfg
        self.srm = SRMFilter(cfg.srm_truncation) if cfg.noise_stream else None
        spatial = cfg.stem if cfg.noise_stream else 2 * cfg.stem
        self.spatial_stem = Convolution(2, 1, spatial, strides=2, kernel_size=3, act="relu", norm="batch")
        self.noise_stem = (Convolution(2, 3, cfg.stem, strides=2, kernel_size=3, act="relu", norm="batch")
                           if cfg.noise_stream else None)
        stages, cin = [], 2 * cfg.stem
        for w in cfg.widths:
            stages.append(ResidualUnit(2, cin, w, strides=2, kernel_size=3, subunits=cfg.subunits, act="relu", norm="batch"))
            cin = w
        self.stages = nn.ModuleList(stages)
        dim = cfg.widths[-1]
        self.drop = nn.Dropout(cfg.dropout)
        self.head_syn = nn.Linear(dim, 1)
        self.head_manip = nn.Linear(dim + (2 if cfg.manip_from_seg else 0), 1)
        self.head_modality = nn.Linear(dim, NUM_MODALITIES)
        s = cfg.seg_channels
        self.seg_a = Convolution(2, cfg.widths[0], s, kernel_size=1, act="relu", norm="batch")
        self.seg_b = Convolution(2, cfg.widths[1], s, kernel_size=1, act="relu", norm="batch")
        self.seg_out = nn.Sequential(Convolution(2, 2 * s, s, kernel_size=3, act="relu", norm="batch"),
                                     nn.Conv2d(s, 1, 1))
        self.proj = ProjectionHead(dim, cfg.proj_dim)
        self.gradcam_layer = f"stages.{min(2, len(cfg.widths) - 1)}"  # 8 px map: coarse but still spatial

    def forward(self, x: torch.Tensor) -> dict:
        h = self.spatial_stem(_to_signed(x))
        if self.noise_stem is not None:
            h = torch.cat([h, self.noise_stem(self.srm(x))], 1)
        feats = []
        for st in self.stages:
            h = st(h)
            feats.append(h)
        emb = F.adaptive_avg_pool2d(h, 1).flatten(1)
        e = self.drop(emb)
        a = self.seg_a(feats[0])
        b = F.interpolate(self.seg_b(feats[1]), size=a.shape[-2:], mode="bilinear", align_corners=False)
        seg = F.interpolate(self.seg_out(torch.cat([a, b], 1)), size=x.shape[-2:], mode="bilinear",
                            align_corners=False)
        m = torch.cat([e, seg_evidence(seg.float()).to(e.dtype)], 1) if self.cfg.manip_from_seg else e
        return {"syn": self.head_syn(e).squeeze(1), "manip": self.head_manip(m).squeeze(1),
                "modality": self.head_modality(e), "seg": seg, "emb": emb}


@register("dual-srm", "detector", DualSRMConfig)
def build_dual_srm(cfg: DualSRMConfig) -> DualSRM:
    return DualSRM(cfg)


@register("spatial-cnn", "detector", SpatialCNNConfig)
def build_spatial_cnn(cfg: SpatialCNNConfig) -> DualSRM:
    """dual-srm without its SRM noise-residual stream (the spatial stem is twice as wide, so the stages match)."""
    return DualSRM(cfg)


# ------------------------------------------------------------------ (d) manipulation detector, SupCon warm-up
@register("manip-supcon", "detector", DualSRMConfig)
def build_manip_supcon(cfg: DualSRMConfig) -> DualSRM:
    """Same network as dual-srm; `detection.train` pre-trains its encoder with SupCon before fine-tuning."""
    return DualSRM(cfg)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
