"""Generator architectures: the class-conditional DDPM denoiser (MONAI DiffusionModelUNet), a
conditional DCGAN (generator + projection discriminator) and a KL autoencoder (MONAI AutoencoderKL, the
first stage of latent diffusion) whose reconstructions of real images are a third generator family."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.modalities import IMAGE_SIZE, NUM_CLASSES
from .registry import register


# ------------------------------------------------------------------ DDPM
PREDICTION_TYPES = ("epsilon", "v_prediction")  # MONAI scheduler names


@dataclass(frozen=True)
class DDPMConfig:
    channels: tuple[int, ...] = (32, 64, 128)
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1
    num_head_channels: int = 32
    norm_num_groups: int = 32
    # space-to-depth factor: the UNet runs on (patch²)×(S/patch)² tensors ("patchified" pixels, as in
    # simple diffusion, Hoogeboom et al. 2023), which makes a 128 px DDPM trainable on a CPU; 1 = plain UNet
    patch: int = 4
    num_classes: int = NUM_CLASSES  # (modality, label) classes; index num_classes = "unconditional" (CFG)
    image_size: int = IMAGE_SIZE
    num_train_timesteps: int = 1000
    schedule: str = "linear_beta"  # or "cosine"
    # what the UNet predicts: "epsilon" (the noise) or "v_prediction" (v = √ᾱ·ε − √(1−ᾱ)·x0, Salimans & Ho 2022,
    # as simple diffusion uses): with ε the clean-image estimate at high noise is ε's error times √((1−ᾱ)/ᾱ), so an
    # undertrained model's samples start from amplified noise; with v it is predicted directly
    prediction_type: str = "epsilon"

    def __post_init__(self):
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, not {self.prediction_type!r}")


class DDPMDenoiser(nn.Module):
    """ε- or v-prediction UNet (`cfg.prediction_type`) conditioned on timestep (sinusoidal embedding) and class
    (learned embedding)."""

    def __init__(self, cfg: DDPMConfig):
        super().__init__()
        from monai.networks.nets import DiffusionModelUNet

        self.cfg = cfg
        c = cfg.patch * cfg.patch
        self.unet = DiffusionModelUNet(
            spatial_dims=2,
            in_channels=c,
            out_channels=c,
            channels=tuple(cfg.channels),
            attention_levels=tuple(cfg.attention_levels),
            num_res_blocks=cfg.num_res_blocks,
            num_head_channels=cfg.num_head_channels,
            norm_num_groups=cfg.norm_num_groups,
            num_class_embeds=cfg.num_classes + 1,
        )

    @property
    def null_class(self) -> int:
        return self.cfg.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        p = self.cfg.patch
        if p > 1:
            x = torch.nn.functional.pixel_unshuffle(x, p)
        out = self.unet(x, timesteps=t, class_labels=cls)
        return torch.nn.functional.pixel_shuffle(out, p) if p > 1 else out


@register("ddpm-unet", "generator", DDPMConfig)
def build_ddpm(cfg: DDPMConfig) -> DDPMDenoiser:
    return DDPMDenoiser(cfg)


# ------------------------------------------------------------------ DCGAN
@dataclass(frozen=True)
class DCGANConfig:
    z_dim: int = 128
    embed_dim: int = 64
    ngf: int = 32
    ndf: int = 32
    num_classes: int = NUM_CLASSES
    image_size: int = IMAGE_SIZE


class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2016): z ⊕ class embedding → 4×4 → transposed convs → 128×128, tanh."""

    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim)
        g = cfg.ngf
        chans = [g * 16, g * 8, g * 4, g * 2, g, g // 2]  # 4 → 8 → 16 → 32 → 64 → 128
        self.fc = nn.Sequential(nn.Linear(cfg.z_dim + cfg.embed_dim, chans[0] * 16), nn.BatchNorm1d(chans[0] * 16), nn.ReLU(True))
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.Conv2d(chans[-1], 1, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.c0 = chans[0]

    def forward(self, z: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(cls)], dim=1)).view(z.shape[0], self.c0, 4, 4)
        return self.net(h)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator with spectral norm and a class-projection term (Miyato & Koyama 2018)."""

    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        sn = nn.utils.spectral_norm
        d = cfg.ndf
        chans = [1, d // 2, d, d * 2, d * 4, d * 8, d * 16]  # 128 → 64 → 32 → 16 → 8 → 4 → 2
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [sn(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        self.net = nn.Sequential(*layers)
        self.out = sn(nn.Linear(chans[-1], 1))
        self.embed = sn(nn.Embedding(cfg.num_classes, chans[-1]))

    def forward(self, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        h = self.net(x).sum(dim=(2, 3))
        return self.out(h).squeeze(1) + (self.embed(cls) * h).sum(1)


class DCGAN(nn.Module):
    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        self.cfg = cfg
        self.generator = DCGANGenerator(cfg)
        self.discriminator = DCGANDiscriminator(cfg)


@register("dcgan", "generator", DCGANConfig)
def build_dcgan(cfg: DCGANConfig) -> DCGAN:
    return DCGAN(cfg)


# ------------------------------------------------------------------ KL autoencoder (latent-diffusion first stage)
@dataclass(frozen=True)
class VAEConfig:
    # 2 down-samplings: 128 px → 32×32×4 latent (the 4× factor of MONAI's 2D medical LDMs); narrow so that it
    # trains on 2 CPU cores (~1 s per batch of 8; (32, 64, 128) is ~4× slower)
    channels: tuple[int, ...] = (16, 32, 64)
    latent_channels: int = 4
    num_res_blocks: int = 1
    norm_num_groups: int = 16
    image_size: int = IMAGE_SIZE
    kl_weight: float = 1e-6


class VAE(nn.Module):
    """MONAI AutoencoderKL (the LDM/Stable-Diffusion autoencoder design, nearest-neighbour up-sampling in the
    decoder). `reconstruct` maps an image through latent space and back: the decoder leaves the fingerprint that
    every latent-diffusion model shares, on an image whose content is real (aligned training data, Rajan et al.
    2025)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        from monai.networks.nets import AutoencoderKL

        self.cfg = cfg
        n = len(cfg.channels)
        self.ae = AutoencoderKL(
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            channels=tuple(cfg.channels),
            latent_channels=cfg.latent_channels,
            num_res_blocks=cfg.num_res_blocks,
            attention_levels=(False,) * n,
            norm_num_groups=cfg.norm_num_groups,
            with_encoder_nonlocal_attn=False,
            with_decoder_nonlocal_attn=False,
        )

    def forward(self, x: torch.Tensor):
        """x in [-1, 1] → (reconstruction, z_mu, z_sigma)."""
        return self.ae(x)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction through the latent mean, in [-1, 1]."""
        return self.ae.decode(self.ae.encode(x)[0]).clamp(-1, 1)


@register("vae-kl", "autoencoder", VAEConfig)  # not a "generator": it cannot sample, so the service never offers it
def build_vae(cfg: VAEConfig) -> VAE:
    return VAE(cfg)
