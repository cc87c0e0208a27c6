"""`medfake demo`: the README's main job, from shipped weights only (no training, no ../shared).

1. synthesizes a few images of every modality with the DDPM (DDIM sampler) and the DCGAN, as PNG and DICOM, and
   re-synthesises a real DICOM (pydicom's MR_small.dcm) through the KL autoencoder (the latent-diffusion decoder);
2. manipulates a real DICOM that ships with pydicom (CT_small.dcm): a classical copy-move and a RePaint (DDIM)
   lesion injection, written as DICOM with provenance + mask + JSON sidecar;
3. runs the default detector on everything and on the originals and prints the verdict table (and CSV).

A stage that fails is reported and the demo goes on with the next one; it then exits with status 1 naming the
failed stages, so a broken install never looks like a finished demo.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ._app import app


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o"),
    n: int = typer.Option(2, "-n", help="images per modality and generator"),
    steps: int = typer.Option(25, help="DDIM steps for the DDPM"),
    seed: int = typer.Option(0),
):
    """Synthesize, manipulate and detect from the shipped weights; print where everything is."""
    from rich.console import Console
    from rich.table import Table

    from ..data.modalities import MODALITY_NAMES
    from ..synthesis.generate import load_generator
    from ..synthesis.io import save_images

    con = Console()
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    originals: list[Path] = []  # the real files the fakes came from: detected too
    edits: list[tuple[Path, Path]] = []  # (manipulated file, the mask of its edit)
    failed: list[str] = []
    con.rule("1. synthesis (shipped DDPM with DDIM, DCGAN; VAE reconstruction of a real MR)")
    for model in ("ddpm", "dcgan"):
        gen = load_generator(model)
        for m in MODALITY_NAMES:
            st = gen.sampling_settings(m, "ddim", steps)  # DDPM: DDIM at the demo's steps, the card's eta/guidance
            imgs = gen.sample(m, None, n, **st, seed=seed)
            prov = gen.provenance(**st)
            written += save_images(imgs, out / "synthetic" / "png", prov, fmt="png", prefix=f"{m}_{model}")
            written += save_images(imgs[:1], out / "synthetic" / "dicom", prov, fmt="dicom", prefix=f"{m}_{model}")
        con.print(f"  {model}: {len(MODALITY_NAMES) * n} PNG + {len(MODALITY_NAMES)} DICOM  ({time.time() - t0:.0f} s)")
    try:
        from pydicom.data import get_testdata_file

        from ..io import read_image

        gen = load_generator("vae")
        mr_path = Path(get_testdata_file("MR_small.dcm", download=False))
        mr = read_image(mr_path)
        mr.meta.modality = "brain_mri"
        rec = gen.reconstruct([mr])
        prov = gen.provenance("reconstruction")
        written += save_images(rec, out / "synthetic" / "png", prov, fmt="png", prefix="MR_small_vae")
        written += save_images(rec, out / "synthetic" / "dicom", prov, fmt="dicom", prefix="MR_small_vae")
        originals.append(mr_path)
        con.print("  vae: pydicom's MR_small.dcm reconstructed through the KL autoencoder, PNG + DICOM")
    except Exception as e:  # noqa: BLE001 - the demo reports and goes on
        con.print(f"  [red]vae reconstruction failed: {e}[/]")
        failed.append("vae reconstruction")

    con.rule("2. manipulation of a real DICOM (pydicom's CT_small.dcm)")
    try:
        from pydicom.data import get_testdata_file

        from ..io import read_image
        from ..manipulation import default_feather, make_mask, manipulate, save_result

        src = Path(get_testdata_file("CT_small.dcm", download=False))
        originals.append(src)
        img = read_image(src)
        img.meta.modality = "lung_ct"
        # CT_small.dcm is a 128 px crop around the spine; its lung fields are the upper corners. The 28 px square
        # lies in the left one, where an attacker (CT-GAN) would inject a lesion.
        rect = (4, 12, 32, 40)
        for method, kw in (("copy-move", {}), ("repaint-ddim", {"label": "COVID", "steps": steps})):
            mask = make_mask(img.shape, rect=rect, feather=default_feather(method))  # as `medfake manipulate` does
            res = manipulate(img, mask, method, seed=seed, **kw)
            paths = save_result(res, out / "manipulated", f"CT_small_{method}")
            written += [Path(p) for k, p in paths.items() if k == "image"]
            edits.append((Path(paths["image"]), Path(paths["mask"])))
            con.print(f"  {method}: {', '.join(str(p) for p in paths.values())}")
    except Exception as e:  # noqa: BLE001 - the demo reports and goes on
        con.print(f"  [red]manipulation failed: {e}[/]")
        failed.append("manipulation")

    con.rule("3. detection (default detector) on fakes and originals")
    try:
        from ..detection import detect_paths, load_detector, write_csv

        det = load_detector("default")
        con.print(f"  detector: {det.name} {det.version}")
        rows = detect_paths(originals + written, detector=det)
        write_csv(rows, out / "detections.csv")
        table = Table("path", "modality", "p_synthetic", "p_manipulated", "verdict")
        for r in rows:
            table.add_row(str(r["path"]), str(r["modality"]), f"{float(r['p_synthetic']):.3f}" if r["verdict"] != "error" else "",
                          f"{float(r['p_manipulated']):.3f}" if r["verdict"] != "error" else "", str(r["verdict"]))
        con.print(table)
        con.print(f"  CSV: {out / 'detections.csv'}")
        if edits:  # where the detector says the CT copies were changed (the localizer's mask), against the truth
            from ..evaluation.metrics import pixel_scores
            from ..io import read_image

            maps = {str(r["path"]): r for r in detect_paths([p for p, _ in edits], detector=det,
                                                           heatmaps=out / "heatmaps")}
            for img_path, truth in edits:
                r = maps.get(str(img_path), {})
                if r.get("mask"):
                    f1 = pixel_scores(read_image(truth).array > 0.5, read_image(r["mask"]).array > 0.5)["f1"]
                    con.print(f"  predicted mask of {img_path.name}: {r['mask']} (pixel-F1 {f1:.2f} against the "
                              f"edit's own mask)")
        from ..detection.summary import detector_rates, summarize, write_summary_csv

        # per DICOM series: the manipulated CT copies keep the original's series (as an attacker's would)
        series = [g for g in summarize(rows, "series", *detector_rates()) if g["group_by"] == "series"]
        write_summary_csv(series, out / "series.csv")
        for g in series:
            why = f" ({g['message']})" if g["message"] else ""
            con.print(f"  series …{g['group'][-16:]}: {g['files']} file(s), {g['real']} real, "
                      f"verdict {g['verdict']}{why}")
        con.print(f"  per DICOM series: {out / 'series.csv'}")
        errors = [r for r in rows if r["verdict"] == "error"]
        if errors:
            failed.append(f"detection of {len(errors)} file(s)")
    except Exception as e:  # noqa: BLE001
        con.print(f"  [red]detection failed: {e}[/]")
        failed.append("detection")
    con.rule()
    if failed:
        con.print(f"[red]demo incomplete after {time.time() - t0:.0f} s: {', '.join(failed)} failed[/] — outputs so far "
                  f"under {out.resolve()}")
        raise typer.Exit(1)
    con.print(f"demo done in {time.time() - t0:.0f} s — outputs under [bold]{out.resolve()}[/]")
