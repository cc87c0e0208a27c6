"""What the routes do, as plain functions shared by /v1 and the MedXFake-compatible endpoints: read uploads,
run detection inline, build and run synthesis / manipulation jobs. Routes stay thin."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import numpy as np
from fastapi import HTTPException, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from ..io.image import Image
from ..settings import Settings
from . import backends
from .encode import b64, data_url, png_of, png_url
from .jobs import Job, JobManager, QueueFullError
from .limits import check_count, decode_frames, decode_image, read_upload, safe_name

log = logging.getLogger("medfake.service")
SAMPLERS = ("ddim", "ddpm")


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def jobs_of(request: Request) -> JobManager:
    return request.app.state.jobs


async def refuse_model_path(request: Request) -> None:
    """Router dependency: any `model_path` (query, form or JSON field) is refused with 400."""
    if "model_path" in request.query_params:
        raise HTTPException(400, backends.MODEL_PATH_REFUSED)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()  # cached by Starlette; FastAPI has parsed it already
        if "model_path" in form:
            raise HTTPException(400, backends.MODEL_PATH_REFUSED)
    elif ctype.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            return  # the route's own validation reports bad JSON
        if isinstance(body, dict) and "model_path" in body:
            raise HTTPException(400, backends.MODEL_PATH_REFUSED)


async def with_timeout(fn, *args, timeout: float, **kw):
    try:
        return await asyncio.wait_for(run_in_threadpool(fn, *args, **kw), timeout)
    except asyncio.TimeoutError:
        raise HTTPException(504, f"request took longer than {timeout:g} s") from None


def submit(jobs: JobManager, kind: str, fn, params: dict) -> Job:
    try:
        return jobs.submit(kind, fn, params)
    except QueueFullError as e:
        raise HTTPException(429, str(e), headers={"Retry-After": "5"}) from None


async def wait_job(job: Job, timeout: float) -> Job:
    """Await a job's completion without blocking the loop (compat endpoints answer synchronously)."""
    try:
        await asyncio.wait_for(asyncio.wrap_future(job.future), timeout)
    except asyncio.TimeoutError:
        raise HTTPException(504, f"job {job.id} still running after {timeout:g} s; poll GET /v1/jobs/{job.id}") from None
    if job.state != "done":
        raise HTTPException(422 if job.error and "internal" not in job.error else 500, job.error or "job failed")
    return job


# ------------------------------------------------------------------ uploads
async def read_one(upload: UploadFile, settings: Settings, what: str = "image",
                   mosaic: bool = True, frame: int | None = None) -> tuple[str, Image]:
    if upload is None or not hasattr(upload, "read"):
        raise HTTPException(422, f"{what}: a file upload is required")
    name = safe_name(upload.filename, what)
    data = await read_upload(upload, settings.max_upload_bytes)
    if not data:
        raise HTTPException(422, f"{name}: empty file")
    img = await run_in_threadpool(decode_image, data, name, settings.max_pixels, mosaic, frame)
    return name, img


async def read_slab(upload: UploadFile, settings: Settings, image: Image, depth: int) -> dict[int, Image]:
    """The frames `image.meta.frame` ± `depth` of an uploaded multi-frame DICOM (read again from the upload), by
    frame number: a lesion over several frames. A slab the object does not hold → 422."""
    centre = int(image.meta.frame or 0)
    n = int(image.meta.extra.get("number_of_frames", 1) or 1)
    if centre - depth < 0 or centre + depth >= n:
        raise HTTPException(422, f"depth {depth} around frame {centre} needs frames {centre - depth}–{centre + depth}; "
                                 f"{image.meta.source} has 0–{n - 1}")
    await upload.seek(0)
    data = await read_upload(upload, settings.max_upload_bytes)
    frames = await run_in_threadpool(decode_frames, data, image.meta.source or "image", settings.max_pixels)
    return {k: (image if k == centre else frames[k]) for k in range(centre - depth, centre + depth + 1)}


async def read_optional(upload, settings: Settings, what: str, mosaic: bool = True) -> Image | None:
    """An optional upload field (mask, donor): None when the form left it out or sent it empty-named and empty."""
    if upload is None or not hasattr(upload, "read") or not (upload.filename or upload.size):
        return None
    return (await read_one(upload, settings, what, mosaic))[1]


