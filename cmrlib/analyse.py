"""`cmrlib analyse PATIENT --run RUN --out DIR`: one patient's cines through every Predictor a run holds, into one
self-contained HTML report with its tables (measures.csv, report.json).

The patient is a folder: DICOM files (SAX slices stacked; view from the files or sub-folders `2ch/`, `4ch/`...),
NIfTI cines (views from sidecars or names such as `la_4ch.nii.gz`), UK Biobank zips, or an ACDC patient folder.
Cohort-free: no store, no split. The patient is called "patient" everywhere; no DICOM field and no folder name
reaches the report. A model trained only on the phantom is labelled a demonstration, and every number without a
real-data check behind it says so.
"""
from __future__ import annotations

import base64
import html
import io
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .predictor import METHODS, NotApplicable, Prediction, Predictor, run_predictors
from .record import Cine
from .utils import atomic_write_json, atomic_write_text

PATIENT = "patient"  # the only name the report gives the patient
REPORT_KIND = "cmrlib analyse report"  # report.json says so: a folder holding one may be replaced (--force)
REPORT_FILES = ("report.html", "measures.csv", "report.json")
SYSTEM = tuple(Path(p) for p in ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
                                 "/run", "/sbin", "/srv", "/sys", "/usr", "/var"))  # never written into
TITLES = {"segmentation": "Volumes, function and mass (segmentation, notebook 01)",
          "edes": "End-diastole and end-systole (TempReg-Net, notebook 02)",
          "mvnet": "Mitral annulus motion (MVnet, notebook 03)",
          "cussp": "Mitral regurgitation (CUSSP, notebook 04)",
          "sslhf": "HFrEF vs HFpEF (SSLHF, notebook 05)",
          "heartmae": "Measures from the foundation model (HeartMAE, notebook 06)"}


class AnalyseError(ValueError):
    """A patient path or run folder `cmrlib analyse` cannot use: one line saying which and why."""


# ---------------------------------------------------------------- reading one patient


def _source(folder: Path) -> tuple[str, list[Path]]:
    """Which reader a patient folder needs, and its NIfTI images (masks aside) when that is NIfTI."""
    from .io.dicom import is_dicom_file
    from .io.nifti import NIFTI_SUFFIXES, is_mask_name

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    nifti = [p for p in files if p.name.endswith(NIFTI_SUFFIXES) and not is_mask_name(p)]
    if (folder / "Info.cfg").is_file():
        return "acdc", []
    if any(p.suffix == ".zip" for p in files):
        return "ukbb", []
    if nifti:
        return "nifti", nifti
    if any(is_dicom_file(p) for p in files):
        return "dicom", []
    raise AnalyseError(f"{folder.name}: no DICOM, NIfTI, UK Biobank zip or ACDC patient files found")


def read_patient(path: str | Path) -> tuple[list[Cine], list[dict]]:
    """One patient's cines (subject 'patient') and the reader's notes (files it passed over, and why)."""
    from .io import IngestError
    from .io.batch import read_item, source_module
    from .io.common import Item

    folder = Path(path)
    if not folder.is_dir():
        raise AnalyseError(f"{folder.name}: not a folder (give the patient's folder of cines)")
    source, nifti = _source(folder)
    if source == "ukbb":
        items = source_module("ukbb").find(folder)
        if len(items) != 1:
            raise AnalyseError(f"{folder.name}: {len(items)} UK Biobank participants; give one patient's zips")
        item = Item(key=PATIENT, paths=items[0].paths, subject=PATIENT, private=True)
    elif source == "nifti":
        item = Item(key=PATIENT, paths=tuple(nifti), subject=PATIENT)
    else:
        item = Item(key=PATIENT, paths=(folder,), subject=PATIENT)
    try:
        if source == "acdc":
            from .io.acdc import read_acdc_patient

            return [read_acdc_patient(folder, subject=PATIENT)], []
        return read_item(source, item)
    except IngestError as e:
        raise AnalyseError(f"{folder.name}: {e}") from None


# ---------------------------------------------------------------- running the predictors


