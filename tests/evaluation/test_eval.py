"""evaluate(): metrics, breakdowns, localization, robustness, attacks, LOGO and the HTML report, with a small
real detector (logistic regression on pixel statistics) trained here on the built train split."""

import json

import numpy as np
import pytest
import torch

from medfake.data import read_manifest
from medfake.detection.base import VERDICTS, Detector, Prediction
from medfake.evaluation import evaluate, leave_one_generator_out
from medfake.evaluation.adversarial import evaluate_adversarial, fgsm, pgd
from medfake.evaluation.robustness import DEGRADATIONS, degrade
from medfake.evaluation.run import load_images
from medfake.io import Image
from medfake.io.errors import MedfakeError

from .conftest import PixelStatsDetector


def _train(records, out_dir=None, seed=0):
    return PixelStatsDetector().fit(load_images(records), [r.extra["kind"] != "real" for r in records])


@pytest.fixture(scope="module")
def evaluated(built, tmp_path_factory):
    recs = read_manifest(built)
    det = _train([r for r in recs if r.split == "train"])
    out = tmp_path_factory.mktemp("eval")
    import nibabel as nib

    from medfake.evaluation.external import more_files

    more = tmp_path_factory.mktemp("more")  # one file of the second set, where external_fetch.py would put it
    path = next(f for f, *_ in more_files(more) if f.name.endswith(".nii.gz"))
    path.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(1).random((40, 40, 10)).astype(np.float32), np.eye(4)), path)
    res = evaluate(built / "manifest.csv", out, split=None, detector=det, logo=True, external_more=more,
                   logo_options={"train_fn": _train, "generators": ["ddpm", "dcgan", "ddim"]}, progress=False)
    return res, out


def test_results_structure(evaluated, built):
    res, out = evaluated
    saved = json.loads((out / "results.json").read_text())
    assert saved["n"] == res["n"] == len(read_manifest(built))  # split=None: every row
    o = res["overall"]
    for k in ("accuracy", "precision", "recall", "f1", "f1_macro", "roc_auc", "average_precision", "eer",
              "tpr_at_1pct_fpr", "confusion"):
        assert k in o
    assert o["roc_auc"] > 0.7  # noise-like fakes from 2-step generators vs smooth reals
    assert set(res["by_modality"]) == {"chest_xray", "lung_ct"}
    assert {"ddpm", "ddim", "dcgan"} <= set(res["by_generator"]) and "real" not in res["by_generator"]
    assert "chest_xray/NORMAL" in res["by_label"]
    c12 = res["confusion_12"]
    assert len(c12["classes"]) == 12 and np.array(c12["matrix"]).sum() + c12["unknown_predictions"] == res["n"]
    assert set(res["robustness"]) == set(DEGRADATIONS)
    for cond in res["robustness"].values():  # which fakes a degradation hides: each generator's AUC against the reals
        assert set(cond["auc_by_generator"]) == set(res["by_generator"])
    clean = res["robustness"]["clean"]["auc_by_generator"]
    assert all(abs(clean[g] - res["by_generator"][g]["roc_auc"]) < 1e-9 for g in clean)
    assert {"clean", "fgsm@1", "pgd@4"} <= set(res["adversarial"]["conditions"])
    ext = res["external_reals"]  # real images shipped inside pydicom(-data), matplotlib, nibabel
    assert ext["n"] >= 100 and ext["files"] >= 15 and sum(ext["verdicts"].values()) == ext["n"]
    assert isinstance(ext["skipped"], list)
    assert 0 <= ext["called_fake"] <= ext["not_real"] <= 1 and len(ext["flagged"]) == ext["n"] - ext["verdicts"].get("real", 0)
    more = res["external_more"]  # the fetched second set: here one generated volume, its middle 6 of 10 slices
    assert more["n"] == 6 and more["files"] == 1 and len(more["files_verdicts"]) == 1
    assert more["files_verdicts"][0]["images"] == 6 and more["files_verdicts"][0]["verdict"] in VERDICTS
    assert "A second set" in (out / "report.html").read_text()


