"""Versioned API: /v1/detect, /v1/summary, /v1/manipulate, /v1/synthesize, /v1/jobs/{id}, /v1/jobs/{id}/result,
/v1/models."""

from __future__ import annotations

from typing import Literal, Optional

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ..io.readers import VOLUME_FORMATS
from . import backends
from .encode import png_url
from .pipelines import (
    build_mask, check_whole_object, check_whole_object_reason, detect_images, jobs_of, manipulation_job,
    manipulation_params, manipulation_payload, read_many, read_one, read_optional, read_slab, refuse_model_path,
    run_manipulation, settings_of, submit, synthesis_job, synthesis_params, with_timeout,
)

router = APIRouter(prefix="/v1", tags=["v1"], dependencies=[Depends(refuse_model_path)])


@router.post("/detect")
async def detect(request: Request, files: list[UploadFile] = File(..., description="one or more images (repeat the field)"),
                 model: Optional[str] = Form(None, description="detector name from GET /v1/models (default: the shipped one)"),
                 explain: bool = Form(True, description="include heatmap and mask PNGs"),
                 include_image: bool = Form(False, description="echo each decoded image as a PNG data URL"),
                 copy_move: Optional[bool] = Form(None, description="the copy-move cue (duplicated texture): default "
                                                                    "on when the detector's card has it; false: off, "
                                                                    "faster")):
    """Detect synthetic and manipulated images. One row per file; a bad file gives a row with verdict 'error'.
    A request whose every file is bad is answered 4xx (413 too large, 422 undecodable)."""
    settings = settings_of(request)
    items = await read_many(files, settings)
    good = [it for it in items if "image" in it]
    if not good:
        first = items[0]
        if len(items) == 1:
            raise HTTPException(first["status"], first["error"])
        raise HTTPException(max(it["status"] for it in items) if all(it["status"] == 413 for it in items) else 422,
                            "no readable image: " + "; ".join(it["error"] for it in items[:5]))
    if model is not None:
        model = backends.check_name(model, settings, kind="detector", what="detector")
    rows = await with_timeout(detect_images, [it["image"] for it in good], settings, model, explain, copy_move,
                              timeout=settings.request_timeout_s)
    it_rows = iter(rows)
    results = []
    for it in items:
        if "image" in it:
            h, w = it["image"].shape
            row = {"filename": it["name"], "width": w, "height": h, **next(it_rows)}
            if include_image:
                row["image"] = png_url(it["image"])
            results.append(row)
        else:
            results.append({"filename": it["name"], "verdict": "error", "status": it["status"], "message": it["error"],
                            "modality": None, "p_synthetic": None, "p_manipulated": None, "heatmap": None, "mask": None})
    # one verdict per DICOM series (a file without UIDs is its own group): detection.summary's rule
    from ..detection.summary import rates_of

    series = group_results(results, "series", rates_of(backends.detector(model, settings).card))
    return {"results": results, "count": len(results), "errors": sum(r["verdict"] == "error" for r in results),
            "series": series}


MAX_SUMMARY_ROWS = 20_000


class SummaryRow(BaseModel):
    """One /v1/detect result row, as much of it as the grouping reads."""

    model_config = ConfigDict(extra="ignore")
    filename: str = Field("", max_length=256)
    verdict: Literal["real", "synthetic", "manipulated", "uncertain", "error"]
    p_synthetic: Optional[float] = Field(None, ge=0.0, le=1.0)
    p_manipulated: Optional[float] = Field(None, ge=0.0, le=1.0)
    study_uid: Optional[str] = Field(None, max_length=64)
    series_uid: Optional[str] = Field(None, max_length=64)


class SummaryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    results: list[SummaryRow] = Field(..., max_length=MAX_SUMMARY_ROWS)
    group_by: Literal["series", "study", "file"] = "series"
    model: Optional[str] = Field(None, max_length=128, description="the detector that scored the rows (its "
                                                                   "calibrated false-alarm rate weighs the counts)")


@router.post("/summary")
async def summary(request: Request, body: SummaryRequest):
    """Per-series (or study, or file) verdicts over result rows of one or more /v1/detect calls (the web page sends
    a batch in several requests): the rule of `medfake detect --summary`. Rows are grouped by position and UID;
    nothing is decoded or scored here."""
    from ..detection.summary import detector_rates
    from ..io.errors import MedfakeError

    settings = settings_of(request)
    model = None if body.model is None else backends.check_name(body.model, settings, kind="detector",
                                                                 what="detector")
    try:  # the card's rates only: no model is loaded for this
        rates = detector_rates(model or "default", settings.models_dir)
    except (MedfakeError, OSError, ValueError) as e:
        raise HTTPException(503, f"detector {model or 'default'!r} has no readable card: "
                                 f"{backends.redact(str(e), settings)}") from None
    groups = group_results([r.model_dump() for r in body.results], body.group_by, rates)
    return {"groups": groups, "count": len(groups), "group_by": body.group_by}