async def read_many(uploads: list, settings: Settings) -> list[dict]:
    """Each upload → {"name", "image"} or {"name", "status", "error"}; one bad file never fails the others."""
    uploads = [u for u in (uploads or []) if hasattr(u, "read")]
    if not uploads:
        raise HTTPException(422, "no files: send one or more images in the multipart field 'files'")
    check_count(len(uploads), settings.max_files_per_request)
    out = []
    for i, u in enumerate(uploads):
        try:
            name, img = await read_one(u, settings)
            out.append({"name": name, "image": img})
        except HTTPException as e:
            out.append({"name": safe_name(u.filename, f"file{i}"), "status": e.status_code, "error": e.detail})
    return out


# ------------------------------------------------------------------ detection
def _heat_png(a: np.ndarray | None) -> str | None:
    if a is None:
        return None
    return png_url(np.asarray(a, dtype=np.float32))


def detect_images(images: list[Image], settings: Settings, model: str | None, explain: bool = True,
                  copy_move: bool | None = None) -> list[dict]:
    from ..detection.detector import use_copy_move

    # the cue shares the loaded network; None: on when the card has it; True on a card without it → MedfakeError → 422
    det = use_copy_move(backends.detector(model, settings), copy_move)
    with backends.infer_lock:
        preds = det.predict(images, explain=explain)
    from ..detection.summary import dicom_uids
    from ..io.writers import declared_provenance

    rows = []
    for im, p in zip(images, preds):
        ids = dicom_uids(im.meta.dicom)
        frames = int(im.meta.extra.get("number_of_frames", 1) or 1)
        # an upload is one image (decode_image): say so when the file holds more (`medfake detect` scores them all)
        only = f"frame 1 of {frames} scored (medfake detect scores every frame)" if frames > 1 else None
        mosaic = im.meta.extra.get("mosaic")
        if mosaic:
            only = (f"slice {mosaic['slice'] + 1} of the {mosaic['slices']} in this Siemens mosaic scored "
                    "(medfake detect --slices all scores them all)")
        rows.append({
            "study_uid": ids["study_uid"] or None, "series_uid": ids["series_uid"] or None,
            "provenance": declared_provenance(im.meta.dicom) or None,
            "modality": p.modality, "p_synthetic": float(p.p_synthetic), "p_manipulated": float(p.p_manipulated),
            "verdict": p.verdict, "scores": _jsonable(p.scores),
            "note": "; ".join(n for n in (p.note, only) if n) or None,
            "heatmap": _heat_png(p.heatmap) if explain else None,
            "mask": _heat_png(None if p.mask is None else np.asarray(p.mask, dtype=bool)) if explain else None,
            "detector": getattr(det, "name", None), "detector_version": str(getattr(det, "version", "")),
        })
    return rows


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist() if o.size <= 64 else None
    if isinstance(o, (str, int, float, bool)) or o is None:
        return o
    return str(o)


# ------------------------------------------------------------------ synthesis
def synthesis_params(settings: Settings, *, modality: str, label: str | None, n: int, sampler: str,
                     steps: int | None, seed: int, model: str | None, guidance: float | None = None) -> dict:
    from ..data.modalities import UnknownChoiceError, check_label, check_modality

    try:
        check_modality(modality)
        label = None if label in (None, "", "any", "random") else check_label(modality, label)
    except UnknownChoiceError as e:
        raise HTTPException(422, str(e)) from None
    if not 1 <= n <= settings.max_synthesis_images:
        raise HTTPException(422 if n < 1 else 413, f"n must be between 1 and {settings.max_synthesis_images}")
    if sampler not in SAMPLERS:
        raise HTTPException(422, f"unknown sampler {sampler!r}; choose ddim or ddpm")
    if steps is not None and not 1 <= steps <= 1000:
        raise HTTPException(422, "steps must be between 1 and 1000")
    if not 0 <= seed < 2**31:
        raise HTTPException(422, "seed must be between 0 and 2^31-1")
    if guidance is not None and not 0.0 <= guidance <= 20.0:
        raise HTTPException(422, "guidance must be between 0 and 20")
    if model in (None, ""):
        model = backends.default_model(settings, "generator", ("ddpm", "dcgan"))
        if model is None:
            raise HTTPException(503, "no generator is installed (GET /v1/models lists the models)")
    model = backends.check_name(model, settings, kind="generator", what="generator")
    check_synthesis_cost(settings, model, modality=modality, n=n, sampler=sampler, steps=steps, guidance=guidance)
    return {"modality": modality, "label": label, "n": n, "sampler": sampler, "steps": steps, "seed": seed,
            "model": model, "guidance": guidance}


