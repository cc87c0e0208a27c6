"""Public synthesis API: load a shipped generator by name and sample Images (DDPM, DCGAN) or reconstruct real
images through the KL autoencoder (VAE)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.modalities import CLASS_INDEX, MODALITIES, check_label, check_modality
from ..io.errors import MedfakeError
from ..io.image import Image, Meta
from ..io.writers import Provenance
from ..models.cards import card_path, load_model

# shipped model names (cards in models/)
DEFAULT_MODELS = {"ddpm": "ddpm", "dcgan": "dcgan", "vae": "vae"}


class Generator:
    """A loaded generator (DDPM, DCGAN or VAE) and its card."""

    def __init__(self, module, card: dict, device: torch.device):
        self.module = module
        self.card = card
        self.device = device
        self.name = card.get("name", "?")
        self.family = card.get("family", card.get("architecture"))
        self.version = str(card.get("version", "0"))
        self.label_prior: dict[str, dict[str, float]] = card.get("label_prior", {})

    def provenance(self, sampler: str | None = None, **details) -> Provenance:
        d = {"sampler": sampler} if sampler else {}
        d.update(details)
        return Provenance("synthetic", self.name, f"{self.name}-{self.version}", d)

    def pick_labels(self, modality: str, label: str | None, n: int, rng: np.random.Generator) -> list[str]:
        if label is not None:
            return [label] * n
        labels = list(MODALITIES[modality])
        prior = self.label_prior.get(modality)
        p = np.array([prior.get(lab, 0.0) for lab in labels]) if prior else np.ones(len(labels))
        p = p / p.sum()
        return list(rng.choice(labels, size=n, p=p))

    def sampling_settings(self, modality: str, sampler: str | None = None, steps: int | None = None,
                          eta: float | None = None, guidance: float | None = None) -> dict:
        """The settings a DDPM samples `modality` with: what the caller gives, else the card's choice for the
        modality (`sampling.per_modality`, chosen on the validation split by benchmarks/sampler_sweep.py), else
        DDIM, 50 steps (1000 for ddpm), eta 0, guidance 1. A caller who names another sampler than the card's
        choice gets the card's best setting for that sampler (`sampling.by_sampler`) where it has one; otherwise
        the card's steps and eta apply only to its own sampler and its guidance to either. {} for a generator
        without sampler settings (DCGAN), so the result can always be passed on: `sample(..., **s)`,
        `provenance(**s)`."""
        if self.family != "ddpm":
            return {}
        card = self.card.get("sampling") or {}
        d = (card.get("per_modality") or {}).get(modality) or {}
        sampler = sampler or d.get("sampler") or "ddim"
        if d and d.get("sampler", "ddim") != sampler:
            alt = ((card.get("by_sampler") or {}).get(sampler) or {}).get(modality)
            if alt:
                d = {"sampler": sampler, **{k: alt[k] for k in ("steps", "eta", "guidance") if k in alt}}
        same = bool(d) and d.get("sampler", "ddim") == sampler
        if steps is None:
            full = getattr(getattr(self.module, "cfg", None), "num_train_timesteps", 1000)
            steps = int(d["steps"]) if same and d.get("steps") else (50 if sampler == "ddim" else full)
        if eta is None:
            eta = float(d.get("eta", 0.0)) if same else 0.0
        if guidance is None:
            guidance = float(d.get("guidance", 1.0))
        return {"sampler": sampler, "steps": int(steps), "eta": float(eta), "guidance": float(guidance)}

    @torch.no_grad()
    def sample(
        self,
        modality: str,
        label: str | None = None,
        n: int = 1,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        eta: float | None = None,
        guidance: float | None = None,
        seed: int = 0,
        chunk: int = 16,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Image]:
        check_modality(modality)
        check_label(modality, label)
        if self.family == "vae":
            raise MedfakeError(f"{self.name} is an autoencoder: it reconstructs given images (Generator.reconstruct, "
                               "or the data-set builder's 'vae' generator) and does not sample from noise")
        if n < 1:
            raise ValueError("n must be ≥ 1")
        settings = self.sampling_settings(modality, sampler, steps, eta, guidance)
        rng = np.random.default_rng(seed)
        labels = self.pick_labels(modality, label, n, rng)
        out: list[Image] = []
        done = 0
        for start in range(0, n, chunk):
            labs = labels[start : start + chunk]
            cls = torch.tensor([CLASS_INDEX[(modality, lab)] for lab in labs], dtype=torch.long)
            gen = torch.Generator().manual_seed(int(seed) * 100_003 + start)
            if self.family == "ddpm":
                from .samplers import sample_ddpm_model

                def _p(i, total, _done=done, _k=len(labs)):
                    if progress:
                        progress(_done * total + i * _k, n * total)

                x = sample_ddpm_model(self.module, cls, **settings, generator=gen, progress=_p)
            else:
                g = self.module.generator
                z = torch.randn((len(labs), g.cfg.z_dim), generator=gen).to(self.device)
                x = g(z, cls.to(self.device))
            arr = ((x.float().cpu().numpy()[:, 0] + 1.0) / 2.0).clip(0, 1)
            for a, lab in zip(arr, labs):
                img = Image(a, Meta(modality=modality, label=lab, bits=8, value_range=(0.0, 255.0), format="synthetic"))
                img.meta.extra.update({"generator": self.name, "sampler": "gan", **settings, "seed": seed,
                                       "model_version": self.version})
                out.append(img)
            done += len(labs)
            if progress and self.family != "ddpm":
                progress(done, n)
        return out

    @torch.no_grad()
    def reconstruct(self, images: list[Image], chunk: int = 32) -> list[Image]:
        """VAE only: each image (any size; canonicalised to 128 px greyscale first) encoded to its latent mean and
        decoded. The result has the source's content and the decoder's fingerprint."""
        from ..data.canonical import to_canonical

        if self.family != "vae":
            raise MedfakeError(f"{self.name} ({self.family}) cannot reconstruct images; use a vae model")
        out: list[Image] = []
        for start in range(0, len(images), chunk):
            part = images[start : start + chunk]
            x = torch.from_numpy(np.stack([to_canonical(im) for im in part])[:, None] * 2.0 - 1.0).float()
            y = self.module.reconstruct(x.to(self.device)).float().cpu().numpy()[:, 0]
            for a, src in zip(((y + 1.0) / 2.0).clip(0, 1), part):
                img = Image(a.astype(np.float32), Meta(modality=src.meta.modality, label=src.meta.label, bits=8,
                                                       value_range=(0.0, 255.0), format="synthetic"))
                img.meta.extra.update({"generator": self.name, "sampler": "reconstruction",
                                       "model_version": self.version, "source": src.meta.source})
                out.append(img)
        return out


@lru_cache(maxsize=8)
def _load(name: str, models_dir: str | None, device: str, mtime_ns: int = 0) -> Generator:
    module, card = load_model(name, Path(models_dir) if models_dir else None, device=device)
    return Generator(module, card, torch.device(device))


def load_generator(name: str = "ddpm", models_dir=None, device: str | None = None) -> Generator:
    """Load once per process (cached). `name` is a model card name in models/ (ddpm, dcgan, ...)."""
    from ..settings import get_settings, torch_device

    settings = get_settings()
    dev = str(device or torch_device(settings.device))
    # cached per card file and its modification time (an edited or replaced card is read again)
    folder = Path(models_dir or settings.models_dir).resolve()
    card = card_path(name, folder)
    return _load(name, str(folder), dev, card.stat().st_mtime_ns)


def synthesize(modality: str, label: str | None = None, n: int = 1, *, model: str = "ddpm", **kw) -> list[Image]:
    return load_generator(model).sample(modality, label, n, **kw)