def run_all(predictors: dict[str, Predictor], cines: list[Cine], log: Callable[[str], None] = print) -> list[dict]:
    """Every predictor on the patient: per method its Prediction or why there is none, and its seconds."""
    out = []
    for m in METHODS:
        if m not in predictors:
            continue
        t0 = time.perf_counter()
        try:
            res, why = predictors[m].predict(cines), None
        except NotApplicable as e:
            res, why = None, f"not available: {e}"
        except Exception as e:  # a model that fails on this patient: the report says so, the others go on
            res, why = None, f"failed: {type(e).__name__}: {e}"
        dt = time.perf_counter() - t0
        log(f"  {m:<13} {dt:6.2f} s  {why or f'{len(res.measures)} measure(s)'}")
        out.append(dict(method=m, result=res, why=why, seconds=dt, provenance=predictors[m].provenance,
                        model=predictors[m].model))
    return out


# ---------------------------------------------------------------- figures


def _png(fig) -> str:
    """A figure as an inline <img> (the report is one file)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _frame(c: Cine, t: int) -> np.ndarray:
    """Frame t of a cine (SAX: the middle slice)."""
    px = c.pixels[t]
    return px[px.shape[0] // 2] if c.is_stack else px


def _overlay(ax, img, lab=None):
    """An image with label contours."""
    ax.imshow(img, cmap="gray")
    if lab is not None:
        for k, col in zip(range(1, 6), ("tab:red", "tab:orange", "tab:blue", "tab:green", "tab:purple")):
            if (lab == k).any():
                ax.contour(lab == k, levels=[0.5], colors=col, linewidths=0.8)
    ax.axis("off")


def figure_for(method: str, res: Prediction, cines: dict[str, Cine]) -> str:
    """The picture that shows what a method saw and said about this patient ('' when there is none)."""
    import matplotlib.pyplot as plt

    from .methods.heartmae import view_kind

    if method == "segmentation":
        labs = res.detail.get("labels", {})
        fig, axes = plt.subplots(1, 2 * len(labs), figsize=(3 * 2 * len(labs), 3), squeeze=False)
        for i, (cid, lab) in enumerate(labs.items()):
            c = cines[cid]
            for j, (name, t) in enumerate(zip(("ED", "ES"), res.detail["ed_es"][cid])):
                ax = axes[0, 2 * i + j]
                _overlay(ax, _frame(c, t), lab[t][lab.shape[1] // 2] if c.is_stack else lab[t])
                ax.set_title(f"{c.view} {name} (frame {t})", fontsize=9)
        return _png(fig)
    if method == "edes":
        fig, ax = plt.subplots(figsize=(6, 2.6))
        for cid, r in res.detail.items():
            ax.plot(r["curve"], label=f"{cines[cid].view}: ED {r['ed']}, ES {r['es']}")
        ax.set(xlabel="frame", ylabel="predicted curve (1 ED, 0 ES)")
        ax.legend(fontsize=8)
        return _png(fig)
    if method == "mvnet":
        fig, axes = plt.subplots(1, len(res.detail), figsize=(3.2 * len(res.detail), 3.2), squeeze=False)
        for ax, (cid, pts) in zip(axes[0], res.detail.items()):
            _overlay(ax, _frame(cines[cid], 0))
            for k, col in ((0, "tab:red"), (1, "tab:cyan")):
                ax.plot(pts[:, k, 0], pts[:, k, 1], color=col, lw=0.8)
                ax.plot(*pts[0, k], "o", color=col, ms=3)
            ax.set_title(f"{cines[cid].view}: annulus points over the cycle", fontsize=9)
        return _png(fig)
    if method == "cussp":
        patch = np.asarray(res.detail["patch"])
        ts = np.linspace(0, len(patch) - 1, 6).astype(int)
        fig, axes = plt.subplots(1, 6, figsize=(12, 2.2))
        for ax, t in zip(axes, ts):
            _overlay(ax, patch[t])
            ax.set_title(f"frame {t}", fontsize=8)
        fig.suptitle("valve patch (LA above, LV below), equalised over the LA", fontsize=9)
        return _png(fig)
    if method == "sslhf":
        fig, ax = plt.subplots(figsize=(4.5, 2.4))
        ax.bar([f"slice {s}" for s in res.detail["slices"]], res.detail["patches"], color="tab:red")
        ax.set(ylim=(0, 1), ylabel="HFrEF probability", title="per LV patch (mean of the folds)")
        return _png(fig)
    if method == "heartmae":
        att = next((v for k, v in res.detail.items() if k.startswith("attention")), None)
        if not att:
            return ""
        by_view = pd.Series(att).groupby(view_kind).sum()
        fig, ax = plt.subplots(figsize=(4.5, 2.4))
        by_view.plot.bar(ax=ax, color="tab:blue")
        ax.set(ylabel="attention", title="how much each view weighs")
        return _png(fig)
    return ""


# ---------------------------------------------------------------- the report


def _provenance_line(p: dict) -> str:
    """Where a model came from, in one sentence."""
    where = f"run '{p.get('run', '?')}' (notebook {p.get('notebook', '?')}, commit {str(p.get('commit'))[:10]})"
    return f"Trained in {where} on a {p.get('trained_on', 'unknown')} cohort of {p.get('subjects', '?')} subjects."


def _section(r: dict, cines: dict[str, Cine]) -> tuple[str, pd.DataFrame]:
    """One method's HTML and its measures."""
    m, p, res = r["method"], r["provenance"], r["result"]
    parts = [f"<h2>{html.escape(TITLES[m])}</h2>"]
    if p.get("trained_on") == "phantom":
        parts.append('<p class="warn">Demonstration only: this model was trained on the built-in phantom, never on '
                     'patients. Its numbers are not clinical estimates.</p>')
    check = p.get("real_check")
    parts.append(f"<p class='prov'>{html.escape(_provenance_line(p))} Model: {html.escape(r['model'])}. "
                 + (f"Real-data check: {html.escape(check)}." if check else
                    "<b>No real-data check stands behind these numbers.</b>") + "</p>")
    if res is None:
        parts.append(f"<p class='na'>{html.escape(r['why'])}</p>")
        return "\n".join(parts), pd.DataFrame()
    tab = res.table()
    shown = tab.assign(value=tab.value.map(lambda v: f"{v:.3g}"))[["measure", "value", "unit", "cine"]]
    parts.append(shown.to_html(index=False, border=0, classes="measures"))
    if res.note:
        parts.append(f"<p class='na'>{html.escape(res.note)}</p>")
    try:
        parts.append(figure_for(m, res, cines))
    except Exception as e:  # a figure that cannot be drawn never costs the numbers
        parts.append(f"<p class='na'>figure not drawn: {html.escape(type(e).__name__)}</p>")
    parts.append(f"<p class='time'>{r['seconds']:.2f} s</p>")
    return "\n".join(parts), tab


