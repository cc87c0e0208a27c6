"""`medfake eval`: score a detector on a built data set (or any manifest with a `kind` column), with
breakdowns, localization, robustness, adversarial attacks, the LOGO protocol and an HTML report."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.manifest import Record, read_manifest
from ..data.modalities import MODALITY_NAMES
from ..io.errors import MedfakeError

KINDS = ("real", "synthetic", "manipulated")


def fake_score(pred) -> float:
    """One fake probability per prediction: the detector's own p_fake when it reports one, else the larger
    of p_synthetic and p_manipulated."""
    if pred.scores and "p_fake" in pred.scores:
        return float(pred.scores["p_fake"])
    return float(max(pred.p_synthetic, pred.p_manipulated))


def task_metrics(kinds: list[str], modalities: list[str], preds, thresholds: dict) -> dict:
    """The two detection tasks scored separately, as MedXFake reports them: synthetic (real vs synthetic images,
    score p_synthetic) and manipulation (real vs manipulated images, score p_manipulated), each at the detector's
    own threshold for that head (0.5 when the detector states none; a head whose threshold is stated as None is
    switched off and its task is left out), raised by the floor of the image's predicted modality when the
    thresholds have per-modality floors (`by_modality`), as the detector's verdicts are; plus, per modality, the
    share of real images whose verdict is not 'real' (false alarms at the shipped thresholds, 'uncertain' counted
    as an alarm)."""
    from ..detection.calibrate import alarm_rates, thresholds_for
    from .metrics import binary_metrics

    out: dict = {}
    for task, attr in (("synthetic", "p_synthetic"), ("manipulated", "p_manipulated")):
        sel = [i for i, k in enumerate(kinds) if k in ("real", task)]
        y = np.array([int(kinds[i] == task) for i in sel])
        if task in thresholds and thresholds[task] is None:  # the detector has no such head
            continue
        if 0 < y.sum() < len(y):
            sc = np.array([float(getattr(preds[i], attr)) for i in sel])
            if thresholds.get("by_modality"):
                thr = np.array([float(thresholds_for(thresholds, getattr(preds[i], "modality", None))[task])
                                for i in sel])
            else:
                thr = float(thresholds.get(task, 0.5))
            out[task] = binary_metrics(y, sc, thr)
    fpr = {}
    for m in sorted(set(modalities)):
        reals = [i for i, (k, mm) in enumerate(zip(kinds, modalities)) if k == "real" and mm == m]
        if reals:
            rates = alarm_rates(preds[i].verdict for i in reals)
            fpr[m] = {"n_real": len(reals), "not_real": rates["not_real"], "called_fake": rates["called_fake"]}
    out["real_false_alarms"] = fpr
    return out


SIDE_SCORES = ("p_synthetic_classifier", "p_manipulated_classifier", "manipulation_head_logit",
               "segmentation_top_logit", "knn_synthetic", "knn_manipulated", "anomaly",
               "copy_move", "localizer_evidence")  # keys of Prediction.scores reported beside the verdict score


def score_table(preds) -> dict[str, np.ndarray]:
    """Every score the predictions carry, one array each: the fused fake score (`fake`), the two head
    probabilities, and those of `SIDE_SCORES` present in every prediction's `scores` (classifier-only
    probabilities, the retrieval bank's kNN scores, the real-only anomaly score, the copy-move cue)."""
    out = {"fake": np.array([fake_score(p) for p in preds], dtype=float),
           "p_synthetic": np.array([float(p.p_synthetic) for p in preds]),
           "p_manipulated": np.array([float(p.p_manipulated) for p in preds])}
    for k in SIDE_SCORES:
        if preds and all(p.scores and k in p.scores for p in preds):
            out[k] = np.array([float(p.scores[k]) for p in preds])
    return out


