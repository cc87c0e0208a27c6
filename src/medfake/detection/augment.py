"""Training augmentation for detectors: MONAI dictionary transforms plus three MONAI-style random transforms of our
own (JPEG re-compression through Pillow, resize down-then-up, burned-in annotations). Applied identically to real and
fake images, so a detector cannot learn "was re-compressed" (or "has a caption") as a shortcut. Keys: 'image'
(1×H×W in [0, 1]) and 'mask' (1×H×W). `AugmentConfig` holds the knobs `medfake train detector` exposes."""

from __future__ import annotations

import functools
import io as _io
import string
from dataclasses import asdict, dataclass

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


@functools.lru_cache(maxsize=1)
def _default_font():
    """Pillow's built-in font, loaded once (RandOverlayd runs per training image)."""
    from PIL import ImageFont

    return ImageFont.load_default()


class RandOverlayd(RandomizableTransform, MapTransform):
    """Burn clinical-looking annotations into the image (Pillow ImageDraw): caption lines of random letters and digits
    near the edges (patient/scanner text), filled label bars, calipers (+ marks joined by a dotted line), ROI
    rectangles and a tick-marked scale bar, in near-white or near-black. Real ultrasound and radiograph exports carry
    these; without them a detector can take a caption box for a pasted region. The mask is left alone (an overlay is
    not a manipulation)."""

    def __init__(self, keys="image", prob: float = 0.2, max_items: int = 5):
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.max_items = int(max_items)

    def _text(self, n: int) -> str:
        chars = string.ascii_uppercase + string.digits + " .:/-"
        return "".join(chars[int(i)] for i in self.R.randint(len(chars), size=n)).strip() or "A"

    def _draw(self, draw, h: int, w: int) -> None:
        font = _default_font()
        ink = float(self.R.uniform(0.9, 1.0)) if self.R.rand() < 0.8 else float(self.R.uniform(0.0, 0.1))
        for _ in range(int(self.R.randint(1, self.max_items + 1))):
            what = int(self.R.randint(5))
            if what == 4:  # a filled label bar (a viewer's header block), possibly with text in the other ink
                x0, y0 = int(self.R.randint(0, w - 16)), int(self.R.choice([self.R.randint(0, h // 8),
                                                                             self.R.randint(7 * h // 8 - 6, h - 6)]))
                bw, bh = int(self.R.randint(8, max(9, w // 3))), int(self.R.randint(3, max(4, h // 12)))
                draw.rectangle([x0, y0, x0 + bw, y0 + bh], fill=ink)
                if bh >= 10 and self.R.rand() < 0.5:
                    draw.text((x0 + 1, y0), self._text(int(self.R.randint(2, 8))), fill=1.0 - ink, font=font)
            elif what == 0:  # a caption line at a random edge position
                x = int(self.R.randint(0, max(1, w // 2)))
                y = int(self.R.choice([self.R.randint(0, max(1, h // 6)), self.R.randint(5 * h // 6 - 10, h - 8)]))
                draw.text((x, y), self._text(int(self.R.randint(3, 14))), fill=ink, font=font)
            elif what == 1:  # calipers: two + marks and a dotted line between them
                (x0, x1), (y0, y1) = self.R.randint(8, w - 8, 2), self.R.randint(8, h - 8, 2)
                for cx, cy in ((x0, y0), (x1, y1)):
                    draw.line([(cx - 3, cy), (cx + 3, cy)], fill=ink)
                    draw.line([(cx, cy - 3), (cx, cy + 3)], fill=ink)
                n = max(2, int(np.hypot(x1 - x0, y1 - y0) // 4))
                for t in np.linspace(0, 1, n)[1:-1:2]:
                    draw.point((int(x0 + t * (x1 - x0)), int(y0 + t * (y1 - y0))), fill=ink)
            elif what == 2:  # an ROI box
                x0, y0 = int(self.R.randint(0, w - 16)), int(self.R.randint(0, h - 16))
                x1, y1 = x0 + int(self.R.randint(12, max(13, w - x0))), y0 + int(self.R.randint(12, max(13, h - y0)))
                draw.rectangle([x0, y0, x1, y1], outline=ink)
            else:  # a vertical scale bar with ticks at the left or right edge
                x = int(self.R.choice([self.R.randint(1, 6), self.R.randint(w - 7, w - 1)]))
                y0 = int(self.R.randint(0, h // 3))
                y1 = int(y0 + self.R.randint(h // 4, h // 2))
                draw.line([(x, y0), (x, y1)], fill=ink)
                for y in range(y0, y1 + 1, max(3, (y1 - y0) // 8)):
                    draw.line([(x, y), (x + (3 if x < w // 2 else -3), y)], fill=ink)

    def __call__(self, data):
        from PIL import Image as PILImage
        from PIL import ImageDraw

        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for k in self.key_iterator(d):
            a = _np(d[k])
            h, w = a.shape[-2:]
            if min(h, w) < 32:  # too small for a caption or a caliper: left as it is
                continue
            im = PILImage.fromarray(np.clip(a[0], 0, 1).astype(np.float32), mode="F")
            self._draw(ImageDraw.Draw(im), h, w)
            d[k] = np.array(im, dtype=np.float32)[None]  # a writable copy (torch warns on read-only arrays)
        return d


def acquisition_transforms(prob: float, keys: str | None = None):
    """MONAI's acquisition-artifact transforms, each drawn with probability `prob`: a smooth bias field (shading),
    Gibbs ringing (k-space truncation), Rician noise (MR magnitude images at low SNR) and a random monotone intensity
    curve (another window or display LUT). `keys`: dictionary versions on that key (training augmentation), else
    array versions (the calibration pool's copies, `train.acquisition_copies`). The same strengths in both places,
    set by eye on medimg128's val reals. The bias field is far stronger than a coil's (max/min over 128 px: median
    20×; MONAI's default coefficients 0–0.1: 1.8×); it is kept so that the shipped card's calibration stays
    reproducible (docs/detection.md)."""
    from monai.transforms import (Compose, RandBiasField, RandBiasFieldd, RandGibbsNoise, RandGibbsNoised,
                                  RandHistogramShift, RandHistogramShiftd, RandRicianNoise, RandRicianNoised)

    kw = [dict(coeff_range=(0.1, 0.4), prob=prob), dict(prob=prob, alpha=(0.2, 0.6)),
          dict(prob=prob, std=0.04, sample_std=True), dict(num_control_points=(5, 10), prob=prob)]
    if keys is None:
        kinds, args = (RandBiasField, RandGibbsNoise, RandRicianNoise, RandHistogramShift), ()
    else:
        kinds, args = (RandBiasFieldd, RandGibbsNoised, RandRicianNoised, RandHistogramShiftd), (keys,)
    return Compose([t(*args, **k) for t, k in zip(kinds, kw)])


def _quantise8(a):
    return (np.round(_np(a) * 255.0) / 255.0).astype(np.float32)


@dataclass(frozen=True)
class AugmentConfig:
    """The detector-training augmentation's knobs (the rest of `detector_transforms` is fixed).

    `resample_p`: probability of the resize-down-up (the blur gets 0.4 × it), for real and fake images alike — raise
    it so that a soft, upsampled-looking real image (a 64 px MR) is not taken for a generator's blur.
    `lowres_noise_p`: share of those resizes that add noise at the small size (`RandResizeDownUpd.noise_p`).
    `overlay_p`: probability of burned-in annotations (`RandOverlayd`); 0 leaves it out of the pipeline, so the
    random stream of the other transforms (and earlier runs) is unchanged.
    `acquisition_p`: probability of each of the acquisition artifacts (`acquisition_transforms`), for every kind
    alike; 0 leaves them out, as `overlay_p` does.
    `jpeg_p`: probability of the JPEG round trip (`RandJPEGd`, quality 50–95), for every kind alike."""

    resample_p: float = 0.25
    lowres_noise_p: float = 0.0
    overlay_p: float = 0.0
    acquisition_p: float = 0.0
    jpeg_p: float = 0.25

    def __post_init__(self):
        for k, v in asdict(self).items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"augmentation {k} must be in [0, 1], not {v}")

    def changed(self) -> dict:
        """The fields that differ from the defaults (what a model card records)."""
        return {k: v for k, v in asdict(self).items() if v != getattr(AugmentConfig, k)}


def detector_transforms(augment: bool = True, cfg: AugmentConfig | None = None):
    """MONAI Compose over {'image', 'mask'}; output tensors. Flips act on both keys, intensity only on the image.
    `cfg`: the `AugmentConfig` (default: its defaults)."""
    from monai.transforms import (
        Compose, RandAdjustContrastd, RandFlipd, RandGaussianNoised, RandGaussianSmoothd, RandScaleIntensityd,
        Lambdad, ScaleIntensityRanged, ToTensord,
    )

    cfg = cfg or AugmentConfig()
    ts = []
    if augment:
        ts += [RandFlipd(keys=("image", "mask"), prob=0.5, spatial_axis=1)]
        if cfg.overlay_p > 0:
            ts += [RandOverlayd("image", prob=cfg.overlay_p)]
        if cfg.acquisition_p > 0:  # at acquisition: before any re-encoding or resampling
            ts += [acquisition_transforms(cfg.acquisition_p, keys="image")]
        ts += [
            RandJPEGd("image", prob=cfg.jpeg_p),
            RandResizeDownUpd("image", prob=cfg.resample_p, noise_p=cfg.lowres_noise_p),
            RandGaussianSmoothd("image", prob=0.4 * cfg.resample_p, sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0)),
            RandGaussianNoised("image", prob=0.2, mean=0.0, std=0.02),
            RandAdjustContrastd("image", prob=0.3, gamma=(0.75, 1.35)),
            RandScaleIntensityd("image", prob=0.2, factors=0.1),
            ScaleIntensityRanged("image", a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True),
            Lambdad("image", _quantise8),  # what every image at detection time is: 8-bit after to_canonical
        ]
    ts += [ToTensord(keys=("image", "mask"), track_meta=False)]
    return Compose(ts)