def test_localization_on_manipulated(evaluated):
    res, _ = evaluated
    loc = res.get("localization")
    if loc is None:
        pytest.skip("no manipulated images (medfake.manipulation not available)")
    assert loc["n"] == sum(1 for r in res["per_image"] if r["kind"] == "manipulated")
    assert 0 <= loc["pixel_f1"] <= 1 and 0 <= loc["iou"] <= loc["pixel_f1"] + 1e-9  # IoU ≤ F1 always
    assert set(loc["by_method"]) <= {"copy-move", "splice", "retouch", "repaint-ddim"}


def test_logo_matrix(evaluated):
    logo = evaluated[0]["logo"]
    gens = logo["rows"]
    assert gens == ["ddpm", "dcgan", "ddim"]  # the held-out ones asked for; columns: every generator/method
    assert {"ddpm", "ddim", "dcgan"} <= set(logo["columns"]) and logo["columns"][-1] == "in_distribution"
    m = logo["matrix"]
    assert len(m) == len(gens) and all(len(r) == len(logo["columns"]) for r in m)
    assert all(v is None or 0 <= v <= 1 for r in m for v in r)
    assert all(logo["held_out_auc"][g] is not None for g in gens)  # every generator has test fakes
    side = logo["held_out_auc_by_score"]  # the held-out generator under each head's own score
    assert set(side) == set(gens) and all(0 <= side[g]["p_synthetic"] <= 1 for g in gens)


def test_score_aucs_beside_the_verdict_score(evaluated):
    res, out = evaluated
    sa = res["score_aucs"]
    assert {"fake", "p_synthetic", "p_manipulated"} <= set(sa)
    for g, m in res["by_generator"].items():  # the fused score's AUC is the by-generator AUC
        assert sa["fake"][g] == pytest.approx(m["roc_auc"])
    assert 'id="score-aucs"' in (out / "report.html").read_text()


def test_report_renders(evaluated):
    _, out = evaluated
    html = (out / "report.html").read_text()
    for sec in ('id="summary"', 'id="by-modality"', 'id="by-generator"', 'id="localization"', 'id="logo"',
                'id="robustness"', 'id="adversarial"', 'id="external"', 'id="galleries"', "False positives", "False negatives"):
        assert sec in html
    assert html.count("data:image/png;base64,") >= 5  # ROC, confusion(s), LOGO, robustness, gallery
    # what each degradation hides: a row per generator, a column per condition
    table = html.split('id="robustness-by-generator"')[1].split("</table>")[0]
    gens = evaluated[0]["by_generator"]
    assert table.count("<tr>") == 1 + len(gens) and all(f"<td>{g}</td>" in table for g in gens)
    assert table.count("<th>jpeg75</th>") == 1
    assert "<script" not in html and "http://" not in html and "https://" not in html  # self-contained


def test_logo_needs_two_generators(built):
    recs = [r for r in read_manifest(built) if r.extra["kind"] == "real" or r.extra["generator"] == "ddpm"]
    with pytest.raises(MedfakeError, match="at least 2"):
        leave_one_generator_out(recs, work_dir=built / "x", train_fn=_train)


def test_manifest_without_kind_or_split(tmp_path, real_folder, built):
    from medfake.data import write_manifest

    with pytest.raises(MedfakeError, match="kind"):
        evaluate(real_folder, tmp_path / "e", detector=PixelStatsDetector())
    # no split column: the whole manifest is evaluated
    rows = [{"path": str(r.path), "modality": r.modality, "label": r.label, "kind": r.extra["kind"],
             "generator": r.extra["generator"]} for r in read_manifest(built)][::6]
    write_manifest(tmp_path / "m.csv", rows)
    det = _train([r for r in read_manifest(built) if r.split == "train"])
    res = evaluate(tmp_path / "m.csv", tmp_path / "e", detector=det, robustness=False, adversarial=False,
                   progress=False)
    assert res["n"] == len(rows) and res["split"] is None


