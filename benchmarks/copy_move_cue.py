"""Experiment: a weight-free copy-move cue beside the shipped detector, on copy-moves of **test** reals.

The cue looks for duplicated texture inside one image (the block-matching idea of classical copy-move forensics,
Fridrich et al. 2003, done with an FFT): the Laplacian residual's autocorrelation peaks at a copy's offset; at the
most prominent peaks a windowed normalised correlation of the residual with its shifted self is compared with the
same correlation one pixel beside the offset ("peak sharpness": a copy matches at one offset, a straight edge along
a whole ridge). Score = the k-th largest sharpness in the image, k = one window's area.

It is measured here, not shipped: see RESULTS.md ("Copy-move cue") for why (it finds pristine copies the detector
misses, but loses them under JPEG 75 and resize x0.5, and it is slow on 2 cores).

    python benchmarks/copy_move_cue.py [--n 300] [--models-dir models]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, append  # noqa: E402

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

NEIGHBOURS = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)]


@dataclass(frozen=True)
class CopyMoveConfig:
    window: int = 7  # side of the correlation window (pixels at 128 px)
    min_offset: int = 8  # offsets closer than this (Chebyshev) are the residual's own autocorrelation
    min_overlap: int = 441  # offsets whose image overlap is smaller are not examined
    candidates: int = 4  # autocorrelation peaks examined per image
    whiten: float = 2.0 / 255  # residual / (local residual RMS + whiten) before the autocorrelation
    min_rms: float = 2.0 / 255  # windows with less residual energy (flat background) are ignored
    map_threshold: float = 0.25  # peak sharpness that marks a pixel as repeated in the map
    chunk: int = 16  # images per vectorised chunk (bounds memory)


def residual(x: torch.Tensor) -> torch.Tensor:
    """4-neighbour Laplacian residual (edges replicated). x: (N, 1, H, W)."""
    k = torch.tensor([[[[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]]]], dtype=x.dtype, device=x.device)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)


def _box(x: torch.Tensor, w: int) -> torch.Tensor:
    """Separable w×w mean over the last two dims of (N, C, H, W), zero padding counted (windows at the border
    see zeros = no match)."""
    p = w // 2
    x = F.avg_pool2d(x, (w, 1), stride=1, padding=(p, 0))
    return F.avg_pool2d(x, (1, w), stride=1, padding=(0, p))


def candidate_offsets(r: torch.Tensor, cfg: CopyMoveConfig) -> torch.Tensor:
    """(N, K, 2) integer offsets (dy, dx): the K most prominent peaks (value minus its largest 8-neighbour) of each
    whitened residual's autocorrelation, one of each ± pair, at least cfg.min_offset long."""
    n, _, h, w = r.shape
    rn = r / (_box(r * r, cfg.window).sqrt() + cfg.whiten)
    f = torch.fft.rfft2(rn[:, 0].double(), s=(2 * h, 2 * w))
    ac = torch.fft.irfft2(f * f.conj(), s=(2 * h, 2 * w))  # zero padding: linear, not circular, correlation
    nb = torch.stack([torch.roll(ac, (a, b), (1, 2)) for a, b in NEIGHBOURS]).amax(0)
    dy = torch.arange(2 * h)
    dy = torch.where(dy >= h, dy - 2 * h, dy)
    dx = torch.arange(2 * w)
    dx = torch.where(dx >= w, dx - 2 * w, dx)
    DY, DX = torch.meshgrid(dy, dx, indexing="ij")
    overlap = (h - DY.abs()).clamp_min(0) * (w - DX.abs()).clamp_min(0)
    valid = (torch.maximum(DY.abs(), DX.abs()) >= cfg.min_offset) & (overlap >= cfg.min_overlap) & \
        ((DY > 0) | ((DY == 0) & (DX > 0)))
    prom = torch.where(valid.to(ac.device), (ac - nb) / overlap.clamp_min(1).double().sqrt().to(ac.device),
                       torch.full_like(ac, -np.inf))
    idx = prom.flatten(1).topk(cfg.candidates, dim=1).indices.cpu()
    return torch.stack([DY.flatten()[idx], DX.flatten()[idx]], dim=-1)