def score_aucs(preds, gens: Sequence[str]) -> dict:
    """AUC of each score (`score_table`) for each generator's images against all real images, so that the
    anomaly and retrieval scores are reported beside the classifiers'. {score: {generator: auc}}."""
    from sklearn.metrics import roc_auc_score

    gens = np.asarray(gens, dtype=object)
    real = gens == "real"
    out: dict = {}
    for name, sc in score_table(preds).items():
        row = {}
        for g in sorted(set(gens.tolist()) - {"real"}):
            sel = real | (gens == g)
            row[str(g)] = float(roc_auc_score((gens[sel] != "real").astype(int), sc[sel])) if real.any() else None
        out[name] = row
    return out


def predict_batched(detector, images, *, batch: int = 64, explain: bool = False, progress=None) -> list:
    out = []
    for s in range(0, len(images), batch):
        out.extend(detector.predict(images[s : s + batch], explain=explain))
        if progress:
            progress(min(s + batch, len(images)))
    return out


def fake_scores(detector, images, *, batch: int = 64) -> np.ndarray:
    return np.array([fake_score(p) for p in predict_batched(detector, images, batch=batch)], dtype=float)


def load_eval_records(data: str | Path, split: str | None = "test") -> list[Record]:
    """Rows to evaluate: `split` rows when the manifest has splits, every row when it has none."""
    recs = read_manifest(data)
    if not recs:
        raise MedfakeError(f"{data}: no rows to evaluate")
    if any("kind" not in r.extra for r in recs):
        raise MedfakeError(f"{data}: manifest lacks a 'kind' column (real|synthetic|manipulated); "
                           "build one with `medfake dataset build`")
    bad = sorted({r.extra["kind"] for r in recs} - set(KINDS))
    if bad:
        raise MedfakeError(f"{data}: unknown kind(s) {bad}; expected {KINDS}")
    if split and any(r.split for r in recs):
        recs = [r for r in recs if r.split == split]
        if not recs:
            raise MedfakeError(f"{data}: no rows in split {split!r}")
    return recs


def load_images(recs: Sequence[Record], progress=None):
    from ..data.canonical import to_canonical
    from ..io.image import Image, Meta
    from ..io.readers import read_image

    out = []
    for i, r in enumerate(recs):
        out.append(Image(to_canonical(read_image(r.path)),
                         Meta(source=str(r.path), modality=r.modality, label=r.label, format="png")))
        if progress:
            progress(i + 1)
    return out


def read_mask(path: Path) -> np.ndarray:
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def _localizer_name(det) -> str | None:
    """'<name> <version>' of the localizer the detector's masks come from (an ensemble's: its primary's), or None."""
    loc = getattr(det, "localizer", None) or getattr(getattr(det, "primary", None), "localizer", None)
    return f"{loc.name} {loc.version}" if loc is not None else None


def _nan_to_none(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _nan_to_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_nan_to_none(v) for v in o]
    if isinstance(o, np.generic):
        return _nan_to_none(o.item())
    return o


def _group_metrics(y, s, keys, threshold, *, fakes_vs_all_reals: bool = False) -> dict:
    from .metrics import binary_metrics

    y = np.asarray(y)
    keys = np.asarray(keys, dtype=object)
    out = {}
    for k in sorted(set(keys.tolist())):
        if fakes_vs_all_reals:
            if k == "real":
                continue
            sel = (keys == k) | (y == 0)
        else:
            sel = keys == k
        out[str(k)] = binary_metrics(y[sel], np.asarray(s)[sel], threshold)
    return out


def _resolve_detector(detector, models_dir):
    if isinstance(detector, str):
        try:
            from ..detection import load_detector
        except ImportError as e:  # the detection stage is not installed/ready
            raise MedfakeError(f"cannot load detector {detector!r}: medfake.detection.load_detector unavailable ({e})") from None
        from ..settings import get_settings, torch_device

        return load_detector(detector, models_dir=models_dir, device=str(torch_device(get_settings().device)))
    return detector


