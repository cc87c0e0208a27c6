"""MedXFake-compatible endpoints (same paths and field names; answers as MedXFake's clients expect).

Differences on purpose: models are chosen by name (`model`), never by `model_path`; errors are 4xx JSON.
"""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from ..data.modalities import MODALITIES
from . import backends
from .encode import b64
from .pipelines import (
    build_mask, detect_images, job_images, jobs_of, manipulation_job, manipulation_params, read_one, read_optional,
    refuse_model_path, settings_of, submit, synthesis_job, synthesis_params, wait_job, with_timeout,
)

router = APIRouter(tags=["MedXFake compatible"], dependencies=[Depends(refuse_model_path)])


def _split_class(cls: str | None, modality: str | None, label: str | None) -> tuple[str, str | None]:
    """MedXFake's `class` is a modality ('brain_mri') or '<modality>_<label>' ('brain_mri_glioma')."""
    if modality:
        return modality, label
    if not cls:
        raise HTTPException(422, "give a modality (or class)")
    if cls in MODALITIES:
        return cls, label
    for m in MODALITIES:
        if cls.startswith(m + "_"):
            return m, cls[len(m) + 1:]
    raise HTTPException(422, f"unknown class {cls!r}; use a modality ({', '.join(MODALITIES)}) or <modality>_<label>")


@router.post("/synthesis")
async def synthesis(request: Request, modality: Optional[str] = Form(None), cls: Optional[str] = Form(None, alias="class"),
                    label: Optional[str] = Form(None), n: Optional[int] = Form(None), num_images: Optional[int] = Form(None),
                    steps: Optional[int] = Form(None), sampler: str = Form("ddim"), seed: int = Form(0),
                    model: Optional[str] = Form(None)):
    """Generate images and answer when done: {"status": "ok", "images": [base64 PNG, ...], "labels": [...]}."""
    settings = settings_of(request)
    mod, lab = _split_class(cls, modality, label)
    count = n if n is not None else (num_images if num_images is not None else 1)
    params = await run_in_threadpool(lambda: synthesis_params(settings, modality=mod, label=lab, n=count,
                                                              sampler=sampler, steps=steps, seed=seed, model=model))
    job = submit(jobs_of(request), "synthesis", synthesis_job(settings, params), params)
    await wait_job(job, settings.request_timeout_s)
    imgs = await run_in_threadpool(job_images, job)
    return {"status": "ok", "modality": mod, "model": params["model"], "job_id": job.id,
            "images": [i["png"] for i in imgs], "labels": [i["label"] for i in imgs]}


@router.post("/manipulate")
async def manipulate(request: Request, image: UploadFile = File(...), mask: Optional[UploadFile] = File(None),
                     rect: Optional[str] = Form(None, description="x1,y1,x2,y2"), ellipse: Optional[str] = Form(None),
                     method: Optional[str] = Form(None), label: Optional[str] = Form(None),
                     modality: Optional[str] = Form(None), seed: int = Form(0), generator: Optional[str] = Form(None),
                     steps: Optional[int] = Form(None, description="diffusion methods: sampling steps")):
    """Edit a region and answer when done: base64 PNGs of the original, the mask and the manipulated image."""
    settings = settings_of(request)
    name, img = await read_one(image, settings, mosaic=False)  # edits write the file back: a mosaic stays whole
    mask_img = await read_optional(mask, settings, "mask")
    m = backends.manipulation()
    if method is None:
        names = backends.method_names(m)
        method = next((x for x in ("repaint-ddim", "repaint") if x in names), names[0] if names else "")
    params = manipulation_params(settings, method=method, label=label, modality=modality, seed=seed, generator=generator,
                                 steps=steps)
    mk = await run_in_threadpool(build_mask, img, mask_img, rect, ellipse, feather=params["feather"])
    job = submit(jobs_of(request), "manipulation", manipulation_job(settings, img, mk, params, None), params)
    await wait_job(job, settings.request_timeout_s)

    def files():
        return {k: b64((job.dir / f"{k}.png").read_bytes()) for k in ("original", "mask", "result")}

    f = await run_in_threadpool(files)
    return {"status": "ok", "filename": name, "method": method, "original": f["original"], "mask": f["mask"],
            "manipulated": f["result"], "job_id": job.id}


async def _detect_one(request: Request, image: UploadFile, model: str | None) -> dict:
    settings = settings_of(request)
    _, img = await read_one(image, settings)
    if model is not None:
        model = backends.check_name(model, settings, kind="detector", what="detector")
    rows = await with_timeout(detect_images, [img], settings, model, False, timeout=settings.request_timeout_s)
    return rows[0]


@router.post("/detect/manipulated")
async def detect_manipulated(request: Request, image: UploadFile = File(...), model: Optional[str] = Form(None)):
    """{"label": "real"|"manipulated", "probability": p_manipulated}."""
    row = await _detect_one(request, image, model)
    p = row["p_manipulated"]
    return {"status": "ok", "label": "manipulated" if p >= 0.5 else "real", "probability": p,
            "modality": row["modality"]}


@router.post("/detect/synthesis8")
async def detect_synthesis8(request: Request, image: UploadFile = File(...), model: Optional[str] = Form(None)):
    """{"class": "<modality>_<real|fake>", "probabilities": {class: p}} over every modality × real/fake."""
    row = await _detect_one(request, image, model)
    ps = float(row["p_synthetic"])
    pm = row.get("scores", {}).get("p_modality")
    if not isinstance(pm, dict) or not pm:
        # the detector reports only its top modality's probability q: the other modalities share 1 - q equally
        q = float(pm) if isinstance(pm, (int, float)) else 1.0
        rest = (1.0 - q) / (len(MODALITIES) - 1)
        pm = {m: (q if m == row["modality"] else rest) for m in MODALITIES}
    probs = {}
    for m in MODALITIES:
        q = float(pm.get(m, 0.0))
        probs[f"{m}_real"] = round(q * (1.0 - ps), 6)
        probs[f"{m}_fake"] = round(q * ps, 6)
    best = f"{row['modality']}_{'fake' if ps >= 0.5 else 'real'}"
    return {"status": "ok", "class": best, "probabilities": probs, "p_synthetic": ps, "modality": row["modality"]}