def group_results(results: list[dict], by: str, rates: tuple[float, float]) -> list[dict]:
    """`detection.summary.summarize` over service result rows: the file name is the path, and an upload whose name
    another upload also has is told apart by its position ("name (2)"), so two different `image.png` are two
    groups. `rates`: the detector's per-image (fpr, uncertain_fpr), `detection.summary.rates_of` its card."""
    from ..detection.summary import summarize

    seen: dict[str, int] = {}
    total: dict[str, int] = {}
    for r in results:
        total[r["filename"]] = total.get(r["filename"], 0) + 1
    rows = []
    for r in results:
        name = r["filename"]
        seen[name] = seen.get(name, 0) + 1
        key = f"{name} ({seen[name]})" if total[name] > 1 else name
        rows.append({**r, "path": key, "file": key})
    return summarize(rows, by, *rates)


@router.post("/preview")
async def preview(request: Request, file: UploadFile = File(..., description="any supported image (DICOM, NIfTI, PNG, ...)"),
                  frame: Optional[int] = Form(None, ge=0, le=1_000_000, description="frame or volume slice, 0-based "
                                              "(default: as /v1/manipulate's default)")):
    """Decode an upload as the manipulation endpoint sees it (first frame / middle slice or the `frame` asked, a
    Siemens mosaic whole, windowed) → 8-bit PNG data URL at its own pixel size, and how many frames (a multi-frame
    DICOM's) or slices (a volume's, on its axis) it holds and which one this is. The web page draws masks on this."""
    name, img = await read_one(file, settings_of(request), mosaic=False, frame=frame)
    h, w = img.shape
    m = img.meta
    if m.format in VOLUME_FORMATS and m.original_shape and len(m.original_shape) >= 3:
        frames, shown = int(m.original_shape[int(m.extra.get("axis", 2))]), int(m.extra.get("slice", 0))
    else:
        frames, shown = int(m.extra.get("number_of_frames", 1) or 1), int(m.frame or 0)
    whole = m.format == "dicom" and frames > 1 and not check_whole_object_reason(img)
    return {"filename": name, "width": w, "height": h, "format": m.format, "image": png_url(img),
            "frames": frames, "frame": shown, "whole_object": whole}


@router.post("/manipulate")
async def manipulate(request: Request, image: UploadFile = File(..., description="image to edit"),
                     mask: Optional[UploadFile] = File(None, description="mask PNG at the image's size (non-zero = edit)"),
                     donor: Optional[UploadFile] = File(None, description="donor image (splice)"),
                     rect: Optional[str] = Form(None, description="x1,y1,x2,y2 in image pixels (half-open)"),
                     ellipse: Optional[str] = Form(None, description="cx,cy,rx,ry in image pixels"),
                     polygon: Optional[str] = Form(None, description="x,y,x,y,... (≥ 3 points) in image pixels"),
                     feather: Optional[float] = Form(None, ge=0.0, le=64.0,
                                                     description="soft edge in px (default: 2 for RePaint, else 0)"),
                     method: str = Form(..., description="see GET /v1/models → manipulation_methods"),
                     label: Optional[str] = Form(None), modality: Optional[str] = Form(None),
                     seed: int = Form(0), generator: Optional[str] = Form(None),
                     steps: Optional[int] = Form(None, description="diffusion methods: sampling steps"),
                     frame: Optional[int] = Form(None, ge=0, le=1_000_000, description="frame of a multi-frame DICOM "
                                                 "or slice of a NIfTI/NRRD/MetaImage volume to edit, 0-based (default: "
                                                 "the first frame; a volume's middle slice)"),
                     all_frames: bool = Form(False, description="multi-frame DICOM: the result DICOM is the whole "
                                                                "object, the edited frame replaced (default: that "
                                                                "frame as a one-frame instance)"),
                     depth: int = Form(0, ge=0, le=16, description="with all_frames: also edit the `depth` frames on "
                                       "each side of `frame`, the mask shrunk as an ellipsoid's cross-sections, one "
                                       "seed (a lesion over several slices, as `medfake manipulate --depth`)")):
    """Edit a region. Classical methods answer inline (PNG + DICOM data URLs); diffusion methods return a job."""
    settings = settings_of(request)
    # edits write the file back: a mosaic stays whole
    name, img = await read_one(image, settings, mosaic=False, frame=frame)
    check_whole_object(img, all_frames, settings)
    if depth and not all_frames:
        raise HTTPException(422, "depth edits the frames around `frame`, which only the whole object keeps: "
                                 "add all_frames=true")
    slab = await read_slab(image, settings, img, depth) if depth else None
    mask_img = await read_optional(mask, settings, "mask")
    donor_img = await read_optional(donor, settings, "donor", mosaic=False)
    params = manipulation_params(settings, method=method, label=label, modality=modality, seed=seed, generator=generator,
                                 steps=steps, feather=feather)
    params["all_frames"] = bool(all_frames)
    m = await run_in_threadpool(build_mask, img, mask_img, rect, ellipse, polygon, params["feather"])
    if params["diffusion"]:
        job = submit(jobs_of(request), "manipulation", manipulation_job(settings, img, m, params, donor_img, slab),
                     {k: v for k, v in params.items()} | {"filename": name})
        return JSONResponse({"job_id": job.id, "state": job.state, "status_url": f"/v1/jobs/{job.id}"}, status_code=202)
    edits = await with_timeout(run_manipulation, img, m, params, settings, donor_img, None, slab,
                               timeout=settings.request_timeout_s)
    return {"filename": name, **manipulation_payload(img, edits, params)}


class SynthesisRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modality: str
    label: Optional[str] = None
    n: int = Field(4, description="number of images")
    sampler: Literal["ddim", "ddpm"] = "ddim"
    steps: Optional[int] = Field(None, description="sampling steps (ddim default 50, ddpm 1000)")
    seed: int = 0
    guidance: Optional[float] = Field(None, description="classifier-free guidance scale (default: the model "
                                      "card's choice for the modality, else 1)")
    model: Optional[str] = Field(None, description="generator name from GET /v1/models")


@router.post("/synthesize", status_code=202)
async def synthesize(request: Request, body: SynthesisRequest):
    """Queue a synthesis job; poll GET /v1/jobs/{id}, then download GET /v1/jobs/{id}/result (zip)."""
    settings = settings_of(request)
    params = await run_in_threadpool(lambda: synthesis_params(settings, **body.model_dump()))  # may load the model
    job = submit(jobs_of(request), "synthesis", synthesis_job(settings, params), params)
    return {"job_id": job.id, "state": job.state, "status_url": f"/v1/jobs/{job.id}"}


def _job_or_404(request: Request, job_id: str):
    job = jobs_of(request).get(job_id)
    if job is None:
        raise HTTPException(404, "no such job (ids are 32 hex characters; results expire)")
    return job


@router.get("/jobs/{job_id}")
async def job_status(request: Request, job_id: str, images: bool = False):
    """State queued|running|done|failed|expired, progress 0..1, error. `images=true` adds the PNGs (base64)."""
    job = _job_or_404(request, job_id)
    body = job.public()
    if images and job.state == "done":
        from .pipelines import job_images

        body["images"] = await run_in_threadpool(job_images, job)
        if job.kind == "manipulation":
            from .encode import data_url

            body["files"] = {f: data_url((job.dir / f).read_bytes(), "application/dicom" if f.endswith(".dcm") else "image/png")
                             for f in (job.summary or {}).get("files", []) if (job.dir / f).is_file()}
    return body


@router.get("/jobs/{job_id}/result", response_class=Response,
            responses={200: {"content": {"application/zip": {}}, "description": "zip of PNGs, DICOMs and result.json"}})
async def job_result(request: Request, job_id: str):
    job = _job_or_404(request, job_id)
    if job.state == "expired":
        raise HTTPException(410, "the job's results have expired and were deleted")
    if job.state != "done":
        raise HTTPException(409, f"job is {job.state}" + (f": {job.error}" if job.error else ""))
    data = await run_in_threadpool(jobs_of(request).result_zip, job)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="medfake-{job.kind}-{job.id[:8]}.zip"'})


@router.get("/models")
async def models(request: Request):
    """Every model card in the models folder (name, version, kind, modalities, metrics), plus what the
    service can do with them."""
    settings = settings_of(request)
    rows = await run_in_threadpool(backends.list_models, settings)
    from ..data.modalities import MODALITIES

    try:
        methods = backends.method_names(backends.manipulation())
    except HTTPException:
        methods = []
    return {"models": rows, "modalities": {k: list(v) for k, v in MODALITIES.items()},
            "manipulation_methods": [{"name": m, "diffusion": backends.is_diffusion(m)} for m in methods],
            "samplers": ["ddim", "ddpm"]}