def evaluate(
    data: str | Path,
    out: str | Path,
    *,
    split: str | None = "test",
    detector="default",
    models_dir: str | Path | None = None,
    robustness: bool = True,
    adversarial: bool = True,
    external: bool = True,
    external_more: str | Path | None = None,
    logo: bool = False,
    logo_options: dict | None = None,
    threshold: float | None = None,
    gallery: int = 6,
    batch: int = 64,
    seed: int = 0,
    adversarial_max: int = 256,
    progress: bool = True,
    copy_move: bool | None = None,
) -> dict:
    """Evaluate `detector` (a name for medfake.detection.load_detector, or a Detector) on `data`; writes
    out/results.json and out/report.html and returns the results dict. `copy_move`: the detector's copy-move cue
    on, off, or (None) on when its card has it (`detection.detector.use_copy_move`)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .metrics import binary_metrics, localization_metrics, modality_confusion

    recs = load_eval_records(data, split)
    det = _resolve_detector(detector, models_dir)
    from ..detection.detector import use_copy_move

    det = use_copy_move(det, copy_move)
    thr = float(threshold if threshold is not None else (getattr(det, "card", None) or {}).get("threshold", 0.5))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kinds = [r.extra["kind"] for r in recs]
    y = np.array([k != "real" for k in kinds], dtype=int)
    gens = [r.extra.get("generator") or ("real" if k == "real" else k) for r, k in zip(recs, kinds)]

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not progress) as prog:
        t = prog.add_task("read", total=len(recs))
        images = load_images(recs, lambda i: prog.update(t, completed=i))
        t = prog.add_task(f"detect ({getattr(det, 'name', 'detector')})", total=len(recs))
        preds = predict_batched(det, images, batch=batch, progress=lambda i: prog.update(t, completed=i))
        s = np.array([fake_score(p) for p in preds], dtype=float)
        pred_fake = (s >= thr).astype(int)

        res: dict = {
            "data": str(data), "split": split if any(r.split for r in recs) else None, "n": len(recs),
            "detector": {"name": getattr(det, "name", type(det).__name__), "version": getattr(det, "version", "?"),
                         "copy_move_cue": getattr(det, "copy_move", None) is not None,
                         "localizer": _localizer_name(det)},
            "threshold": thr,
            "overall": binary_metrics(y, s, thr),
            "by_modality": _group_metrics(y, s, [r.modality for r in recs], thr),
            "by_label": _group_metrics(y, s, [f"{r.modality}/{r.label}" for r in recs], thr),
            "by_generator": _group_metrics(y, s, gens, thr, fakes_vs_all_reals=True),
            "confusion_12": modality_confusion([r.modality for r in recs], y, [p.modality for p in preds], pred_fake,
                                               [m for m in MODALITY_NAMES]),
        }
        from sklearn.metrics import confusion_matrix, roc_curve

        res["by_task"] = task_metrics(kinds, [r.modality for r in recs], preds,  # the thresholds in use
                                      getattr(det, "thresholds", None)
                                      or (getattr(det, "card", None) or {}).get("thresholds") or {})
        res["score_aucs"] = score_aucs(preds, gens)
        verdicts = [p.verdict if p.verdict in KINDS else "other" for p in preds]
        res["confusion_verdict"] = {"classes": list(KINDS) + ["other"],
                                    "matrix": confusion_matrix(kinds, verdicts, labels=list(KINDS) + ["other"]).tolist()}
        curves = {}
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_curve(y, s)
            curves["all"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
            for g in sorted(set(gens) - {"real"}):
                sel = np.array([gg == g or yy == 0 for gg, yy in zip(gens, y)])
                fpr, tpr, _ = roc_curve(y[sel], s[sel])
                curves[g] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
        res["roc_curves"] = curves

        # localization on manipulated images with ground-truth masks, on each predicted mask as it is
        man = [i for i, r in enumerate(recs) if kinds[i] == "manipulated" and r.extra.get("mask")]
        if man:
            root = Path(data) if Path(data).is_dir() else Path(data).parent
            t = prog.add_task("localize", total=len(man))
            lp = predict_batched(det, [images[i] for i in man], batch=batch, explain=True,
                                 progress=lambda i: prog.update(t, completed=i))
            pairs = [(read_mask(root / recs[i].extra["mask"]), p.mask) for i, p in zip(man, lp)]
            loc = localization_metrics(pairs)
            per = loc.pop("per_image")
            for i, p in zip(man, per):
                p["path"] = str(recs[i].path)
            by_method = defaultdict(list)
            for i, p in zip(man, per):
                by_method[gens[i]].append(p)
            loc["by_method"] = {g: {"n": len(v), "pixel_f1": float(np.mean([p["f1"] for p in v])),
                                    "iou": float(np.mean([p["iou"] for p in v]))} for g, v in by_method.items()}
            loc["per_image"] = per
            res["localization"] = loc

        if robustness:
            from .robustness import DEGRADATIONS, evaluate_robustness

            t = prog.add_task("robustness", total=len(DEGRADATIONS))
            res["robustness"] = evaluate_robustness(det, images, y, threshold=thr, seed=seed, batch=batch,
                                                    progress=lambda c: prog.update(t, advance=1), groups=gens)
        if adversarial and adversarial_max > 0:  # --adversarial-max 0 skips the attacks
            from .adversarial import evaluate_adversarial

            idx = np.arange(len(images))
            if len(idx) > adversarial_max:
                idx = np.sort(np.random.default_rng(seed).choice(idx, adversarial_max, replace=False))
            prog.add_task(f"adversarial ({len(idx)} images)", total=None)
            dev = getattr(det, "device", None)
            res["adversarial"] = evaluate_adversarial(det, np.stack([images[i].array for i in idx]), y[idx],
                                                      seed=seed, device=dev)

    if external:
        from .external import external_real_alarms

        res["external_reals"] = external_real_alarms(det, log=lambda m: None, batch=batch)  # skips: in the result
        if external_more is not None and Path(external_more).is_dir():  # the fetched second set (external.py)
            from .external import external_more_alarms

            res["external_more"] = external_more_alarms(det, external_more, log=lambda m: None, batch=batch)

    if logo:
        from .protocols import leave_one_generator_out

        res["logo"] = leave_one_generator_out(data, work_dir=out / "logo", models_dir=models_dir,
                                              **(logo_options or {}))

    # galleries: worst false positives (reals scored most fake) and false negatives (fakes scored most real)
    fp = [i for i in np.argsort(-s) if y[i] == 0 and pred_fake[i] == 1][:gallery]
    fn = [i for i in np.argsort(s) if y[i] == 1 and pred_fake[i] == 0][:gallery]
    gal_pred = predict_batched(det, [images[i] for i in fp + fn], batch=batch, explain=True) if fp + fn else []
    galleries = {"false_positives": [], "false_negatives": []}
    root = Path(data) if Path(data).is_dir() else Path(data).parent
    for j, i in enumerate(fp + fn):
        r = recs[i]
        gt = read_mask(root / r.extra["mask"]) if r.extra.get("mask") else None
        galleries["false_positives" if j < len(fp) else "false_negatives"].append(
            {"path": str(r.path), "modality": r.modality, "label": r.label, "kind": kinds[i], "generator": gens[i],
             "score": float(s[i]), "image": images[i].array, "heatmap": gal_pred[j].heatmap,
             "pred_mask": gal_pred[j].mask, "gt_mask": gt})
    res["galleries"] = {k: [{kk: vv for kk, vv in g.items() if kk in ("path", "modality", "label", "kind",
                                                                      "generator", "score")} for g in v]
                        for k, v in galleries.items()}
    res["per_image"] = [{"path": str(r.path), "modality": r.modality, "label": r.label, "kind": k, "generator": g,
                         "score": float(sc), "verdict": p.verdict}
                        for r, k, g, sc, p in zip(recs, kinds, gens, s, preds)]
    res = _nan_to_none(res)
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    from .report import render_report

    render_report(res, out / "report.html", galleries=galleries)
    return res
