"""`medfake manipulate`: a thin shell over medfake.manipulation (read → mask → manipulate → save)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import typer

from ._app import app, fail


@contextlib.contextmanager
def _staged(out: Path):
    """A hidden folder in `out` to write into. If the block ends normally, its files move into `out` (replacing
    files of the same names, as a direct write would). If it fails, they are deleted, and so is `out` if this
    created it."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".medfake-partial-", dir=out))
    try:
        yield stage
        for f in sorted(stage.iterdir()):
            f.replace(out / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()


@app.command("manipulate")
def manipulate_cmd(
    image: Path = typer.Argument(..., help="input image: DICOM, PNG (8/16-bit), JPEG, TIFF, BMP or NIfTI; or a folder "
                                 "holding one DICOM series (a file per slice; --frame N is its Nth slice in order)"),
    method: str = typer.Option(..., "--method", help="repaint, repaint-ddim, copy-move, splice or retouch"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    rect: Optional[str] = typer.Option(None, "--rect", help="X1,Y1,X2,Y2 (input pixels, X2/Y2 exclusive)"),
    ellipse: Optional[str] = typer.Option(None, "--ellipse", help="CX,CY,RX,RY"),
    polygon: Optional[str] = typer.Option(None, "--polygon", help="X,Y,X,Y,... (at least 3 points)"),
    mask: Optional[Path] = typer.Option(None, "--mask", help="mask image of the same size (white = edit)"),
    feather: Optional[float] = typer.Option(
        None, "--feather", help="soft edge: alpha falls to 0 over this many px outside the mask "
                                "(default: 2 for repaint/repaint-ddim, which removes their seam; 0 otherwise)"),
    label: Optional[str] = typer.Option(None, "--label", "-l", help="target class (diffusion: lesion injects, healthy removes)"),
    modality: Optional[str] = typer.Option(None, "--modality", "-m", help="brain_mri, chest_xray, lung_ct, kidney_ct, breast_us, knee_xray"),
    donor: Optional[Path] = typer.Option(None, "--donor", help="donor image for splice (same modality)"),
    donor_modality: Optional[str] = typer.Option(None, "--donor-modality", help="donor's modality (default: --modality)"),
    blend: str = typer.Option("poisson", "--blend", help="splice blending: poisson or alpha"),
    offset: Optional[str] = typer.Option(None, "--offset", help="copy-move: DX,DY from source to target (default: random)"),
    mode: str = typer.Option("blur", "--mode", help="retouch: blur or noise"),
    sigma: float = typer.Option(3.0, "--sigma", help="retouch blur sigma in input pixels"),
    noise_std: float = typer.Option(0.05, "--noise-std", help="retouch noise std (fraction of the value range)"),
    seed: int = typer.Option(0, "--seed"),
    steps: Optional[int] = typer.Option(None, "--steps", help="diffusion steps (repaint 250, repaint-ddim 50)"),
    jump_length: Optional[int] = typer.Option(None, "--jump-length", help="RePaint jump length (repaint 10, ddim 5)"),
    jump_n_sample: Optional[int] = typer.Option(None, "--jump-n-sample", help="RePaint resamplings (repaint 10, ddim 2)"),
    eta: float = typer.Option(1.0, "--eta", help="repaint-ddim: DDIM eta (1 = stochastic, the weakest seam)"),
    guidance: float = typer.Option(1.0, "--guidance", help="classifier-free guidance scale"),
    context: Optional[float] = typer.Option(None, "--context", help="crop margin around the mask, × the mask's extent"),
    generator: str = typer.Option("ddpm", "--generator", help="DDPM model name in the models folder"),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help="models folder (default: settings)"),
    window: Optional[str] = typer.Option(None, "--window", help="CT window preset or C,W used to read DICOM/NIfTI"),
    stem: Optional[str] = typer.Option(None, "--stem", help="output file stem (default: <input>_<method>)"),
    frame: Optional[int] = typer.Option(
        None, "--frame", min=0, help="frame of a multi-frame DICOM or slice of a NIfTI/NRRD/MetaImage volume to "
        "edit, 0-based as `medfake detect` numbers its rows path#N (default: the first frame; a volume's middle "
        "axial slice)"),
    all_frames: bool = typer.Option(
        False, "--all-frames", help="write the whole object back: a multi-frame DICOM (every frame as in the file, "
        "the edited one replaced) instead of the frame as a one-frame instance; a NIfTI volume (.nii.gz, the edited "
        "voxels replaced, and the changed voxels as <stem>_mask.nii.gz) instead of the slice as PNG"),
    depth: int = typer.Option(
        0, "--depth", min=0, max=64, help="with --all-frames: also edit the DEPTH frames (slices) on each side of "
        "--frame, the mask shrunk as an ellipsoid's cross-sections (a lesion over several slices, as CT-GAN's)"),
):
    """Manipulate IMAGE inside a mask; writes the image (same format), <stem>_mask.png (for DICOM also the mask as
    a DICOM SEG, <stem>_mask.dcm) and <stem>.json to --out."""
    from rich.console import Console
    from rich.progress import Progress

    from ..data.modalities import check_modality
    from ..io.errors import MedfakeError
    from ..io.readers import MULTI_IMAGE_FORMATS, VOLUME_FORMATS, dicom_series, read_image, read_images
    from ..io.writers import whole_object_problem
    from ..manipulation import (
        DIFFUSION_METHODS, METHODS, default_feather, make_mask, manipulate_slab, save_result,
    )

    if method not in METHODS:
        fail(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    params: dict = {}
    try:
        if modality is not None:
            check_modality(modality)
        if donor_modality is not None:
            check_modality(donor_modality)
        series = dicom_series(image) if image.is_dir() else None  # a folder: one DICOM series, a file per slice
        if series is not None and all_frames:
            fail("a series folder comes back as its edited slices, each a derived DICOM of its own; --all-frames "
                 "is for one multi-frame file or NIfTI volume")
        if depth and not all_frames and series is None:
            fail("--depth edits the frames around --frame, which only the whole object keeps: add --all-frames")
        centre = 0  # the frame (slice) number asked: the centre of a slab
        if series is not None:
            centre = len(series) // 2 if frame is None else frame
            if not 0 <= centre < len(series):
                fail(f"{image}: slice {centre} out of range (0..{len(series) - 1}) of its {len(series)}-slice series")
            img = read_image(series[centre], window=window, mosaic=False)
        elif depth:  # a slab: every frame (slice) read once, sharing the file's pixel data (volume) as written back
            everything = read_images(image, window=window, mosaic=False, frames="all", slice_index="all")
            volume = everything[0].meta.format in VOLUME_FORMATS
            centre = (len(everything) // 2 if volume else 0) if frame is None else frame  # the readers' defaults
            if not 0 <= centre < len(everything):
                fail(f"{image}: frame {centre} out of range (0..{len(everything) - 1})")
            img = everything[centre]
        else:
            picked = {} if frame is None else {"frames": frame, "slice_index": frame}
            img = read_image(image, window=window, mosaic=False, **picked)  # coordinates in the file's own pixels
            if frame and img.meta.format not in MULTI_IMAGE_FORMATS:  # the readers refuse frames they lack
                fail(f"{image} holds one image, so it has no frame {frame}")
        n_frames = int(img.meta.extra.get("number_of_frames", 1) or 1)
        why = whole_object_problem(img) if all_frames else ""
        if why:
            fail(f"--all-frames writes a multi-frame DICOM or a NIfTI volume back whole; {image} cannot be: {why}")
        targets = {centre: img}  # the images to edit by their frame (slice) number
        if depth:
            count = len(series) if series is not None else len(everything)
            wanted = range(centre - depth, centre + depth + 1)
            if min(wanted) < 0 or max(wanted) >= count:
                fail(f"--frame {centre} --depth {depth} needs frames {min(wanted)}–{max(wanted)}; {image} has "
                     f"0–{count - 1}")
            for k in wanted:
                if k != centre:
                    targets[k] = read_image(series[k], window=window, mosaic=False) if series is not None \
                        else everything[k]
        for im in targets.values():
            if modality is not None:
                im.meta.modality = modality
        if method in DIFFUSION_METHODS and img.meta.modality is None:
            fail(f"{method} needs the image's modality: pass --modality (one of brain_mri, chest_xray, lung_ct, "
                 "kidney_ct, breast_us, knee_xray)")
        feather = default_feather(method) if feather is None else feather
        m = make_mask(img.shape, rect=rect, ellipse=ellipse, polygon=polygon, mask_image=mask, feather=feather)
        donor_img = None
        if method == "splice":
            if donor is None:
                fail("splice needs --donor IMAGE")
            donor_img = read_image(donor, window=window, mosaic=False)
            donor_img.meta.modality = donor_modality or modality
        elif donor is not None:
            fail(f"--donor is only used by splice, not {method}")
        if method in DIFFUSION_METHODS:
            for k, v in (("steps", steps), ("jump_length", jump_length), ("jump_n_sample", jump_n_sample)):
                if v is not None:
                    params[k] = v
            params["guidance"] = guidance
            if method == "repaint-ddim":
                params["eta"] = eta
        elif method == "copy-move" and offset is not None:
            parts = offset.split(",")
            if len(parts) != 2:
                fail(f"--offset must be DX,DY, got {offset!r}")
            params["offset"] = tuple(parts)
        elif method == "splice":
            params["blend"] = blend
        elif method == "retouch":
            params.update(mode=mode, sigma=sigma, noise_std=noise_std)
        if context is not None:
            params["context"] = context
        # one seed for every slice of a slab: the same noise on neighbouring slices makes a diffusion lesion vary
        # smoothly from slice to slice (benchmarks/RESULTS.md, stop 40)
        kw = dict(generator=generator, models_dir=models_dir) if method in DIFFUSION_METHODS else {"donor": donor_img}
        with Progress(transient=True) as prog:
            task = prog.add_task(f"{method} {img.meta.modality or ''} → {label or ''}", total=float(2 * depth + 1))
            edits = manipulate_slab(targets, centre, m, depth, method, label=label, seed=seed, **kw, **params,
                                    progress=lambda done, total: prog.update(task, completed=done, total=total))
        for _, r in edits:
            r.record["feather_px"] = float(feather)  # the sidecar says how the mask was softened
        res = edits[0][1]
        slab_frames = [centre + d for d, _ in edits] if depth else []
        name = stem or f"{image.name.split('.')[0]}_{method}"
        with _staged(out) as stage:  # all files or none: a failure on the 3rd slice leaves no 1st and 2nd
            if series is None:
                paths = save_result(res, stage, name, all_frames=all_frames, slab=[r for _, r in edits[1:]])
            else:  # each edited slice a derived DICOM of its own, in the series it came from
                written = {centre + d: save_result(r, stage, f"{name}_{centre + d}") for d, r in edits}
                paths = written[centre]
        paths = {k: out / v.name for k, v in paths.items()}
    except (MedfakeError, ValueError) as e:
        fail(str(e))
    b = res.record["mask_bounds"]
    Console().print(f"{method}: {res.record['mask_pixels']} px changed-region in ({b['x1']},{b['y1']})–({b['x2']},"
                    f"{b['y2']}) in {res.record['timings_s']['total']:.2f} s; wrote {paths['image']}, "
                    f"{paths['mask'].name}" + (f", {paths['mask_seg'].name} (DICOM SEG)" if "mask_seg" in paths else "")
                    + f", {paths['sidecar'].name}"
                    + (f" (the whole object: {n_frames} frames, frame {img.meta.frame} edited)"
                       if all_frames and img.meta.format == "dicom" else "")
                    + (f", {paths['mask_volume'].name} (the voxels changed; the volume's slice "
                       f"{img.meta.extra['slice']} edited)" if "mask_volume" in paths else "")
                    + (f"; a slab of {len(edits)} frames ({', '.join(str(k) for k in sorted(slab_frames))}), each "
                       f"mask also as <stem>_mask_<N>.png" if len(edits) > 1 and series is None else "")
                    + (f"; series slice {centre} of {len(series)}"
                       + (f", and slices {', '.join(str(k) for k in sorted(slab_frames) if k != centre)} as "
                          f"{name}_<N>.dcm" if len(edits) > 1 else "") if series is not None else ""))