CSS = """body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}h2{border-bottom:1px solid #ccc}
.warn{background:#fff3cd;padding:.4em}.na{color:#a00}.prov,.time{color:#555;font-size:90%}
table.measures td,table.measures th{padding:2px 10px;text-align:left}img{max-width:100%}"""


def write_report(results: list[dict], cines: list[Cine], notes: list[dict], missing: dict[str, str],
                 out: Path) -> dict[str, Path]:
    """report.html, measures.csv and report.json in `out`, each written atomically."""
    by_id = {c.cine_id: c for c in cines}
    views = ", ".join(f"{c.view} ({c.n_frames} frames)" for c in cines)
    body = [f"<h1>cmrlib report: one {PATIENT}, every method</h1><p>Cines read: {html.escape(views)}.</p>"]
    tables = []
    for r in results:
        sec, tab = _section(r, by_id)
        body.append(sec)
        tables.append(tab)
    for m, why in missing.items():
        body.append(f"<h2>{html.escape(TITLES[m])}</h2><p class='na'>not available: {html.escape(why)}</p>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>cmrlib report</title><style>{CSS}</style>"
            f"</head><body>{''.join(body)}</body></html>")
    tables = [t for t in tables if len(t)]
    measures = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(Prediction.COLUMNS))
    files = dict(html=out / "report.html", csv=out / "measures.csv", json=out / "report.json")
    atomic_write_text(files["html"], page)
    atomic_write_text(files["csv"], measures.to_csv(index=False))
    atomic_write_json(files["json"], dict(
        kind=REPORT_KIND, cines=[dict(view=c.view, frames=c.n_frames) for c in cines],
        methods=[dict(method=r["method"], model=r["model"], available=r["result"] is not None, why=r["why"],
                      seconds=round(r["seconds"], 3), provenance=r["provenance"]) for r in results],
        missing=missing, skipped_files=len(notes)))
    return files


