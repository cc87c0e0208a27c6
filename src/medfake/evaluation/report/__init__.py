"""Self-contained HTML report: matplotlib figures embedded as base64 PNG, rendered with Jinja2."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

TEMPLATE = Path(__file__).with_name("template.html.j2")


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def roc_figure(curves: dict) -> str | None:
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, c in curves.items():
        ax.plot(c["fpr"], c["tpr"], lw=2.5 if name == "all" else 1.2, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false-positive rate (real called fake)")
    ax.set_ylabel("true-positive rate")
    ax.set_title("ROC")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def matrix_figure(matrix, rows, cols, title: str, fmt: str = "d", cmap: str = "Blues", vmin=None, vmax=None) -> str:
    plt = _plt()
    m = np.array([[np.nan if v is None else v for v in r] for r in matrix], dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(cols), 1.0 + 0.45 * len(rows)))
    ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    top = np.nanmax(m) if np.isfinite(m).any() else 1
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if np.isfinite(m[i, j]):
                ax.text(j, i, format(m[i, j] if fmt != "d" else int(m[i, j]), fmt), ha="center", va="center",
                        fontsize=6, color="white" if m[i, j] > 0.6 * top else "black")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def thumb(item: dict) -> str:
    """Image | heatmap overlay | masks (ground truth in green, prediction in red)."""
    plt = _plt()
    panels = 3
    fig, axes = plt.subplots(1, panels, figsize=(panels * 1.6, 1.8))
    a = item["image"]
    axes[0].imshow(a, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"{item['kind']} {item['score']:.2f}", fontsize=7)
    axes[1].imshow(a, cmap="gray", vmin=0, vmax=1)
    if item.get("heatmap") is not None:
        axes[1].imshow(item["heatmap"], cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes[1].set_title("heatmap" if item.get("heatmap") is not None else "no heatmap", fontsize=7)
    rgb = np.repeat(a[..., None], 3, axis=2) * 0.6
    if item.get("gt_mask") is not None:
        rgb[..., 1] = np.maximum(rgb[..., 1], item["gt_mask"] * 0.9)
    if item.get("pred_mask") is not None:
        rgb[..., 0] = np.maximum(rgb[..., 0], np.asarray(item["pred_mask"], dtype=float) * 0.9)
    axes[2].imshow(np.clip(rgb, 0, 1))
    axes[2].set_title("mask gt=green pred=red", fontsize=6)
    for ax in axes:
        ax.axis("off")
    return _png(fig)


def _fmt(v, nd=3):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def render_report(results: dict, path: str | Path, *, galleries: dict | None = None) -> Path:
    """Write the HTML report for an `evaluate` results dict (galleries carry the image arrays)."""
    import jinja2

    figs: dict = {"roc": roc_figure(results.get("roc_curves") or {})}
    cm = results["overall"]["confusion"]
    figs["confusion"] = matrix_figure(cm, ["real", "fake"], ["pred real", "pred fake"], "confusion (binary)")
    c12 = results.get("confusion_12")
    if c12:
        keep = [i for i, c in enumerate(c12["classes"])
                if any(c12["matrix"][i]) or any(r[i] for r in c12["matrix"])]
        if keep:
            sub = [[c12["matrix"][i][j] for j in keep] for i in keep]
            names = [c12["classes"][i] for i in keep]
            figs["confusion_12"] = matrix_figure(sub, names, names, "modality × real/fake")
    logo = results.get("logo")
    if logo and logo.get("matrix"):
        figs["logo"] = matrix_figure(logo["matrix"], logo["rows"], logo["columns"], "LOGO AUC (rows: held out)",
                                     fmt=".2f", cmap="RdYlGn", vmin=0.5, vmax=1.0)
    rob = results.get("robustness")
    if rob:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(6, 2.6))
        names = list(rob)
        ax.bar(np.arange(len(names)) - 0.2, [rob[n]["roc_auc"] or 0 for n in names], 0.4, label="AUC")
        ax.bar(np.arange(len(names)) + 0.2, [rob[n]["f1"] or 0 for n in names], 0.4, label="F1")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        ax.set_title("robustness", fontsize=9)
        figs["robustness"] = _png(fig)
    gal = {k: [dict(g, img=thumb(g)) for g in v] for k, v in (galleries or {}).items()}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    env.filters["f"] = _fmt
    html = env.get_template(TEMPLATE.name).render(r=results, figs=figs, galleries=gal,
                                                  metric_keys=["n", "n_real", "n_fake", "accuracy", "precision",
                                                               "recall", "f1", "f1_macro", "roc_auc",
                                                               "average_precision", "eer", "tpr_at_1pct_fpr"])
    path = Path(path)
    path.write_text(html)
    return path
