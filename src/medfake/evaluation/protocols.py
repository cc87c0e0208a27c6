"""Cross-generator protocol: leave-one-generator-out (LOGO).

For each generator/method g: train a detector on the train split of every other generator/method plus the
real train images, then score the test split of every generator/method (each against the real test
images). The matrix has one row per held-out g and one column per test generator; the diagonal is the
unseen-generator AUC, and the `in_distribution` column is the mean AUC over the generators it was trained on.
`held_out_auc_by_score` gives the held-out generator's AUC under each of the fold detector's other scores (each
head, the retrieval kNN scores, the real-only anomaly score), to see which of them carries over to an unseen
generator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data.manifest import Record, read_manifest
from ..io.errors import MedfakeError

TrainFn = Callable[[list, Path, int], object]  # (train records, out dir, seed) -> Detector


DEFAULT_CONFIG = "resnet18-12"


def detection_trainer(config: str = DEFAULT_CONFIG, steps: int = 50, batch_size: int = 32, device: str = "auto",
                      model_config: dict | None = None, **kw) -> TrainFn:
    """A TrainFn over medfake.detection.train_detector(config, records, out_dir, ...) — a registered detector
    architecture trained for `steps` (small on the CPU) — loaded back with load_detector, with the copy-move cue
    calibrated and on, as `medfake detect` runs a card (`copy_move_cue=False` trains and scores a fold without it).
    The cue has no weights, so a fold cannot learn the held-out method through it. `model_config`: the
    architecture's config fields (default: its registered defaults)."""
    kw.setdefault("copy_move_cue", True)

    def train(records: list, out_dir: Path, seed: int):
        from ..detection import load_detector, train_detector
        from ..detection.detector import use_copy_move
        from ..settings import get_settings, torch_device

        card = train_detector(config, records, out_dir, name="logo", steps=steps, batch_size=batch_size, seed=seed,
                              device=device, **({"config": model_config} if model_config else {}), **kw)
        dev = str(torch_device(device if device != "auto" else get_settings().device))
        return use_copy_move(load_detector(card.get("name", "logo"), models_dir=out_dir, device=dev), None)

    return train


def leave_one_generator_out(
    data: str | Path | Sequence[Record],
    *,
    work_dir: str | Path,
    generators: Sequence[str] | None = None,
    train_fn: TrainFn | None = None,
    detector_config: str = DEFAULT_CONFIG,
    steps: int = 50,
    models_dir=None,  # accepted for symmetry with evaluate(); training writes into work_dir
    seed: int = 0,
    batch: int = 64,
    progress: bool = True,
) -> dict:
    """The LOGO AUC matrix. `data` is a built manifest (or its records) with kind, generator and split."""
    from rich.progress import Progress
    from sklearn.metrics import roc_auc_score

    from ..detection.detector import use_copy_move
    from .run import fake_score, load_images, predict_batched, score_table

    if isinstance(data, (str, Path)):
        root = Path(data) if Path(data).is_dir() else Path(data).parent
        recs = list(read_manifest(data))
        for r in recs:  # mask paths relative to the manifest → absolute, as the trainer reads them
            m = (r.extra.get("mask") or "").strip()
            if m and not Path(m).is_absolute():
                r.extra["mask"] = str(root / m)
    else:
        recs = list(data)
    if any("kind" not in r.extra or not r.split for r in recs):
        raise MedfakeError("the LOGO protocol needs a built manifest with kind, generator and split columns")
    gen_of = [r.extra.get("generator") or r.extra["kind"] for r in recs]
    fakes = sorted({g for g, r in zip(gen_of, recs) if r.extra["kind"] != "real"})
    gens = list(generators) if generators else fakes
    unknown = sorted(set(gens) - set(fakes))
    if unknown:
        raise MedfakeError(f"generator(s) {unknown} not in the manifest; it has {fakes}")
    if len(fakes) < 2:
        raise MedfakeError(f"leave-one-generator-out needs at least 2 generators/methods; the manifest has {fakes}")
    train_fn = train_fn or detection_trainer(detector_config, steps)
    test_idx = [i for i, r in enumerate(recs) if r.split == "test"]
    test_recs = [recs[i] for i in test_idx]
    test_gen = np.array([gen_of[i] if recs[i].extra["kind"] != "real" else "real" for i in test_idx], dtype=object)
    y = (test_gen != "real").astype(int)
    if not (y == 0).any():
        raise MedfakeError("the LOGO protocol needs real images in the test split")
    images = load_images(test_recs)
    work_dir = Path(work_dir)
    matrix, rows, side = [], [], {}
    with Progress(disable=not progress) as prog:
        task = prog.add_task("LOGO", total=len(gens))
        for g in gens:
            train = [r for r, gg in zip(recs, gen_of) if r.split == "train" and (r.extra["kind"] == "real" or gg != g)]
            det = train_fn(train, work_dir / f"without_{g}", seed)
            table = score_table(predict_batched(det, images, batch=batch))
            if getattr(det, "copy_move", None) is not None:  # the same fold without the cue, for comparison
                plain = predict_batched(use_copy_move(det, False), images, batch=batch)
                table["fake_without_copy_move"] = np.array([fake_score(p) for p in plain], dtype=float)
            s = table["fake"]
            held = (test_gen == g) | (test_gen == "real")
            side[g] = {k: float(roc_auc_score(y[held], v[held])) for k, v in table.items()
                       if k != "fake" and (test_gen == g).any()}
            row = []
            for col in fakes:
                sel = (test_gen == col) | (test_gen == "real")
                ok = (test_gen == col).any()
                row.append(float(roc_auc_score(y[sel], s[sel])) if ok else None)
            seen = [v for c, v in zip(fakes, row) if c != g and v is not None]
            row.append(float(np.mean(seen)) if seen else None)
            matrix.append(row)
            rows.append(g)
            prog.update(task, advance=1, description=f"LOGO (held out {g})")
    return {"rows": rows, "columns": fakes + ["in_distribution"], "matrix": matrix,
            "held_out_auc": {g: matrix[i][fakes.index(g)] for i, g in enumerate(rows)},
            "held_out_auc_by_score": side,
            "n_test": int(len(test_idx)), "detector_config": detector_config, "steps": steps}