def check_synthesis_cost(settings: Settings, model: str, *, modality: str, n: int, sampler: str, steps: int | None,
                         guidance: float | None) -> None:
    """Refuse (413) before queueing a request whose network passes (images × steps, × 2 for classifier-free
    guidance ≠ 1, at the settings the job would use: the card's choice for what the request leaves open) exceed
    `max_synthesis_passes`, so a client learns at once what it may ask instead of waiting for the job timeout.
    A generator that cannot be loaded is left to the job, which reports it."""
    try:
        gen = backends.generator(model, settings)
    except Exception:  # noqa: BLE001 - the job reports a broken model by name (readyz lists it too)
        return
    st = gen.sampling_settings(modality, sampler, steps, None, guidance)
    per_image = int(st.get("steps", 1)) * (2 if st.get("guidance", 1.0) != 1.0 else 1)
    if n * per_image > settings.max_synthesis_passes:
        how = f"{st['steps']} {st['sampler']} steps" + (f" × 2 for guidance {st['guidance']:g}"
                                                        if per_image > st.get("steps", 1) else "")
        most = settings.max_synthesis_passes // per_image
        raise HTTPException(413, f"{n} images × {how} = {n * per_image:,} network passes; this service allows "
                                 f"{settings.max_synthesis_passes:,} a request: ask for "
                                 + (f"at most {most} images, " if most else "")
                                 + "fewer steps, or the ddim sampler")


def synthesis_job(settings: Settings, params: dict):
    def run(job: Job) -> dict:
        from ..synthesis.io import save_images

        gen = backends.generator(params["model"], settings)
        job.set_progress(0.0)
        st = gen.sampling_settings(params["modality"], params["sampler"], params["steps"], None, params["guidance"])
        imgs = gen.sample(params["modality"], params["label"], params["n"], **st, seed=params["seed"],
                          progress=job.set_progress)
        prov = gen.provenance(**st, seed=params["seed"])
        prefix = f"{params['modality']}_{params['model']}"
        pngs = save_images(imgs, job.dir / "png", prov, fmt="png", prefix=prefix)
        dcms = save_images(imgs, job.dir / "dicom", prov, fmt="dicom", prefix=prefix)
        return {"kind": "synthesis", "params": params, "model": gen.name, "model_version": gen.version,
                "images": [{"png": p.relative_to(job.dir).as_posix(), "dicom": d.relative_to(job.dir).as_posix(),
                            "modality": im.meta.modality, "label": im.meta.label}
                           for p, d, im in zip(pngs, dcms, imgs)]}

    return run


def job_images(job: Job) -> list[dict]:
    """The PNGs of a finished synthesis job as base64 + labels (for the page's gallery and /synthesis)."""
    out = []
    for row in (job.summary or {}).get("images", []):
        p = job.dir / row["png"]
        if p.is_file():
            out.append({"label": row["label"], "modality": row["modality"], "png": b64(p.read_bytes()),
                        "file": Path(row["png"]).name})
    return out


# ------------------------------------------------------------------ manipulation
def build_mask(image: Image, mask_img: Image | None, rect: str | None, ellipse: str | None,
               polygon: str | None = None, feather: float = 0.0):
    """The edit mask at the image's pixel grid from exactly one of: a mask image (non-zero = edit), rect
    'x1,y1,x2,y2' (half-open), ellipse 'cx,cy,rx,ry' or polygon 'x,y,x,y,...' — pixels of the uploaded image.
    Shapes are drawn by medfake.manipulation.make_mask; anything outside the image is a 422."""
    h, w = image.shape
    given = {k: v for k, v in (("rect", rect), ("ellipse", ellipse), ("polygon", polygon)) if v not in (None, "")}
    if mask_img is not None:
        if mask_img.shape != (h, w):
            raise HTTPException(422, f"mask is {mask_img.shape[1]}×{mask_img.shape[0]} but the image is {w}×{h}")
        given["mask_image"] = mask_img.array
    if len(given) != 1:
        raise HTTPException(422, "give exactly one of: a mask image, rect 'x1,y1,x2,y2', ellipse 'cx,cy,rx,ry' "
                                 "or polygon 'x,y,x,y,...'" + (f" (got {', '.join(given)})" if given else ""))
    for k in ("rect", "ellipse", "polygon"):
        if k in given and len(given[k]) > 20000:
            raise HTTPException(413, f"{k} is too long")
    m = backends.manipulation()
    try:
        mask = m.make_mask((h, w), feather=feather, **given)
    except ValueError as ex:
        raise HTTPException(422, str(ex)) from None
    mask = np.asarray(mask)
    if not (mask > 0).any():
        raise HTTPException(422, "the mask is empty (it covers no pixel of the image)")
    return mask


