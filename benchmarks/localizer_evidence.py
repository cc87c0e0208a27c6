"""The manipulation localizer (`medfake.detection.localizer`) on the benchmark's **test** split: pixel-F1 of its
mask per method (the map alone, no copy-move cue), and how well the map's top-64 logits would score images:
AUC of test reals against each method and generator, and the share of each method caught at the val reals' 99th
percentile (1 % FPR, chosen on val, not test), and of the outside reals above it.

    python benchmarks/localizer_evidence.py --data data_cache/bench/manifest.csv [--models-dir models]
        [--name localizer] [--external-more data_cache/external/files] [--degrade jpeg75]

`--degrade NAME` first applies one of `medfake eval`'s robustness degradations (JPEG 75, resize ×0.5, ...) to every
image, val and outside reals included: do the masks and the evidence survive recompression and resampling?

The verdict does not use this score (docs/detection.md, "Manipulation localizer"); this measures whether it could.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append  # noqa: E402

from medfake.evaluation.robustness import DEGRADATIONS  # noqa: E402


def evidence(loc, images: np.ndarray, batch: int = 64, masks: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """(masks (N, 128, 128) at the card's threshold, over its test-time views as `Localizer.masks` makes them (None
    with `masks=False`); top-64 mean logit of the plain view (N,), as the evidence cue reads it) of canonical
    images."""
    from medfake.detection.localizer import TOP_K, view_maps

    out, top = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.as_tensor(images[i:i + batch])[:, None].float()
            if masks:  # one pass: the plain view's logits and the views' average map
                z, m = view_maps(loc.module, x, loc.tta_views)
                out.append((m[loc.tta_views][:, 0] >= loc.threshold).numpy())
            else:
                z = loc.module(x).float()
            top.append(z.flatten(1).topk(TOP_K, 1).values.mean(1).numpy())
    return (np.concatenate(out) if masks else None), np.concatenate(top)


def degraded(images: np.ndarray, name: str) -> np.ndarray:
    """Canonical images (N, H, W) in [0, 1] after `medfake eval`'s robustness degradation `name` (the same seed per
    image index, whatever its class), clipped to [0, 1]."""
    f = DEGRADATIONS[name]
    return np.stack([np.clip(f(im, np.random.default_rng(i)), 0.0, 1.0) for i, im in enumerate(images)]
                    ).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="benchmark manifest (test and val splits)")
    ap.add_argument("--models-dir", default="models")
    ap.add_argument("--name", default="localizer")
    ap.add_argument("--external-more", default="data_cache/external/files",
                    help="the fetched second outside set (benchmarks/external_fetch.py); skipped when missing")
    ap.add_argument("--degrade", default="clean", choices=list(DEGRADATIONS),
                    help="a robustness degradation (medfake eval's) applied to every image first")
    ap.add_argument("--views", type=int, default=None, choices=(1, 2, 8),
                    help="test-time views of the masks (default: the card's; others need the card's threshold for them)")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    from sklearn.metrics import roc_auc_score

    from medfake.data.canonical import to_canonical
    from medfake.detection.localizer import load_localizer
    from medfake.detection.train import cache_records, load_records
    from medfake.evaluation.external import external_reals, external_reals_more
    from medfake.evaluation.metrics import pixel_scores

    loc = load_localizer(a.name, a.models_dir, views=a.views)
    recs = load_records(a.data)
    val = cache_records([r for r in recs if r.split == "val" and r.get("kind") == "real"], "load val reals")
    test = cache_records([r for r in recs if r.split == "test"], "load test")
    _, top_val = evidence(loc, degraded(val.images, a.degrade), masks=False)
    cut = float(np.quantile(top_val, 0.99))
    masks, top = evidence(loc, degraded(test.images, a.degrade))
    real = test.kind == 0
    rows = []
    for g in sorted(set(test.group[~real])):
        sel = test.group == g
        f1 = [pixel_scores(test.masks[i] > 0.5, masks[i])["f1"] for i in np.flatnonzero(sel & test.has_mask)]
        y = np.r_[np.zeros(real.sum()), np.ones(sel.sum())]
        auc = roc_auc_score(y, np.r_[top[real], top[sel]])
        rows.append(f"| {g} | {int(sel.sum())} | {np.mean(f1):.3f} |" if f1 else f"| {g} | {int(sel.sum())} | – |")
        rows[-1] += f" {auc:.3f} | {float((top[sel] > cut).mean()):.1%} |"
    man = (test.kind == 2) & test.has_mask
    all_f1 = np.mean([pixel_scores(test.masks[i] > 0.5, masks[i])["f1"] for i in np.flatnonzero(man)])
    outside = []
    for label, items in (("first outside set", external_reals(lambda m: None)),
                         ("second outside set", external_reals_more(a.external_more, lambda m: None)
                          if Path(a.external_more).is_dir() else [])):
        if items:
            _, t = evidence(loc, degraded(np.stack([to_canonical(im) for _, _, im in items]), a.degrade), masks=False)
            outside.append(f"{label}: {int((t > cut).sum())} of {len(t)} ({float((t > cut).mean()):.1%}) above it")
    body = (f"Localizer `{loc.name}` {loc.version} (mask threshold {loc.threshold}, {loc.tta_views} test-time "
            f"view{'s' if loc.tta_views > 1 else ''}); test split of `{a.data}`"
            + ("" if a.degrade == "clean" else f", every image (val, test, outside) degraded by `{a.degrade}`") + ": "
            f"{int(real.sum())} reals, {int(man.sum())} manipulated with masks. Pixel-F1 of its mask alone, all "
            f"manipulated: **{all_f1:.3f}**. Top-64 evidence: the val reals' 99th percentile is {cut:.3f}; test "
            f"reals above it {float((top[real] > cut).mean()):.1%}; " + "; ".join(outside) + ".\n\n"
            "| generator / method | test images | pixel-F1 (mask alone) | AUC of top-64 vs test reals | "
            "above the val-real 99th percentile |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    if a.no_record:
        print(body)
    else:
        append("Manipulation localizer: test pixel-F1 and top-64 evidence (benchmarks/localizer_evidence.py"
               + ("" if a.degrade == "clean" else f", {a.degrade}") + ")", body)


if __name__ == "__main__":
    main()
