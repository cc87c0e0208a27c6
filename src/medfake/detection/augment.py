"""Training augmentation for detectors: MONAI dictionary transforms plus two MONAI-style random transforms of our
own (JPEG re-compression through Pillow, resize down-then-up). Applied identically to real and fake images, so a
detector cannot learn "was re-compressed" as a shortcut. Keys: 'image' (1×H×W in [0, 1]) and 'mask' (1×H×W)."""

from __future__ import annotations

import io as _io

import numpy as np
from monai.transforms import MapTransform, RandomizableTransform


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


class RandJPEGd(RandomizableTransform, MapTransform):
    """Re-encode the image as JPEG at a random quality (Pillow) and decode it again."""

    def __init__(self, keys="image", prob: float = 0.3, quality: tuple[int, int] = (50, 95)):
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.quality = quality
        self._q = quality[1]

    def randomize(self, data=None) -> None:
        super().randomize(None)
        self._q = int(self.R.randint(self.quality[0], self.quality[1] + 1))

    def __call__(self, data):
        from PIL import Image as PILImage

        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for k in self.key_iterator(d):
            a = _np(d[k])
            buf = _io.BytesIO()
            PILImage.fromarray(np.round(np.clip(a[0], 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=self._q)
            d[k] = (np.asarray(PILImage.open(buf)).astype(np.float32) / 255.0)[None]
        return d


UP_MODES = ("bilinear", "bicubic", "lanczos")


class RandResizeDownUpd(RandomizableTransform, MapTransform):
    """Resize down by a random factor (MONAI Resize, area) and back up with a random kernel (bilinear, bicubic, or
    Lanczos as in `to_canonical`, through Pillow): the resampling traces of images that reach the detector from a
    smaller original (a 64 px MR, a down-sized export), for real and fake images alike.

    `noise_p`: how often Gaussian noise (std drawn from `noise_std`) is added at the small size before the upsampling,
    as in a natively small acquisition (a 64 px MR's thermal noise, upsampled, becomes blobs the size of a
    generator's texture); without it a detector learns "blob-sized noise" as a generator cue and flags such reals."""

    def __init__(self, keys="image", prob: float = 0.3, scale: tuple[float, float] = (0.3, 0.9),
                 noise_p: float = 0.0, noise_std: tuple[float, float] = (0.01, 0.05)):
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.scale = scale
        self.noise_p = float(noise_p)
        self.noise_std = noise_std
        self._s = 1.0
        self._mode = UP_MODES[0]
        self._std = 0.0

    def randomize(self, data=None) -> None:
        super().randomize(None)
        self._s = float(self.R.uniform(*self.scale))
        self._mode = UP_MODES[int(self.R.randint(len(UP_MODES)))]
        # draws only when noise is asked for, so noise_p = 0 keeps the random stream (and earlier runs) unchanged
        noisy = self.noise_p > 0 and self.R.rand() < self.noise_p
        self._std = float(self.R.uniform(*self.noise_std)) if noisy else 0.0

    def __call__(self, data):
        from monai.transforms import Resize
        from PIL import Image as PILImage

        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        filt = {"bilinear": PILImage.Resampling.BILINEAR, "bicubic": PILImage.Resampling.BICUBIC,
                "lanczos": PILImage.Resampling.LANCZOS}[self._mode]
        for k in self.key_iterator(d):
            a = _np(d[k])
            h, w = a.shape[-2:]
            small = _np(Resize((max(8, int(h * self._s)), max(8, int(w * self._s))), mode="area")(a))[0]
            if self._std > 0:
                small = small + self.R.normal(0.0, self._std, small.shape)
            up = PILImage.fromarray(small.astype(np.float32), mode="F").resize((w, h), filt)
            d[k] = np.clip(np.asarray(up, dtype=np.float32), 0.0, 1.0)[None]
        return d


def _quantise8(a):
    return (np.round(_np(a) * 255.0) / 255.0).astype(np.float32)


RESAMPLE_P = 0.25  # default probability of the resize-down-up and (× 0.4) of the blur
LOWRES_NOISE_P = 0.0  # default share of those resizes that add noise at the small size


def detector_transforms(augment: bool = True, resample_p: float = RESAMPLE_P, lowres_noise_p: float = LOWRES_NOISE_P):
    """MONAI Compose over {'image', 'mask'}; output tensors. Flips act on both keys, intensity only on the image.
    `resample_p`: probability of the resize-down-up (the blur gets 0.4 × it), for real and fake images alike — raise
    it so that a soft, upsampled-looking real image (a 64 px MR) is not taken for a generator's blur.
    `lowres_noise_p`: share of those resizes that add noise at the small size (`RandResizeDownUpd.noise_p`)."""
    from monai.transforms import (
        Compose, RandAdjustContrastd, RandFlipd, RandGaussianNoised, RandGaussianSmoothd, RandScaleIntensityd,
        Lambdad, ScaleIntensityRanged, ToTensord,
    )

    ts = []
    if augment:
        ts += [
            RandFlipd(keys=("image", "mask"), prob=0.5, spatial_axis=1),
            RandJPEGd("image", prob=0.25),
            RandResizeDownUpd("image", prob=resample_p, noise_p=lowres_noise_p),
            RandGaussianSmoothd("image", prob=0.4 * resample_p, sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0)),
            RandGaussianNoised("image", prob=0.2, mean=0.0, std=0.02),
            RandAdjustContrastd("image", prob=0.3, gamma=(0.75, 1.35)),
            RandScaleIntensityd("image", prob=0.2, factors=0.1),
            ScaleIntensityRanged("image", a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True),
            Lambdad("image", _quantise8),  # what every image at detection time is: 8-bit after to_canonical
        ]
    ts += [ToTensord(keys=("image", "mask"), track_meta=False)]
    return Compose(ts)