def manipulation_params(settings: Settings, *, method: str, label: str | None, modality: str | None, seed: int,
                        generator: str | None, steps: int | None = None, feather: float | None = None) -> dict:
    """Check a manipulation request's parameters; `feather` None = the method's default (2 px for RePaint)."""
    m = backends.manipulation()
    methods = backends.method_names(m)
    if method not in methods:
        raise HTTPException(422, f"unknown method {method!r}; choose one of: {', '.join(methods)}")
    if modality not in (None, ""):
        from ..data.modalities import UnknownChoiceError, check_label, check_modality

        try:
            check_modality(modality)
            check_label(modality, label or None)
        except UnknownChoiceError as e:
            raise HTTPException(422, str(e)) from None
    if not 0 <= seed < 2**31:
        raise HTTPException(422, "seed must be between 0 and 2^31-1")
    diffusion = backends.is_diffusion(method)
    if steps is not None and not 1 <= steps <= 1000:
        raise HTTPException(422, "steps must be between 1 and 1000")
    if diffusion:
        generator = backends.check_name(generator or backends.default_model(settings, "generator", ("ddpm",)) or "ddpm",
                                        settings, kind="generator", what="generator")
    return {"method": method, "label": label or None, "modality": modality or None, "seed": seed,
            "generator": generator if diffusion else None, "diffusion": diffusion,
            "steps": steps if diffusion else None,
            "feather": float(m.default_feather(method) if feather is None else feather)}


def run_manipulation(image: Image, mask: np.ndarray, params: dict, settings: Settings, donor: Image | None = None,
                     progress=None, slab: dict[int, Image] | None = None):
    """The edit of `image`, or with `slab` (frame number → Image, `read_slab`) of every frame in it
    (`manipulation.manipulate_slab`). Returns [(frame number, result)], `image`'s first; a slab's frame numbers
    are also in that result's record (`slab_frames`)."""
    m = backends.manipulation()
    centre = int(image.meta.frame or 0)
    images = dict(slab or {centre: image})
    if params.get("modality"):
        images = {k: dataclasses.replace(im, meta=dataclasses.replace(im.meta, modality=params["modality"]))
                  for k, im in images.items()}
    kw = {"label": params["label"], "seed": params["seed"]}
    if params["diffusion"]:
        kw.update(generator=params["generator"], models_dir=settings.models_dir)
        if params.get("modality"):
            kw["modality"] = params["modality"]
        if params.get("steps"):
            kw["steps"] = params["steps"]
    else:
        kw["donor"] = donor
    depth = (len(images) - 1) // 2
    with backends.infer_lock if not params["diffusion"] else _nolock():
        edits = m.manipulate_slab(images, centre, mask, depth, params["method"], progress=progress, **kw)
    for _, r in edits:
        r.record["feather_px"] = params.get("feather", 0.0)  # as the CLI's sidecar: how the mask was softened
    if len(edits) > 1:
        edits[0][1].record["slab_frames"] = sorted(centre + d for d, _ in edits)
    return [(centre + d, r) for d, r in edits]


class _nolock:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _provenance(result, params: dict):
    from ..io.writers import Provenance

    rec = getattr(result, "record", {}) or {}
    return Provenance("manipulated", params["method"],
                      str(rec.get("model_version") or params.get("generator") or "classical"),
                      {"seed": params["seed"], "label": rec.get("label", params.get("label"))})


def seg_of(result, params: dict, dicom: bytes, slab=()) -> bytes | None:
    """The ground-truth mask as a DICOM SEG over the result DICOM `dicom` (io.dicom_seg), or None where highdicom
    cannot describe that image's geometry (the PNG mask is always sent)."""
    import io as _io

    import pydicom

    from ..io.writers import dicom_seg

    try:
        frame = (result.image.meta.frame or 0) if params.get("all_frames") else 0  # the edited frame of a whole object
        seg = dicom_seg(np.asarray(result.mask, dtype=bool), pydicom.dcmread(_io.BytesIO(dicom)),
                        _provenance(result, params), frame=frame,
                        more={k: np.asarray(r.mask, dtype=bool) for k, r in slab} or None)
    except ValueError:
        return None
    buf = _io.BytesIO()
    seg.save_as(buf)
    return buf.getvalue()