def _gather_shifted(a: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """a: (N, H, W); offs: (N, M, 2) → (N, M, H, W) with out[i, m, y, x] = a[i, y + dy, x + dx] (0 outside)."""
    n, h, w = a.shape
    m = offs.shape[1]
    pad_y, pad_x = h, w
    ap = F.pad(a, (pad_x, pad_x, pad_y, pad_y)).flatten(1)  # (N, (3H)(3W))
    ys = torch.arange(h, device=a.device).view(1, 1, h, 1) + offs[..., 0].to(a.device).view(n, m, 1, 1) + pad_y
    xs = torch.arange(w, device=a.device).view(1, 1, 1, w) + offs[..., 1].to(a.device).view(n, m, 1, 1) + pad_x
    ys, xs = ys.clamp(0, 3 * h - 1), xs.clamp(0, 3 * w - 1)
    idx = (ys * (3 * w) + xs).reshape(n, -1)
    return torch.gather(ap, 1, idx).view(n, m, h, w)


def sharpness_maps(r: torch.Tensor, offs: torch.Tensor, cfg: CopyMoveConfig) -> torch.Tensor:
    """(N, K, H, W): at each candidate offset d, corr_d(x) − max over the 8 neighbours e of corr_{d+e}(x), where
    corr_d(x) is the windowed correlation of the residual at x with the residual at x + d; 0 where either window
    is flat."""
    n, k = offs.shape[:2]
    w = cfg.window
    rr = r[:, 0]
    e = _box(r * r, w)[:, 0]  # local residual energy, shared by every offset (shifted)
    all_offs = torch.cat([offs[:, :, None, :] + torch.tensor([[0, 0]] + NEIGHBOURS).view(1, 1, 9, 2)], 2)
    all_offs = all_offs.view(n, k * 9, 2)
    s = _gather_shifted(rr, all_offs)  # (N, 9K, H, W)
    es = _gather_shifted(e, all_offs)
    cross = _box(rr[:, None] * s, w)
    c = cross / (e[:, None] * es).sqrt().clamp_min(1e-12)
    ok = (e[:, None] >= cfg.min_rms ** 2) & (es >= cfg.min_rms ** 2)
    c = torch.where(ok, c, torch.zeros_like(c)).view(n, k, 9, *rr.shape[1:])
    return torch.where(ok.view(n, k, 9, *rr.shape[1:])[:, :, 0], c[:, :, 0] - c[:, :, 1:].amax(2),
                       torch.zeros_like(c[:, :, 0]))


@torch.no_grad()
def copy_move_scores(x: torch.Tensor, cfg: CopyMoveConfig = CopyMoveConfig(), return_maps: bool = False):
    """x: (N, 1, H, W) images in [0, 1]. Returns scores (N,) and, with return_maps, (N, H, W) bool maps of the
    repeated pixels at the best offset: the copy *and* its source (this cue cannot tell them apart)."""
    x = x.float()
    n, _, h, wd = x.shape
    kth = cfg.window ** 2
    scores = torch.zeros(n)
    maps = torch.zeros((n, h, wd), dtype=torch.bool) if return_maps else None
    rad = cfg.window // 2
    for i0 in range(0, n, cfg.chunk):
        xb = x[i0:i0 + cfg.chunk]
        r = residual(xb)
        offs = candidate_offsets(r, cfg).to(r.device)
        sh = sharpness_maps(r, offs, cfg)  # (B, K, H, W)
        per_cand = sh.flatten(2).topk(min(kth, h * wd), dim=2).values[..., -1]  # (B, K)
        best, j = per_cand.max(1)
        scores[i0:i0 + len(xb)] = best.float().cpu()
        if return_maps:
            for b in range(len(xb)):
                hit = (sh[b, j[b]] >= cfg.map_threshold).float()[None, None]
                hit = F.max_pool2d(hit, 2 * rad + 1, stride=1, padding=rad)[0, 0]  # window centres → windows
                dy, dx = (int(v) for v in offs[b, j[b]])
                partner = _gather_shifted(hit[None], torch.tensor([[[-dy, -dx]]]))[0, 0]
                maps[i0 + b] = ((hit > 0) | (partner > 0)).cpu()
    return (scores, maps) if return_maps else scores


# ---------------------------------------------------------------------------------------------- the experiment
def _jpeg(a: np.ndarray, q: int = 75) -> np.ndarray:
    from PIL import Image as P

    b = io.BytesIO()
    P.fromarray((a * 255).round().astype(np.uint8)).save(b, "JPEG", quality=q)
    return np.asarray(P.open(b), np.float32) / 255


def _half(a: np.ndarray) -> np.ndarray:
    from PIL import Image as P

    im = P.fromarray((a * 255).round().astype(np.uint8))
    im = im.resize((64, 64), P.Resampling.BILINEAR).resize((128, 128), P.Resampling.BILINEAR)
    return np.asarray(im, np.float32) / 255


def _q8(a: np.ndarray) -> np.ndarray:
    return np.round(np.clip(a, 0, 1) * 255).astype(np.float32) / 255


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(SHARED))
    ap.add_argument("--n", type=int, default=300, help="test reals (each also copy-moved once)")
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    from medfake.data.canonical import to_canonical
    from medfake.data.manifest import read_manifest
    from medfake.detection.detector import load_detector
    from medfake.evaluation.build import _canonical_image, mask_from_geometry, random_mask_geometry
    from medfake.io.image import Image
    from medfake.manipulation import manipulate

    recs = [r for r in read_manifest(args.data) if r.split == "test"]
    rng = np.random.default_rng(args.seed)
    sel = rng.choice(len(recs), min(args.n, len(recs)), replace=False)
    reals, fakes, masks = [], [], []
    for i in sel:  # the data-set builder's copy-move: same mask sampler, same method, boolean mask
        r = recs[i]
        img = _canonical_image(r.path, r.modality, r.label or "")
        res = manipulate(img, mask_from_geometry(random_mask_geometry(rng)), "copy-move", seed=int(rng.integers(1 << 30)))
        reals.append(_q8(to_canonical(img)))
        fakes.append(_q8(to_canonical(res.image)))
        masks.append(np.asarray(res.mask, bool))
    det = load_detector("default", args.models_dir)
    cfg = CopyMoveConfig()
    y = np.r_[np.zeros(len(reals)), np.ones(len(fakes))]
    rows, speed, pix = [], None, None
    for name, f in (("clean", _q8), ("JPEG 75", _jpeg), ("resize x0.5", _half)):
        R = np.stack([f(a) for a in reals])
        Fk = np.stack([f(a) for a in fakes])
        x = torch.tensor(np.concatenate([R, Fk]))[:, None]
        t0 = time.perf_counter()
        s, maps = copy_move_scores(x, cfg, return_maps=True)
        dt = time.perf_counter() - t0
        s = s.numpy()
        preds = det.predict([Image(a) for a in np.concatenate([R, Fk])])
        pm = np.array([p.p_manipulated for p in preds])
        thr = float(np.quantile(s[: len(R)], 0.99))
        tpr = float((s[len(R):] > thr).mean())
        thr_d = float(np.quantile(pm[: len(R)], 0.99))
        rows.append(f"| {name} | {roc_auc_score(y, s):.3f} | {tpr:.3f} | {roc_auc_score(y, pm):.3f} | "
                    f"{float((pm[len(R):] > thr_d).mean()):.3f} |")
        if name == "clean":
            speed = len(x) / dt
            found = s[len(R):] > thr  # pixel-F1 of the cue's map on the copies it finds (map = copy + source)
            f1s = []
            for m, mp in zip(np.array(masks, dtype=object)[found], maps[len(R):].numpy()[found]):
                tp = float((m & mp).sum())
                f1s.append(2 * tp / max(float(m.sum() + mp.sum()), 1.0))
            pix = (float(np.mean(f1s)) if f1s else float("nan"), int(found.sum()))
    body = (f"{len(reals)} medimg128 **test** reals and a copy-move of each (the data-set builder's mask sampler and "
            f"method), unmodified and after JPEG 75 / resize x0.5 (both sets). TPR at the 99th percentile of the "
            f"reals' scores (1 % FPR). Detector: `{det.name}` {det.version}, p_manipulated.\n\n"
            "| images | cue AUC | cue TPR@1%FPR | detector AUC | detector TPR@1%FPR |\n|---|---|---|---|---|\n"
            + "\n".join(rows)
            + f"\n\nCue speed: {speed:.1f} img/s ({torch.get_num_threads()} torch threads). Cue map pixel-F1 on the "
              f"{pix[1]} copies it finds at 1 % FPR: {pix[0]:.3f} (the map marks the copy and its source: ≤ 0.67).")
    print(body)
    if not args.no_append:
        append("Copy-move cue (experiment, not shipped)", body)


if __name__ == "__main__":
    main()