def check_out(out: Path, patient: Path, run_dir: Path, force: bool = False) -> Path:
    """The report folder, refused when it is a system folder, the patient's or the run's folder (or inside one),
    or a non-empty folder that is not a cmrlib report (one that is needs `force` to be replaced)."""
    o = out.resolve()
    if o == Path(o.anchor) or o == Path.home().resolve() or any(o == s or s in o.parents for s in SYSTEM):
        raise AnalyseError(f"--out {out}: a system folder; give a folder of its own for the report")
    for what, folder in (("the patient's folder", patient), ("the run folder", run_dir)):
        f = folder.resolve()
        if o == f or f in o.parents:
            raise AnalyseError(f"--out {out.name or out} lies in {what}; give a folder of its own for the report")
    if o.exists() and not o.is_dir():
        raise AnalyseError(f"--out {out.name} is a file, not a folder")
    if o.is_dir() and any(o.iterdir()):
        if not _holds_report(o):
            raise AnalyseError(f"--out {out.name or out} is not empty and holds no cmrlib report; give a new folder")
        if not force:
            raise AnalyseError(f"--out {out.name or out} holds a cmrlib report already (--force replaces it)")
    return out


def _holds_report(folder: Path) -> bool:
    """Whether a folder holds a cmrlib report and nothing else."""
    try:
        kind = json.loads((folder / "report.json").read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return False
    return kind == REPORT_KIND and all(p.name in REPORT_FILES for p in folder.iterdir())


def analyse(patient: str | Path, run_dir: str | Path, out: str | Path, log: Callable[[str], None] = print,
            skip_broken: bool = False, force: bool = False, warn: Callable[[str], None] | None = None
            ) -> dict[str, Path]:
    """Read one patient, run every Predictor of the run, write the report; the files written. A predictor that
    exists but cannot be opened is an error (`skip_broken`: a warning, and the report says so)."""
    run_dir, out, patient = Path(run_dir), Path(out), Path(patient)
    if not run_dir.is_dir():
        raise AnalyseError(f"--run {run_dir.name}: not a folder (a run folder made by `cmrlib run`)")
    check_out(out, patient, run_dir, force)
    t0 = time.perf_counter()
    predictors, absent, broken = run_predictors(run_dir)
    for m, why in broken.items():
        (warn or _stderr)(f"cmrlib: predictor {m} cannot be opened: {why}")
    if broken and not skip_broken:
        raise AnalyseError(f"--run {run_dir.name}: {len(broken)} predictor(s) cannot be opened "
                           f"({', '.join(broken)}; reasons above); --skip-broken reports without them")
    if not predictors:
        raise AnalyseError(f"--run {run_dir.name}: no predictors/ (run the notebooks 01-06 there first)")
    missing = absent | {m: f"its predictor cannot be opened ({why})" for m, why in broken.items()}
    cines, notes = read_patient(patient)
    log(f"read {len(cines)} cine(s): {', '.join(c.view for c in cines)}; {len(predictors)} predictor(s) loaded "
        f"({time.perf_counter() - t0:.2f} s)")
    results = run_all(predictors, cines, log)
    out.mkdir(parents=True, exist_ok=True)
    files = write_report(results, cines, notes, missing, out)
    log(f"report: {files['html']} ({time.perf_counter() - t0:.1f} s in all)")
    return files


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)
