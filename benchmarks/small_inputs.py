"""Small inputs: images whose short side is under the detector's 128 px are upsampled on the way in, and the
interpolation looks synthetic to it. The card's small-input floors (`thresholds.by_input_side`, calibrated on
*val* reals shrunk and upsampled the same way) raise the thresholds for such inputs. This measures, on **test**
images of the benchmark shrunk to each side (Lanczos, as a smaller scan or a thumbnail), the share of reals not
called real and of fakes caught, with the card's floors and without them (the 128 px thresholds).

    python benchmarks/small_inputs.py [--data data_cache/bench/manifest.csv] [--n 300] [--detector default]
        [--noise SIGMA]

`--data ../shared/datasets/medimg128/manifest.csv` (no `kind` column) measures its test reals only.

`--noise SIGMA` adds Gaussian noise of that standard deviation (on [0, 1]) to every shrunk image at its small size,
before the detector upsamples it: a natively small scan (a 64 px MR, an EPI or nuclear-medicine frame) carries its
own acquisition noise at that size, where a Lanczos-shrunk 128 px image is smoother than any scan. Pydicom's
`emri_small.dcm` frames measure 0.029–0.040 (robust sigma of the 4-neighbour residual), medimg128's val reals
shrunk to 64 px 0.012–0.025.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append  # noqa: E402

SIDES = (128, 96, 64, 48, 40, (41, 33))  # (w, h): the 41×33 MR slice of the external reals has this shape


def _shrink(a: np.ndarray, side) -> np.ndarray:
    from PIL import Image as P

    w, h = (side, side) if isinstance(side, int) else side
    if (h, w) == a.shape:
        return a
    return np.clip(np.asarray(P.fromarray(a, mode="F").resize((w, h), P.Resampling.LANCZOS), np.float32), 0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data_cache/bench/manifest.csv")
    ap.add_argument("--n", type=int, default=300, help="test images per kind (seeded sample)")
    ap.add_argument("--detector", default="default")
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--noise", type=float, default=0.0, help="Gaussian noise std added at the small size (seeded)")
    ap.add_argument("--copy-move", action=argparse.BooleanOptionalAction, default=None,
                    help="the copy-move cue on / off (default: as medfake detect, on when the card has it)")
    args = ap.parse_args()

    from PIL import Image as P

    from medfake.detection.detector import ShippedDetector, load_detector, use_copy_move
    from medfake.detection.ensemble import VetoEnsemble
    from medfake.detection.evidence import EvidenceCue
    from medfake.io.image import Image

    manifest = Path(args.data)
    if not manifest.is_file():
        sys.exit(f"no benchmark manifest at {manifest}: build it first (benchmarks/pipeline_cpu.sh, step 1)")
    rows = list(csv.DictReader(manifest.open()))
    det = use_copy_move(load_detector(args.detector, args.models_dir), args.copy_move)  # as medfake detect runs it
    if not (det.thresholds or {}).get("by_input_side"):
        sys.exit(f"detector {det.name} {det.version} has no small-input floors (recalibrate it: medfake train "
                 f"detector --steps 0 --init-from CARD)")

    def without_floors(d):  # the same detector at its 128 px thresholds (an ensemble: its primary's, same veto)
        ev = getattr(d, "evidence", None)  # the evidence cue at its 128 px cuts
        ev = None if ev is None else EvidenceCue(ev.localizer, {**ev.section, "by_input_side": {}})
        if isinstance(d, VetoEnsemble):
            return VetoEnsemble(without_floors(d.primary).with_evidence(None), d.seconds, d.card, ev)
        thr = {k: v for k, v in d.card["thresholds"].items() if k != "by_input_side"}
        cue = None if d.copy_move is None else dataclasses.replace(
            d.copy_move, thresholds={k: v for k, v in d.copy_move.thresholds.items() if k != "by_input_side"})
        return ShippedDetector(d.module, {**d.card, "thresholds": thr}, d.bank, d.anomaly, copy_move=cue, evidence=ev)

    plain = without_floors(det)
    rng = np.random.default_rng(0)
    noise_rng = np.random.default_rng(1)

    def small(a: np.ndarray, side) -> np.ndarray:
        a = _shrink(a, side)
        if args.noise > 0:
            a = np.clip(a + noise_rng.normal(0.0, args.noise, a.shape).astype(np.float32), 0.0, 1.0)
        return a

    table = ["| input side | kind | n | not real, 128 px thresholds | not real, small-input floors | "
             "called fake, floors |", "|---|---|---|---|---|---|"]
    for side in SIDES:
        for kind in ("real", "synthetic", "manipulated"):
            # a manifest without `kind` (medimg128's own) holds reals only
            sel = [r for r in rows if r["split"] == "test" and r.get("kind", "real") == kind]
            if not sel:
                continue
            sel = [sel[i] for i in sorted(rng.choice(len(sel), min(args.n, len(sel)), replace=False))]
            ims = [Image(small(np.asarray(P.open(manifest.parent / r["path"]).convert("L"), np.float32) / 255,
                                side)) for r in sel]
            with_floors = det.predict(ims)
            without = plain.predict(ims)
            nr = lambda preds: np.mean([p.verdict != "real" for p in preds])  # noqa: E731
            fake = np.mean([p.verdict in ("synthetic", "manipulated") for p in with_floors])
            label = f"{side}×{side}" if isinstance(side, int) else f"{side[0]}×{side[1]}"
            table.append(f"| {label} | {kind} | {len(ims)} | {nr(without):.1%} | **{nr(with_floors):.1%}** | "
                         f"{fake:.1%} |")
            print(table[-1], flush=True)
    body = (f"Detector `{args.detector}` (version {det.version}); test images of `{args.data}`, {args.n} per kind "
            "(seeded), shrunk with Lanczos" + (f", Gaussian noise σ {args.noise:g} added at the small size (the 128 px "
                                    "row too)" if args.noise > 0 else "")
            + " and read like any input (upsampled to 128 px by `to_canonical`). For reals "
            "'not real' is a false alarm; for fakes it is a catch.\n\n" + "\n".join(table))
    if args.no_append:
        print(body)
    else:
        append("Small inputs: thresholds for upsampled images" + (f", noise σ {args.noise:g} at the small size"
                                                                  if args.noise > 0 else ""), body)


if __name__ == "__main__":
    main()