class MeanDetector(Detector):
    """logit = 200·(mean − 0.5): a linear detector whose attacked decisions can be worked out by hand."""

    name = "mean"

    def __init__(self):
        self.card = {}

    def score_tensor(self, x):
        return 200.0 * (x.mean((1, 2, 3)) - 0.5)

    def predict(self, images, *, explain=False):
        p = torch.sigmoid(self.score_tensor(torch.stack([torch.from_numpy(i.array) for i in images])[:, None]))
        return [Prediction("chest_xray", float(v), 0.0, "synthetic" if v >= 0.5 else "real") for v in p]


def test_attacks_by_hand():
    det = MeanDetector()
    # fakes at mean 0.5 + 1.5/255, reals at 0.5 − 3/255: an L∞ step of ε moves the mean by exactly ε
    fake = np.full((2, 128, 128), 0.5 + 1.5 / 255, np.float32)
    real = np.full((2, 128, 128), 0.5 - 3 / 255, np.float32)
    x = torch.from_numpy(np.concatenate([fake, real]))[:, None]
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    adv = fgsm(det, x, y, 2 / 255)
    assert torch.allclose(adv[:2], x[:2] - 2 / 255) and torch.allclose(adv[2:], x[2:] + 2 / 255)
    p = pgd(det, x, y, 4 / 255, steps=10)
    assert (p - x).abs().max() <= 4 / 255 + 1e-6
    res = evaluate_adversarial(det, np.concatenate([fake, real]), [1, 1, 0, 0])
    c = res["conditions"]
    assert c["clean"]["acc_fake"] == 1.0 and c["clean"]["acc_real"] == 1.0
    assert c["fgsm@1"]["acc_fake"] == 1.0  # 1.5/255 − 1/255 still above 0.5
    assert c["fgsm@2"]["acc_fake"] == 0.0 and c["fgsm@2"]["drop_fake"] == 1.0
    assert c["fgsm@2"]["acc_real"] == 1.0 and c["fgsm@4"]["acc_real"] == 0.0  # reals need > 3/255
    assert c["pgd@4"]["acc_fake"] == 0.0 and c["pgd@4"]["acc_real"] == 0.0


def test_degradations_change_pixels_identically():
    rng = np.random.default_rng(0)
    a = rng.random((128, 128)).astype(np.float32)
    img = Image(a)
    for name in DEGRADATIONS:
        d = degrade(img, name, seed=3)
        assert d.shape == (128, 128) and d.array.min() >= 0 and d.array.max() <= 1
        assert np.array_equal(d.array, degrade(img, name, seed=3).array)  # deterministic
        if name not in ("clean", "requant16"):
            assert not np.allclose(d.array, a, atol=1e-4), name
    assert np.abs(degrade(img, "requant16").array - a).max() <= 0.5 / 65535 + 1e-6
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(img, "sharpen")


def test_logo_folds_run_with_the_copy_move_cue_as_detect_does(built, tmp_path):
    """detection_trainer calibrates each fold's copy-move cue and scores the fold with it on (as `medfake detect`
    runs a card); the protocol also reports the fold's fused score without the cue, and can leave the cue out."""
    from medfake.evaluation.protocols import detection_trainer

    kw = dict(steps=3, batch_size=8, device="cpu", bank_size=10,
              model_config={"stem": 4, "widths": [8, 16, 16], "seg_channels": 4})
    res = leave_one_generator_out(built / "manifest.csv", work_dir=tmp_path / "on", generators=["copy-move"],
                                  train_fn=detection_trainer("dual-srm", **kw), progress=False)
    side = res["held_out_auc_by_score"]["copy-move"]
    assert {"copy_move", "fake_without_copy_move"} <= set(side)
    assert all(0 <= v <= 1 for v in side.values())
    card = json.loads((tmp_path / "on" / "without_copy-move" / "logo.json").read_text())
    assert card["copy_move"]["thresholds"]["manipulated"] is not None
    res = leave_one_generator_out(built / "manifest.csv", work_dir=tmp_path / "off", generators=["copy-move"],
                                  train_fn=detection_trainer("dual-srm", copy_move_cue=False, **kw), progress=False)
    assert not {"copy_move", "fake_without_copy_move"} & set(res["held_out_auc_by_score"]["copy-move"])
