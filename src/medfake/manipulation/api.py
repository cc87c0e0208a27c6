"""Public manipulation API: one function per method, all through one crop → 128 px → manipulate → resize back →
paste-inside-the-mask path, a dispatcher, and `save_result`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import __version__
from ..data.modalities import HEALTHY, MODALITIES, check_label, check_modality
from ..io.image import Image
from .classical import poisson_blend, retouch_image, shift_image
from .masks import ManipulationError, as_alpha, mask_bounds
from .pasteback import (WORK_SIZE, Native, crop, crop_box, mask_to_work, native_of, paste_back, resize, shown,
                        uncrop_into)

METHODS: tuple[str, ...] = ("repaint", "repaint-ddim", "copy-move", "splice", "retouch")
DIFFUSION_METHODS = ("repaint", "repaint-ddim")
# The feather (px of the input image) that `medfake manipulate` and the service use when none is given: 2 px for the
# diffusion methods, whose hard mask edge otherwise leaves a measurable seam (benchmarks/manipulation_seams.py,
# 48 test images: boundary/rest gradient 1.14 at 0 px, 0.98 at 2 px, 1.01 untouched); 0 for the classical ones,
# which have their own blending (splice: Poisson) and whose users often want the drawn mask exactly.
DEFAULT_FEATHER = {"repaint": 2.0, "repaint-ddim": 2.0}


def default_feather(method: str) -> float:
    """The feather in input pixels used for `method` when the caller gives none (see DEFAULT_FEATHER)."""
    return DEFAULT_FEATHER.get(method, 0.0)


@dataclass
class ManipulationResult:
    image: Image  # the manipulated image (same size; meta of the input, so DICOM stays DICOM)
    mask: np.ndarray  # bool H×W: exactly the pixels that may differ from the input
    record: dict  # what was done (method, parameters, seed, model, bounds, timings, input hash)
    stored: np.ndarray | None = None  # the output's stored pixel values in the input's dtype
    alpha: np.ndarray | None = field(default=None, repr=False)  # float blending weights (feathering)


# ------------------------------------------------------------------ shared path
@dataclass
class _Work:
    """What a method core sees: the 128 px working copy of the crop and its geometry."""

    image: np.ndarray  # float [0, 1], WORK_SIZE²
    mask: np.ndarray  # bool WORK_SIZE², pixels to change
    scale: float  # working px per native px
    box: object  # CropBox


def _check_image(image) -> None:
    if not isinstance(image, Image):
        raise ManipulationError(f"expected a medfake Image (from medfake.io.read_image), got {type(image).__name__}")
    if image.meta.extra.get("mosaic"):
        raise ManipulationError(f"{image.meta.source} was read as one slice of a Siemens mosaic; an edit is written "
                                "back into the file as stored: read it whole (read_image(path, mosaic=False))")


def _apply(
    image: Image,
    mask,
    method: str,
    core: Callable[[_Work], np.ndarray],
    *,
    working: str,
    params: dict,
    seed: int | None,
    context: float,
    min_side: int,
    original: np.ndarray | None = None,
    extra_bounds: tuple[int, int, int, int] | None = None,
    model: dict | None = None,
    extra_record: dict | None = None,
) -> ManipulationResult:
    t0 = time.perf_counter()
    alpha = as_alpha(mask, image.shape)
    support = alpha > 0
    nat: Native = native_of(image, original)
    units = nat.units()
    lo, hi, invert = nat.working_range(working)
    b = mask_bounds(support)
    cb = b
    if extra_bounds is not None:
        e = extra_bounds
        cb = (min(b[0], e[0]), min(b[1], e[1]), max(b[2], e[2]), max(b[3], e[3]))
    box = crop_box(cb, image.shape, context=context, min_side=min_side)

    def to_work(u):
        a = np.clip((u - lo) / (hi - lo), 0.0, 1.0)
        return 1.0 - a if invert else a

    def from_work(a):
        a = np.clip(a, 0.0, 1.0)
        a = 1.0 - a if invert else a
        return a * (hi - lo) + lo

    work = resize(to_work(crop(units, box)).astype(np.float32), WORK_SIZE)
    work_mask = mask_to_work(crop(support, box))
    t1 = time.perf_counter()
    out_work = np.asarray(core(_Work(work, work_mask, box.scale, box)), np.float64)
    t2 = time.perf_counter()
    back = np.clip(resize(out_work.astype(np.float32), box.side), 0.0, 1.0)
    new_units = uncrop_into(units, from_work(back.astype(np.float64)), box)
    stored = paste_back(nat, units, new_units, alpha)
    t3 = time.perf_counter()

    out_image = Image(nat.to_display(shown(nat, stored)),
                      replace(image.meta, extra={**image.meta.extra, "manipulated": method},
                              colour=stored if stored.ndim == 3 else None,
                              stored=stored if stored.ndim == 2 and nat.out_format == "dicom" else None))
    m = image.meta
    record = {
        "kind": "manipulated",
        "method": method,
        "params": params,
        "seed": seed,
        "model": (model or {}).get("name"),
        "model_version": (model or {}).get("version", "classical"),
        "modality": m.modality,
        "label": m.label,
        "mask_bounds": dict(zip(("x1", "y1", "x2", "y2"), mask_bounds(support))),
        "mask_pixels": int(support.sum()),
        "feathered": bool(((alpha > 0) & (alpha < 1)).any()),
        "crop_box": box.as_dict(),
        "work_size": WORK_SIZE,
        "working_range": {"kind": working, "lo": lo, "hi": hi},
        "input": {
            "path": m.source,
            "frame": m.frame,
            **({"volume_slice": {"axis": m.extra.get("axis"), "index": m.extra["slice"]}}
               if "slice" in m.extra else {}),
            "sha256": m.sha256,  # of the bytes the reader read: the file, or an upload's bytes
            "format": m.format,
            "shape": list(image.shape),
            "dtype": str(nat.stored.dtype),
            "stored_source": nat.stored_source,
        },
        "output": {"format": nat.out_format, "dtype": str(stored.dtype), "bits": nat.bits,
                   "shape": list(stored.shape[:2]),
                   "samples_per_pixel": int(stored.shape[2]) if stored.ndim == 3 else 1},
        "timings_s": {"prepare": round(t1 - t0, 4), "manipulate": round(t2 - t1, 4),
                      "paste_back": round(t3 - t2, 4), "total": round(t3 - t0, 4)},
        "medfake_version": __version__,
    }
    if extra_record:
        record.update(extra_record)
    return ManipulationResult(out_image, support, record, stored, alpha)


# ------------------------------------------------------------------ diffusion methods
def _diffusion_target(image: Image, label, modality) -> tuple[str, str]:
    modality = modality or image.meta.modality
    if modality is None:
        raise ManipulationError(
            f"the image's modality is unknown; pass modality= (CLI: --modality), one of: {', '.join(MODALITIES)}"
        )
    check_modality(modality)
    if label is None:
        raise ManipulationError(
            f"RePaint needs a target label for {modality}: a lesion label injects, {HEALTHY[modality]!r} removes; "
            f"choose one of: {', '.join(MODALITIES[modality])}"
        )
    return modality, check_label(modality, str(label))


def _load_ddpm(generator, models_dir):
    if isinstance(generator, str):
        from ..synthesis import load_generator

        generator = load_generator(generator, models_dir)
    if getattr(generator, "family", None) != "ddpm":
        raise ManipulationError(f"RePaint needs a DDPM generator; {getattr(generator, 'name', generator)!r} is "
                                f"{getattr(generator, 'family', '?')}")
    return generator


def _repaint_common(image, mask, method, *, label, modality, seed, steps, jump_length, jump_n_sample, eta, guidance,
                    generator, models_dir, context, min_side, original, progress, sampler):
    import torch

    from ..data.modalities import class_index
    from .repaint import count_model_calls, jump_schedule, repaint_loop

    _check_image(image)
    modality, label = _diffusion_target(image, label, modality)
    for name, v in (("steps", steps), ("jump_length", jump_length), ("jump_n_sample", jump_n_sample)):
        if int(v) < 1:
            raise ManipulationError(f"{name} must be ≥ 1, got {v}")
    as_alpha(mask, image.shape)  # validate before loading a model
    gen = _load_ddpm(generator, models_dir)
    T = int(gen.module.cfg.num_train_timesteps)
    if int(steps) > T:
        raise ManipulationError(f"steps must be ≤ the model's {T} training timesteps, got {steps}")
    jump_schedule(int(steps), int(jump_length), int(jump_n_sample))
    cls = torch.tensor([class_index(modality, label)], dtype=torch.long)
    device = next(gen.module.parameters()).device

    def core(w: _Work) -> np.ndarray:
        known = torch.from_numpy(w.image * 2.0 - 1.0).float()[None, None]
        keep = torch.from_numpy((~w.mask).astype(np.float32))[None, None]
        g = torch.Generator(device=device).manual_seed(int(seed))
        x = repaint_loop(gen.module, known, keep, cls, sampler=sampler, steps=int(steps), jump_length=int(jump_length),
                         jump_n_sample=int(jump_n_sample), eta=float(eta), guidance=float(guidance), generator=g,
                         progress=progress)
        return ((x[0, 0].float().cpu().numpy() + 1.0) / 2.0).clip(0, 1)

    params = {"sampler": sampler, "steps": int(steps), "jump_length": int(jump_length),
              "jump_n_sample": int(jump_n_sample), "guidance": float(guidance), "context": context,
              "min_side": min_side, "model_calls": count_model_calls(int(steps), int(jump_length), int(jump_n_sample))}
    if sampler == "ddim":
        params["eta"] = float(eta)
    img = replace(image, meta=replace(image.meta, modality=modality))
    res = _apply(img, mask, method, core, working="display", params=params, seed=int(seed), context=context,
                 min_side=min_side, original=original,
                 model={"name": gen.name, "version": f"{gen.name}-{gen.version}"},
                 extra_record={"label": label, "source_label": image.meta.label,
                               "operation": "remove" if label == HEALTHY[modality] else "inject"})
    return res


def repaint(image: Image, mask, *, label: str | None = None, modality: str | None = None, seed: int = 0,
            steps: int = 250, jump_length: int = 10, jump_n_sample: int = 10, guidance: float = 1.0,
            generator="ddpm", models_dir=None, context: float = 1.0, min_side: int = 64,
            original: np.ndarray | None = None, progress=None) -> ManipulationResult:
    """RePaint with ancestral DDPM steps (paper defaults: 250 steps, jump 10 × 10; use steps=50 on a CPU).
    `label` (required) is the target class: a lesion label injects, data.HEALTHY[modality] removes."""
    return _repaint_common(image, mask, "repaint", label=label, modality=modality, seed=seed, steps=steps,
                           jump_length=jump_length, jump_n_sample=jump_n_sample, eta=1.0, guidance=guidance,
                           generator=generator, models_dir=models_dir, context=context, min_side=min_side,
                           original=original, progress=progress, sampler="ddpm")


def repaint_ddim(image: Image, mask, *, label: str | None = None, modality: str | None = None, seed: int = 0,
                 steps: int = 50, jump_length: int = 5, jump_n_sample: int = 2, eta: float = 1.0,
                 guidance: float = 1.0, generator="ddpm", models_dir=None, context: float = 1.0,
                 min_side: int = 64, original: np.ndarray | None = None, progress=None) -> ManipulationResult:
    """The fast variant: RePaint's merge/resample loop on DDIM steps (default 50 steps, jump 5 × 2, η = 1).

    η = 1 by default: on the v-prediction DDPM it leaves a weaker seam and keeps the inpainted texture nearer the
    anatomy it replaces than η = 0.5 or 0 (benchmarks/manipulation_seams.py, RESULTS.md, 2026-12-02)."""
    return _repaint_common(image, mask, "repaint-ddim", label=label, modality=modality, seed=seed, steps=steps,
                           jump_length=jump_length, jump_n_sample=jump_n_sample, eta=eta, guidance=guidance,
                           generator=generator, models_dir=models_dir, context=context, min_side=min_side,
                           original=original, progress=progress, sampler="ddim")


# ------------------------------------------------------------------ classical methods
def _check_label_if_known(image: Image, label) -> None:
    if label is not None and image.meta.modality is not None:
        check_label(image.meta.modality, str(label))


def _pick_offset(support: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    h, w = support.shape
    x1, y1, x2, y2 = mask_bounds(support)
    bw, bh = x2 - x1, y2 - y1
    ext = max(bw, bh)

    def ok(dx, dy):  # source box = target box − offset, inside the image and not overlapping the target
        sx1, sy1 = x1 - dx, y1 - dy
        inside = sx1 >= 0 and sy1 >= 0 and sx1 + bw <= w and sy1 + bh <= h
        apart = abs(dx) >= bw or abs(dy) >= bh
        return inside and apart and (dx, dy) != (0, 0)

    for _ in range(500):
        ang = rng.uniform(0, 2 * np.pi)
        r = rng.uniform(1.1, 2.5) * ext
        dx, dy = int(round(r * np.cos(ang))), int(round(r * np.sin(ang)))
        if ok(dx, dy):
            return dx, dy
    cands = [(dx, dy) for dy in range(-y1, h - y2 + 1, max(1, bh // 4)) for dx in range(-x1 + 0, w - x2 + 1, max(1, bw // 4))
             if ok(-dx, -dy)]
    if not cands:
        raise ManipulationError("copy-move: the mask is too large to find a non-overlapping source region inside "
                                "the image; give offset=(dx, dy) (CLI: --offset DX,DY)")
    dx, dy = cands[int(rng.integers(len(cands)))]
    return -dx, -dy


def copy_move(image: Image, mask, *, offset: tuple[float, float] | None = None, seed: int = 0, context: float = 0.25,
              min_side: int = 64, original: np.ndarray | None = None, label: str | None = None) -> ManipulationResult:
    """Copy the image content from (mask − offset) into the mask. offset = (dx, dy) in input pixels from the source
    region to the target; drawn at random (seeded) if None, so that the source lies inside and apart."""
    _check_image(image)
    _check_label_if_known(image, label)
    alpha = as_alpha(mask, image.shape)
    support = alpha > 0
    rng = np.random.default_rng(int(seed))
    if offset is None:
        dx, dy = _pick_offset(support, rng)
    else:
        try:
            dx, dy = (int(round(float(v))) for v in offset)
        except (TypeError, ValueError):
            raise ManipulationError(f"offset must be two numbers DX,DY, got {offset!r}") from None
    x1, y1, x2, y2 = mask_bounds(support)
    h, w = image.shape
    src = (x1 - dx, y1 - dy, x2 - dx, y2 - dy)
    if src[0] < 0 or src[1] < 0 or src[2] > w or src[3] > h:
        raise ManipulationError(f"copy-move: offset ({dx}, {dy}) puts the source region {src} outside the image "
                                f"({w}×{h})")
    if (dx, dy) == (0, 0):
        raise ManipulationError("copy-move: offset (0, 0) copies the region onto itself")

    def core(wk: _Work) -> np.ndarray:
        return shift_image(wk.image, dx * wk.scale, dy * wk.scale)

    return _apply(image, mask, "copy-move", core, working="full",
                  params={"offset": [dx, dy], "source_bounds": dict(zip(("x1", "y1", "x2", "y2"), src)),
                          "context": context, "min_side": min_side},
                  seed=int(seed), context=context, min_side=min_side, original=original, extra_bounds=src,
                  extra_record={"label": label if label is not None else image.meta.label})


def splice(image: Image, mask, donor: Image, *, blend: str = "poisson", seed: int = 0, context: float = 1.0,
           min_side: int = 64, original: np.ndarray | None = None, label: str | None = None) -> ManipulationResult:
    """Paste the donor's content at the same relative position into the mask, with alpha blending
    (blend='alpha', the mask/feather alpha only) or Poisson blending (blend='poisson', gradients of the donor,
    boundary values of the target)."""
    _check_image(image)
    _check_label_if_known(image, label)
    if donor is None:
        raise ManipulationError("splice needs a donor image (CLI: --donor IMAGE)")
    if not isinstance(donor, Image):
        raise ManipulationError(f"donor must be a medfake Image, got {type(donor).__name__}")
    if blend not in ("alpha", "poisson"):
        raise ManipulationError(f"unknown blend {blend!r}; choose alpha or poisson")
    mi, md = image.meta.modality, donor.meta.modality
    if mi != md:
        raise ManipulationError(
            f"splice donor must be of the same modality as the image: image is {mi or 'unknown'}, donor is "
            f"{md or 'unknown'} (set meta.modality on both; CLI: --modality / --donor-modality)"
        )
    h, w = image.shape
    dh, dw = donor.shape
    donor_arr = donor.array

    def core(wk: _Work) -> np.ndarray:
        from PIL import Image as PILImage

        b = wk.box
        sy, sx = dh / h, dw / w  # same relative position in the donor
        box = (b.x0 * sx, b.y0 * sy, (b.x0 + b.side) * sx, (b.y0 + b.side) * sy)
        pad = int(np.ceil(max(b.side * sx, b.side * sy))) + 1
        padded = np.pad(donor_arr, pad, mode="edge")
        im = PILImage.fromarray(padded.astype(np.float32), mode="F")
        d = np.asarray(im.resize((WORK_SIZE, WORK_SIZE), PILImage.Resampling.LANCZOS,
                                 box=tuple(v + pad for v in box)), np.float64).clip(0, 1)
        if blend == "alpha":
            return d
        return poisson_blend(wk.image, d, wk.mask)

    return _apply(image, mask, "splice", core, working="display",
                  params={"blend": blend, "donor": donor.meta.source, "donor_shape": list(donor.shape),
                          "context": context, "min_side": min_side},
                  seed=int(seed), context=context, min_side=min_side, original=original,
                  extra_record={"label": label if label is not None else image.meta.label,
                                "donor_sha256": donor.meta.sha256})


def retouch(image: Image, mask, *, mode: str = "blur", sigma: float = 3.0, noise_std: float = 0.05, seed: int = 0,
            context: float = 0.5, min_side: int = 64, original: np.ndarray | None = None,
            label: str | None = None) -> ManipulationResult:
    """Local retouch inside the mask: Gaussian blur (sigma in input pixels) or additive Gaussian noise
    (noise_std as a fraction of the image's value range), via scipy.ndimage / numpy with a seeded generator."""
    _check_image(image)
    _check_label_if_known(image, label)
    if mode not in ("blur", "noise"):
        raise ManipulationError(f"unknown retouch mode {mode!r}; choose blur or noise")
    if not (float(sigma) > 0 and float(noise_std) >= 0):
        raise ManipulationError(f"retouch needs sigma > 0 and noise_std ≥ 0, got {sigma}, {noise_std}")
    rng = np.random.default_rng(int(seed))

    def core(wk: _Work) -> np.ndarray:
        return retouch_image(wk.image, mode, sigma=float(sigma) * wk.scale, noise_std=float(noise_std), rng=rng)

    return _apply(image, mask, "retouch", core, working="full",
                  params={"mode": mode, "sigma": float(sigma), "noise_std": float(noise_std), "context": context,
                          "min_side": min_side},
                  seed=int(seed), context=context, min_side=min_side, original=original,
                  extra_record={"label": label if label is not None else image.meta.label})


# ------------------------------------------------------------------ dispatcher and output
def manipulate(image: Image, mask, method: str, *, label: str | None = None, donor: Image | None = None, seed: int = 0,
               generator="ddpm", models_dir=None, **params) -> ManipulationResult:
    """Run `method` (one of METHODS) on `image` inside `mask` (bool, or float alpha from make_mask(feather>0))."""
    _check_image(image)
    if method not in METHODS:
        raise ManipulationError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if method in DIFFUSION_METHODS:
        fn = repaint if method == "repaint" else repaint_ddim
        return fn(image, mask, label=label, seed=seed, generator=generator, models_dir=models_dir, **params)
    if method == "copy-move":
        return copy_move(image, mask, seed=seed, label=label, **params)
    if method == "splice":
        return splice(image, mask, donor, seed=seed, label=label, **params)
    return retouch(image, mask, seed=seed, label=label, **params)


def _write_seg(mask, paths: dict, path: Path, prov, frame: int = 0, more: dict | None = None) -> str:
    """The ground-truth mask as a DICOM SEG over the DICOM just written (`io.dicom_seg`): paths["mask_seg"], or the
    reason it could not be made ("" when written) — the PNG mask is always there, so an image highdicom cannot
    describe (an incomplete pixel measures sequence, a character set it does not know) still gets its ground truth.
    The SEG is built over the file as written (read back), so it references exactly what a viewer loads."""
    import pydicom

    from ..io.writers import dicom_seg

    try:
        seg = dicom_seg(mask, pydicom.dcmread(paths["image"]), prov, frame=frame, more=more)
    except ValueError as e:
        return str(e)
    seg.save_as(path)
    paths["mask_seg"] = path
    return ""


def manipulate_slab(images: dict, centre: int, mask, depth: int, method: str, *, seed: int = 0, progress=None,
                    **kw) -> list[tuple[int, ManipulationResult]]:
    """A lesion over 2·depth + 1 frames or slices: `images` (frame number → Image, holding centre ± depth) each
    edited inside its cross-section of an ellipsoid (`slab_masks`), with one seed for every slice (so a diffusion
    lesion varies smoothly from slice to slice) and, for copy-move, one offset. `kw` goes to `manipulate`.
    `progress(done, total)` counts slices (fractions within a diffusion edit). Returns (offset, result), the
    centre first; depth 0 is the one edit."""
    from .masks import slab_masks

    masks = dict(slab_masks(mask, depth)) if depth else {0: mask}
    order = sorted(masks, key=lambda d: (d != 0, abs(d), d))
    edits = []
    for n, d in enumerate(order):
        if progress is not None and method in DIFFUSION_METHODS:
            kw["progress"] = lambda i, t, n=n: progress(n + i / max(t, 1), len(order))
        r = manipulate(images[centre + d], masks[d], method, seed=seed, **kw)
        if method == "copy-move" and "offset" not in kw:  # one offset for the whole slab
            kw["offset"] = tuple(r.record["params"]["offset"])
        edits.append((d, r))
        if progress is not None:
            progress(n + 1, len(order))
    return edits


def save_result(result: ManipulationResult, out_dir, stem: str = "manipulated", *,
                all_frames: bool = False, slab: Sequence[ManipulationResult] = ()) -> dict[str, Path]:
    """Write <stem>.png|.dcm (same format family and bit depth as the input), <stem>_mask.png (0/255, same size),
    for DICOM also <stem>_mask.dcm (the mask as a DICOM Segmentation over the written image, where highdicom can
    describe its geometry; else the sidecar's `mask_seg_skipped` says why) and <stem>.json (the record). Returns
    {"image", "mask", "sidecar"[, "mask_seg" | "mask_volume"][, "mask_frame_<N>" ...]} paths.

    A frame of a multi-frame DICOM is written as a one-frame instance, or with `all_frames` as the whole object
    (every frame as in the file, the edited one replaced; its SEG over that frame where highdicom can describe
    the frames, i.e. they have a frame of reference). A NIfTI slice is written as PNG, or with `all_frames` as the
    volume it came from, <stem>.nii.gz, with <stem>_mask.nii.gz (the voxels changed) beside it. `slab` (with
    `all_frames`): edits of other frames or slices of the same object (`slab_masks`: a lesion over several slices),
    written into the same object, each mask also as <stem>_mask_<N>.png and in the SEG or mask volume; the
    sidecar lists them. The sidecar's output says which."""
    from PIL import Image as PILImage

    from ..io.writers import Provenance, nifti_with_edit, whole_object_problem, write_dicom

    out_dir = Path(out_dir)
    rec = result.record
    stored = result.stored
    fmt = rec["output"]["format"]
    meta = result.image.meta
    frames = int(meta.extra.get("number_of_frames", 1) or 1) > 1 and "mosaic" not in meta.extra
    if all_frames and (meta.format == "nifti" or frames) and whole_object_problem(result.image):
        # before anything is written
        raise ValueError(f"cannot write {meta.source} back whole: {whole_object_problem(result.image)}")
    volume = all_frames and meta.format == "nifti"
    whole = all_frames and fmt == "dicom" and frames

    def index_of(r: ManipulationResult) -> int:
        m = r.image.meta
        return int(m.extra["slice"]) if volume else int(m.frame or 0)

    if slab:
        if not (volume or whole):
            raise ValueError("more edited frames (slab) need all_frames and a multi-frame DICOM or a NIfTI volume")
        same = (lambda r: r.image.meta.volume is meta.volume) if volume else (
            lambda r: r.image.meta.dicom is not None and r.image.meta.dicom.get("PixelData") is meta.dicom.get(
                "PixelData"))
        if not all(same(r) for r in slab):
            raise ValueError("every edit of a slab must come from the same file as the first")
        indices = [index_of(result), *(index_of(r) for r in slab)]
        if len(set(indices)) != len(indices):
            raise ValueError(f"a slab edits each frame once, got frames {sorted(indices)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths: dict[str, Path] = {}
    b = rec["mask_bounds"]
    details = {"mask_bounds": f"{b['x1']},{b['y1']},{b['x2']},{b['y2']}", "seed": rec["seed"],
               "label": rec.get("label"), "operation": rec.get("operation", "edit")}
    slab_rec = [{"frame": index_of(r), "seed": r.record["seed"], "mask_pixels": r.record["mask_pixels"],
                 "mask_bounds": r.record["mask_bounds"], "timings_s": r.record["timings_s"]} for r in slab]
    if volume:  # the NIfTI volume back, the edited slice's masked voxels replaced (io.writers.nifti_with_edit)
        prov = Provenance("manipulated", rec["method"], str(rec["model_version"]), {
            **details, "slice": f"{meta.extra['slice']} axis {meta.extra['axis']}",
            **({"slab": ",".join(str(v["frame"]) for v in slab_rec)} if slab else {})})
        vol, mask_vol = nifti_with_edit(result.image, result.mask, prov, more=[(r.image, r.mask) for r in slab])
        paths["image"] = out_dir / f"{stem}.nii.gz"
        vol.to_filename(paths["image"])
        paths["mask_volume"] = out_dir / f"{stem}_mask.nii.gz"
        mask_vol.to_filename(paths["mask_volume"])
        rec = {**rec, "output": {"format": "nifti", "dtype": str(vol.get_data_dtype()),
                                 "shape": [int(v) for v in vol.shape], "edited_slice": rec["input"].get("volume_slice"),
                                 "voxels_changed": int(np.asarray(mask_vol.dataobj).sum())}}
    elif fmt == "dicom":
        prov = Provenance("manipulated", rec["method"], str(rec["model_version"]), details)
        n_frames = int(meta.extra.get("number_of_frames", 1) or 1)
        more = {index_of(r): r.stored for r in slab}
        paths["image"] = write_dicom(result.image, out_dir / f"{stem}.dcm", prov, stored=stored, all_frames=whole,
                                     more=more)
        frame = index_of(result) if whole else 0
        seg_note = _write_seg(result.mask, paths, out_dir / f"{stem}_mask.dcm", prov, frame=frame,
                              more={index_of(r): r.mask for r in slab})
        rec = {**rec, "output": {**rec["output"], "frames": n_frames if whole else 1,
                                 **({"edited_frame": frame} if whole else {})}}
    else:
        p = out_dir / f"{stem}.png"
        arr = np.ascontiguousarray(stored)
        if arr.ndim == 3:  # colour in, colour out
            im = PILImage.fromarray(arr, mode="RGBA" if arr.shape[2] == 4 else "RGB")
        elif arr.dtype == np.uint8:
            im = PILImage.fromarray(arr, mode="L")
        else:
            im = PILImage.fromarray(arr.astype(np.uint16))
        im.save(p, format="PNG")
        paths["image"] = p
    mp = out_dir / f"{stem}_mask.png"
    PILImage.fromarray((result.mask.astype(np.uint8) * 255), mode="L").save(mp, format="PNG")
    paths["mask"] = mp
    for r in slab:
        key = f"mask_frame_{index_of(r)}"
        paths[key] = out_dir / f"{stem}_mask_{index_of(r)}.png"
        PILImage.fromarray((r.mask.astype(np.uint8) * 255), mode="L").save(paths[key], format="PNG")
    side = out_dir / f"{stem}.json"
    rec = dict(rec)
    rec["timings_s"] = {**rec.get("timings_s", {}), "write": round(time.perf_counter() - t0, 4)}
    if fmt == "dicom" and not volume and seg_note:
        rec["mask_seg_skipped"] = seg_note
    if slab:
        rec["slab"] = slab_rec
    rec["files"] = {k: v.name for k, v in paths.items() if not k.startswith("mask_frame_")}
    if slab:
        rec["files"]["mask_slab"] = [v.name for k, v in paths.items() if k.startswith("mask_frame_")]
    side.write_text(json.dumps(rec, indent=2, default=str) + "\n")
    paths["sidecar"] = side
    return paths