def check_whole_object_reason(image: Image) -> str:
    """Why the service cannot answer `image` back whole ("" when it can; the size bound aside)."""
    from ..io.writers import whole_object_problem

    if image.meta.format == "nifti":  # the answer carries DICOM and PNG; a volume back is the CLI's and the API's
        return (f"the service writes a multi-frame DICOM back whole, not a NIfTI volume (medfake manipulate "
                f"{image.meta.source} --all-frames does)")
    why = whole_object_problem(image)
    return f"{image.meta.source} cannot be written back whole: {why}" if why else ""


def check_whole_object(image: Image, all_frames: bool, settings: Settings) -> None:
    """`all_frames` asks for a multi-frame DICOM upload back whole: 422 when it cannot be (not multi-frame, 16/32-bit
    colour frames: `io.writers.whole_object_problem`), 413 when the object, written uncompressed, would be larger
    than the upload limit (a compressed cine loop inflates): the answer is bounded as the request is."""
    if not all_frames:
        return
    why = check_whole_object_reason(image)
    if why:
        raise HTTPException(422, f"all_frames: {why}")
    ds = image.meta.dicom
    n, h, w = int(ds.get("NumberOfFrames", 1) or 1), *image.shape
    spp = 3 if image.meta.colour is not None else 1
    size = n * h * w * spp * (1 if spp == 3 else max(1, int(ds.get("BitsAllocated", 8) or 8) // 8))
    if size > settings.max_upload_bytes:
        raise HTTPException(413, f"all_frames: {image.meta.source} would be {size / 2**20:.1f} MiB uncompressed, "
                                 f"over the limit of {settings.max_upload_bytes / 2**20:.1f} MiB; ask for the frame "
                                 "alone (all_frames false)")


def dicom_of(result, params: dict, slab=()) -> bytes:
    import io as _io

    from ..io.writers import dicom_derived, dicom_secondary_capture

    prov = _provenance(result, params)
    img = result.image
    if img.meta.dicom is None:
        ds = dicom_secondary_capture(img, prov)
    else:
        ds = dicom_derived(img, prov, getattr(result, "stored", None), all_frames=bool(params.get("all_frames")),
                           more={k: r.stored for k, r in slab} or None)
    buf = _io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def manipulation_payload(original: Image, edits: list, params: dict) -> dict:
    """The answer to an edit: `edits` as `run_manipulation` returns them (a slab's other frames go into the DICOM
    and its SEG; the PNGs show the first)."""
    result, slab = edits[0][1], edits[1:]
    dicom = dicom_of(result, params, slab)
    seg = seg_of(result, params, dicom, slab)
    return {"method": params["method"], "original": png_url(original),
            "mask": png_url(np.asarray(result.mask, dtype=bool)), "result": png_url(result.image),
            "dicom": data_url(dicom, "application/dicom"),
            "mask_dicom": None if seg is None else data_url(seg, "application/dicom"),
            "record": _jsonable(getattr(result, "record", {}))}


def manipulation_job(settings: Settings, image: Image, mask: np.ndarray, params: dict, donor: Image | None,
                     slab: dict[int, Image] | None = None):
    def run(job: Job) -> dict:
        edits = run_manipulation(image, mask, params, settings, donor, progress=job.set_progress, slab=slab)
        res = edits[0][1]
        (job.dir / "original.png").write_bytes(png_of(image))
        (job.dir / "mask.png").write_bytes(png_of(np.asarray(res.mask, dtype=bool)))
        (job.dir / "result.png").write_bytes(png_of(res.image))
        dicom = dicom_of(res, params, edits[1:])
        (job.dir / "result.dcm").write_bytes(dicom)
        files = ["original.png", "mask.png", "result.png", "result.dcm"]
        seg = seg_of(res, params, dicom, edits[1:])
        if seg is not None:
            (job.dir / "mask.dcm").write_bytes(seg)
            files.append("mask.dcm")
        return {"kind": "manipulation", "params": params, "record": _jsonable(getattr(res, "record", {})),
                "files": files}

    return run
