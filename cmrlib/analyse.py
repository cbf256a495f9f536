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
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .io.ukbb_cardiac import LAYOUT as UKBB_CARDIAC
from .plausible import SEXES, SPOILS
from . import predictor as registry  # the one list of methods, read when a report is made
from .predictor import NotApplicable, Prediction, Predictor, predictor_class, run_predictors
from .record import Cine
from .utils import atomic_write_json, atomic_write_text, spreadsheet_safe

INPUT_KINDS = tuple(SPOILS)  # the kinds of input QC flag (`io.qa.acquisition_flags`), by what each spoils
PATIENT = "patient"  # the only name the report gives the patient
REPORT_KIND = "cmrlib analyse report"  # report.json says so: a folder holding one may be replaced (--force)
REPORT_FILES = ("report.html", "measures.csv", "report.json")
SYSTEM = tuple(Path(p) for p in ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
                                 "/run", "/sbin", "/srv", "/sys", "/usr", "/var"))  # never written into, nor below
MOUNTS = tuple(Path(p) for p in ("/home", "/media", "/mnt", "/opt", "/root"))  # never written into (below: yes)


class AnalyseError(ValueError):
    """A patient path or run folder `cmrlib analyse` cannot use: one line saying which and why. A patient's files
    also keep the parts apart (`problem`, `file` inside the patient's folder, `kind` of error), so a cohort's
    summary can name them under a pseudonym."""

    def __init__(self, message: str, problem: str | None = None, file: str | None = None, kind: str | None = None):
        super().__init__(message)
        self.problem, self.file, self.kind = problem, file, kind


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
    if any((folder / f"{name}.nii.gz").is_file() and seg and (folder / f"{seg}.nii.gz").is_file()
           for name, seg, _ in UKBB_CARDIAC.values()):
        return "ukbb_cardiac", []  # ukbb_cardiac's output folder: its seg*_ files are label maps
    if nifti:
        return "nifti", nifti
    if any(is_dicom_file(p) for p in files):
        return "dicom", []
    why = "no DICOM, NIfTI, UK Biobank zip or ACDC patient files found"
    raise AnalyseError(f"{folder.name}: {why}", why)


def read_patient(path: str | Path, views: dict[int, str] | None = None) -> tuple[list[Cine], list[dict]]:
    """One patient's cines (subject 'patient') and the reader's notes: each file it passed over (its path inside the
    patient's folder) and why, and for a DICOM folder each series with its role (`series`: its table row). Two
    cines of one view, NIfTI sidecars naming two subjects or NIfTI cines in two folders (two patients' files in one
    folder) are refused, never merged. `views`: {series number:
    view or 'skip'} over the DICOM sorting rules."""
    from .io import IngestError
    from .io.batch import read_item, source_module
    from .io.common import Item, loop_reason

    folder = Path(path)
    if why := loop_reason(folder):
        raise AnalyseError(f"{folder.name}: {why}", why)
    if not folder.is_dir():
        raise AnalyseError(f"{folder.name}: not a folder (give the patient's folder of cines)")
    source, nifti = _source(folder)
    if views and source != "dicom":
        raise AnalyseError(f"--view names DICOM series; {folder.name} holds {source} files")
    if source == "ukbb":
        items = source_module("ukbb").find(folder)
        if len(items) != 1:
            why = f"{len(items)} UK Biobank participants; give one patient's zips"
            raise AnalyseError(f"{folder.name}: {why}", why)
        item = Item(key=PATIENT, paths=items[0].paths, subject=PATIENT, private=True)
    elif source == "nifti":
        item = Item(key=PATIENT, paths=tuple(nifti), subject=PATIENT)
    else:
        item = Item(key=PATIENT, paths=(folder,), subject=PATIENT, opts={"views": views} if views else {})
    try:
        if source == "acdc":
            from .io.acdc import read_acdc_patient

            return [read_acdc_patient(folder, subject=PATIENT)], []
        if source == "ukbb_cardiac":
            from .io.ukbb_cardiac import read_subject

            return read_subject(folder, PATIENT), []
        if source == "nifti" and (why := _two_people(nifti)):
            raise AnalyseError(f"{folder.name}: {why}: give one patient's cines per folder", why)
        cines, notes = read_item(source, item)
    except IngestError as e:
        raise AnalyseError(f"{folder.name}: {e}", e.problem, _inside(folder, e.path), type(e).__name__) from None
    twice = [c.view for c in cines for n in notes if n.get("error") == "DuplicateView" and c.view in n["message"]]
    if twice:
        names = ", ".join(_files_of_view(folder, nifti, twice[0])) or "see the folder"
        why = f"two {twice[0]} cines: give one patient's cines per folder"
        raise AnalyseError(f"{folder.name}: two {twice[0]} cines ({names}): give one patient's cines per folder", why)
    return cines, [dict(file=_inside(folder, n.get("file", "")), reason=f"{n.get('error')}: {n.get('message')}",
                        **({"series": n["series"]} if "series" in n else {})) for n in notes]


def _two_people(nifti: list[Path]) -> str | None:
    """Why a folder's NIfTI cines are more than one person's, None when nothing says so. NIfTI carries no identity,
    so the evidence is what a cohort reads as two subjects: sidecars naming two, or images in two folders."""
    from .io.nifti import _named_masks, read_sidecar

    masks = _named_masks(nifti)
    images = [f for f in nifti if f.resolve() not in masks]
    subjects = {str(s) for f in images if (s := read_sidecar(f).get("subject")) is not None}
    if len(subjects) > 1:
        return f"sidecars name {len(subjects)} subjects"
    if len(places := {f.parent for f in images}) > 1:
        return f"cines in {len(places)} folders (each folder of a cohort is one subject)"
    return None


def _files_of_view(folder: Path, files: list[Path], view: str) -> list[str]:
    """The image files (masks aside) whose names say `view`: what to name when a view comes twice."""
    from .io.common import guess_view
    from .io.nifti import _named_masks, is_mask_name

    masks = _named_masks(files)
    return [_inside(folder, f) for f in files
            if guess_view(f.name) == view and not is_mask_name(f) and f.resolve() not in masks]


def _inside(folder: Path, file) -> str:
    """A file's path inside the patient's folder (the folder's own name may identify the patient)."""
    try:
        return str(Path(file).resolve().relative_to(folder.resolve()))
    except ValueError:
        return Path(str(file)).name


# ---------------------------------------------------------------- running the predictors


def run_all(predictors: dict[str, Predictor], cines: list[Cine], log: Callable[[str], None] = print) -> list[dict]:
    """Every predictor on the patient: per method its Prediction or why there is none, and its seconds."""
    out = []
    for m in registry.METHODS:
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
                        model=predictors[m].model, predictor=predictors[m]))
    return out


# ---------------------------------------------------------------- figures


def _png(fig) -> str:
    """A figure as an inline <img> (the report is one file)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


# ---------------------------------------------------------------- the report


@dataclass
class Body:
    """The patient's sex and body size, from the options or the files (used for normal ranges, never printed)."""

    sex: str | None = None
    height_cm: float | None = None
    weight_kg: float | None = None
    given: str = "none"  # where they came from, for the report

    @property
    def bsa(self) -> float | None:
        """Mosteller's BSA when height and weight are a person's and give a person's BSA; None otherwise."""
        from .io.common import human_body
        from .measure import bsa_mosteller

        if self.height_cm is None or self.weight_kg is None or not human_body(self.height_cm, self.weight_kg):
            return None
        bsa = float(bsa_mosteller(self.height_cm, self.weight_kg))
        return bsa if BSA_M2[0] <= bsa <= BSA_M2[1] else None


BSA_M2 = (0.2, 3.5)  # a person's body surface area (m2): a newborn's to the largest adult's
BMI = (6.0, 150.0)  # a person's body-mass index (kg/m2): each height and weight may be a person's, the pair not


def check_body(height_cm: float | None, weight_kg: float | None) -> None:
    """Refuse a height or weight option that is no person's, and a pair whose BSA is none (`io.common.BODY`, the
    same bounds the readers hold a file's values to), naming the option."""
    from .io.common import BODY
    from .measure import bsa_mosteller

    for option, v, (lo, hi), unit in (("--height", height_cm, BODY["height_cm"], "cm"),
                                      ("--weight", weight_kg, BODY["weight_kg"], "kg")):
        if v is not None and not (np.isfinite(v) and lo <= v <= hi):
            raise AnalyseError(f"{option} {v:g} {unit}: give a person's ({lo:g}-{hi:g} {unit})")
    if height_cm is not None and weight_kg is not None:
        bsa, bmi = float(bsa_mosteller(height_cm, weight_kg)), weight_kg / (height_cm / 100) ** 2
        pair = f"--height {height_cm:g} cm with --weight {weight_kg:g} kg"
        if not BMI[0] <= bmi <= BMI[1]:
            raise AnalyseError(f"{pair}: a BMI of {bmi:.1f} kg/m2, no person's ({BMI[0]:g}-{BMI[1]:g})")
        if not BSA_M2[0] <= bsa <= BSA_M2[1]:
            raise AnalyseError(f"{pair}: a BSA of {bsa:.2f} m2, no person's ({BSA_M2[0]:g}-{BSA_M2[1]:g} m2)")


def body_of(cines: list[Cine], sex: str | None = None, height_cm: float | None = None,
            weight_kg: float | None = None) -> Body:
    """The options where given (checked: `check_body`), else what the files say (DICOM header, ACDC's Info.cfg)."""
    check_body(height_cm, weight_kg)
    meta = next((c.meta for c in cines if c.meta.get("height_cm") or c.meta.get("sex")), {})
    from_files = sex is None and height_cm is None and weight_kg is None and bool(meta)
    return Body(sex if sex is not None else meta.get("sex"),
                height_cm if height_cm is not None else meta.get("height_cm"),
                weight_kg if weight_kg is not None else meta.get("weight_kg"),
                "the files' headers" if from_files else "the options" if (sex or height_cm or weight_kg) else "none")


def check_results(results: list[dict], cines: list[Cine], body: Body) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Every number of every method checked at once (ED/ES frames agree across methods): (measures with flag,
    normal range, z; the measures these views cannot show; each cine's input QC row)."""
    from .io.qa import acquisition
    from .plausible import check

    qc = [acquisition(c) for c in cines]
    tabs = [with_intervals(r["result"].table(), r["provenance"], interval_spread(r["result"].detail))
            for r in results if r["result"] is not None]
    tabs = [t for t in tabs if len(t)]
    tab = pd.concat(tabs, ignore_index=True) if tabs else pd.DataFrame(columns=list(Prediction.COLUMNS))
    grown = {r["result"].method: r["result"].detail["es_overshoot"] for r in results
             if r["result"] is not None and "es_overshoot" in r["result"].detail}
    checked, hidden = check(tab, {c.view for c in cines}, {c.view: c.n_frames for c in cines}, body.sex, body.bsa,
                            {q["view"]: {k: q[f"{k}_flags"] for k in INPUT_KINDS} for q in qc}, grown)
    return checked, hidden, qc


def interval_spread(detail: dict) -> dict[str, float]:
    """SAX measure -> the segmenter's mean entropy inside its structure at the ED and ES frames it measured
    (`measure.entropy_structure`): what an interval in the 'entropy' scale is a multiple of (empty for a method that
    does not segment)."""
    from .measure import SAX_VOLUMES, entropy_structure

    at = (detail.get("uncertainty_ed_es") or {}).get("SAX") or {}
    return {m: at[entropy_structure(m)] for m in SAX_VOLUMES if entropy_structure(m) in at}


def half_width(c: dict, value: float, spread: float | None) -> float:
    """An interval's half-width for one number: the calibrated width itself, or a multiple of the value ('value') or
    of the patient's spread ('entropy'; NaN without one)."""
    scale, hw = c.get("scale", "none"), float(c["half_width"])
    if scale == "value":
        return hw * abs(value)
    if scale == "entropy":
        return hw * spread if spread is not None and np.isfinite(spread) else np.nan
    return hw


def with_intervals(tab: pd.DataFrame, provenance: dict, spread: dict[str, float] | None = None) -> pd.DataFrame:
    """A method's measures with the calibrated interval its Predictor carries for each (`low`, `high`; NaN where
    none): value +- the conformal half-width from real patients it never trained on (a multiple of the value, or of
    the patient's `spread` (`interval_spread`), where the interval's scale says so), kept inside human bounds."""
    from .plausible import bounds

    cal = provenance.get("intervals") or {}
    low, high = [], []
    for r in tab.itertuples():
        c, b = cal.get(r.measure), bounds(r.measure, r.unit) or (-np.inf, np.inf)
        ok = isinstance(c, dict) and np.isfinite(r.value) and b[0] <= r.value <= b[1]
        hw = half_width(c, r.value, (spread or {}).get(r.measure)) if ok else np.nan
        ok = ok and np.isfinite(hw)
        low.append(max(r.value - hw, b[0]) if ok else np.nan)
        high.append(min(r.value + hw, b[1]) if ok else np.nan)
    return tab.assign(low=low, high=high)


def real_checked(provenance: dict, profile: str = "?") -> bool:
    """Whether a method's numbers have a real-data check behind them, outside a smoke run (then they reach the main
    table and its counts; the others are research outputs)."""
    return bool(provenance.get("real_check")) and provenance.get("profile", profile) != "smoke"


def model_kind(cine: str) -> str:
    """Which of a method's models read a number: 'SAX' for a SAX stack, 'LAX' for long-axis views."""
    from .plausible import views_of

    views = views_of(cine)
    if views == {"SAX"}:
        return "SAX"
    return "LAX" if views and views <= {"2CH", "3CH", "4CH"} else "+".join(sorted(views))


def research_reason(row, provenance: dict, profile: str = "?") -> str:
    """'' for a number the main table may state, else why it is a research output: its method has no real-data
    check, the model that read it has no passed check of its own (`model_checks` in the provenance), or it has no
    calibrated interval."""
    if not real_checked(provenance, profile):
        return "its method has no real-data check"
    checks = provenance.get("model_checks") or {}
    if checks:
        kind = model_kind(row.cine)
        c = checks.get(kind)
        if not (isinstance(c, dict) and c.get("passed")):
            what = c.get("check") if isinstance(c, dict) else "none"
            return f"the {kind} model has no passed real-data check of its own ({what})"
    low, high = getattr(row, "low", np.nan), getattr(row, "high", np.nan)
    if not (np.isfinite(low) and np.isfinite(high)):
        return "no calibrated interval from real patients"
    return ""


def run_profile(run_dir: Path) -> str:
    """The profile a run folder was made with (its run.json), '?' when it does not say."""
    from .runfiles import RunFileError, read_json

    try:
        got = read_json(run_dir, run_dir / "run.json").get("profile")
    except RunFileError:
        return "?"
    return got if isinstance(got, str) and re.fullmatch(r"[\w.-]{1,64}", got) else "?"


def _pedigree(p: dict, profile: str) -> str:
    """Where a model came from and what stands behind it: profile, training data, its real-data check."""
    where = (f"run '{p.get('run', '?')}' (profile {p.get('profile', profile)}, notebook {p.get('notebook', '?')}, "
             f"commit {str(p.get('commit'))[:10]})")
    check, real = p.get("real_check"), p.get("real_training")
    return (f"Trained in {where} on a {p.get('trained_on', 'unknown')} cohort of {p.get('subjects', '?')} subjects"
            + (f" and on real patients: {real}. " if real else ". ")
            + (f"Real-data check: {check}." if check else "No real-data check stands behind these numbers."))


def banners(provenance: dict, profile: str) -> list[str]:
    """The warnings a model's numbers carry: a smoke profile (tiny models), a phantom-only training."""
    out = []
    if provenance.get("profile", profile) == "smoke":
        out.append("Smoke profile: a tiny model trained for minutes to test the code. Its numbers mean nothing.")
    if provenance.get("trained_on") == "phantom" and not provenance.get("real_training"):
        out.append("Demonstration only: trained on the built-in phantom, never on patients. Not a clinical estimate.")
    return out


def page_banners(results: list[dict], profile: str) -> list[str]:
    """Each section's warning once at the top of the page, naming the sections it holds for (so a phantom-only
    method's warning does not seem to cover a model trained on patients)."""
    held: dict[str, list[str]] = {}
    for r in results:
        name = r["predictor"].short_name or r["predictor"].title
        for b in banners(r["provenance"], profile):
            held.setdefault(b, []).append(name)
    return [f"{b} Sections: {'; '.join(names)}." for b, names in held.items()]


def _fmt(v) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.3g}"


TIER_CLASS = {"": "ok", "not measurable": "na-row", "withheld": "flagged", "uncertain": "uncertain"}


def _interval(r, cal: dict) -> str:
    """'24-38 (90 %, 30 patients)' for a number with a calibrated interval, '' otherwise."""
    c = cal.get(r.measure)
    if not isinstance(c, dict) or not np.isfinite(getattr(r, "low", np.nan)):
        return ""
    return f"{_fmt(r.low)}-{_fmt(r.high)} ({c.get('level', 0.9):.0%}, calibrated on {c.get('n', '?')} patients)"


def calibration(provenance: dict) -> str:
    """Which calibration the intervals come from: the run's own, or a site's `cmrlib validate` (and its fine-tune)."""
    v, cal = provenance.get("validation"), provenance.get("intervals") or {}
    if v:
        ft = v.get("fine_tuned") or {}
        mae = (ft.get("mae") or {}).get("LVEF")
        tuned = (f"; SAX segmenter fine-tuned on {ft.get('patients')} of them" + (
            f", LVEF MAE {mae['mae_run']:.1f} -> {mae['mae_fine_tuned']:.1f} points out of fold" if mae else "")
                 ) if ft else ""
        qc = "; the entropy check measured against the same patients" if v.get("uncertainty_p95") else ""
        return f"Intervals from a site validation ({v.get('patients')} patients, {v.get('date')}{tuned}{qc})."
    where = sorted({c.get("calibrated_on") for c in cal.values() if isinstance(c, dict) and c.get("calibrated_on")})
    wide = ""
    for scale, how in (("value", "the patient's value"),
                       ("entropy", "the segmenter's uncertainty on this patient (its mean entropy at ED and ES)")):
        if scaled := [m for m, c in cal.items() if isinstance(c, dict) and c.get("scale") == scale]:
            wide += f" {', '.join(scaled)}: a width in proportion to {how}."
    return f"Intervals calibrated on {'; '.join(where)}.{wide}" if where else ""


def measures_html(tab: pd.DataFrame, cal: dict | None = None) -> str:
    """A method's checked measures: each number with its calibrated interval, its tier and why, and its place
    against the normal range."""
    head = ("<tr><th>measure</th><th>value</th><th>interval</th><th>unit</th><th>normal</th><th>vs normal</th>"
            "<th>check</th></tr>")
    rows = []
    for r in tab.itertuples():
        graded = getattr(r, "grade", "") or ""
        vs = "" if not r.vs_normal else r.vs_normal if np.isnan(r.z) else f"{r.vs_normal} (z {r.z:+.1f})"
        vs = "; ".join(x for x in (vs, graded and f"{graded} ({r.measure} grade)") if x)
        odd = bool(getattr(r, "abnormal", False))
        check = f"{'&#9888; ' if r.tier in ('withheld', 'uncertain') else ''}{r.tier}: {html.escape(r.flag)}" \
            if r.tier else "<b>abnormal</b>" if odd else "ok"
        check += "; <b>abnormal</b> across its whole interval" if odd and r.tier else ""
        css = "abnormal" if odd and not r.tier else TIER_CLASS[r.tier]
        rows.append(f"<tr class='{css}'><td>{html.escape(r.measure)}</td>"
                    f"<td>{_fmt(r.value)}</td><td class='interval'>{html.escape(_interval(r, cal or {}))}</td>"
                    f"<td>{html.escape(r.unit)}</td><td>{html.escape(r.normal)}</td>"
                    f"<td>{html.escape(vs)}</td><td class='check'>{check}</td></tr>")
    return f"<table class='measures'>{head}{''.join(rows)}</table>"


def _section(r: dict, cines: dict[str, Cine], tab: pd.DataFrame, hidden: pd.DataFrame, profile: str) -> str:
    """One method's HTML: its pedigree, its checked numbers and its figure."""
    p, res, model = r["provenance"], r["result"], r["predictor"]
    parts = [f"<h2>{html.escape(model.title)}</h2>"]
    parts += [f'<p class="warn">{html.escape(b)}</p>' for b in banners(p, profile)]
    parts.append(f"<p class='prov'>{html.escape(_pedigree(p, profile))} Model: {html.escape(r['model'])}.</p>")
    if res is None:
        parts.append(f"<p class='na'>{html.escape(r['why'])}</p>")
        return "\n".join(parts)
    parts.append(measures_html(tab, p.get("intervals")))
    parts += [f"<p class='prov calibration'>{html.escape(c)}</p>" for c in [calibration(p)] if c]
    if len(hidden):
        parts.append(f"<p class='na'>Not measurable from these views (not shown): "
                     f"{html.escape(', '.join(hidden.measure))}.</p>")
    parts += [f"<p class='na'>{html.escape(res.note)}</p>"] if res.note else []
    parts += [f"<p class='prov'>{html.escape(model.remark)}</p>"] if model.remark else []
    if res.detail.get("uncertainty"):
        parts.append(_uncertainty_html(res.detail))
    try:
        fig = model.figure(res, cines)
        parts.append("" if fig is None else _png(fig))
    except Exception as e:  # a figure that cannot be drawn never costs the numbers
        parts.append(f"<p class='na'>figure not drawn: {html.escape(type(e).__name__)}</p>")
    parts.append(f"<p class='time'>{r['seconds']:.2f} s</p>")
    return "\n".join(parts)


def _aside(r: dict, rows: pd.DataFrame) -> str:
    """A main-table method's other numbers, for the research section: why each is there, then the numbers."""
    if not len(rows):
        return ""
    why = "; ".join(dict.fromkeys(rows.research))
    return (f"<h3>{html.escape(r['predictor'].title)}: numbers outside the main table</h3>"
            f"<p class='prov'>{html.escape(why)}.</p>{measures_html(rows, r['provenance'].get('intervals'))}")


def unfamiliar(detail: dict) -> dict[str, list[str]]:
    """view -> the structures the segmenter is less sure of on this cine than on 95 % of its validation cines."""
    ref = detail.get("uncertainty_p95", {})
    return {v: [k for k, e in d.items() if k in ref.get(v, {}) and e > ref[v][k]]
            for v, d in detail.get("uncertainty", {}).items() if v in ref}


def _uncertainty_html(detail: dict) -> str:
    """The segmenter's mean softmax entropy inside each structure (0 sure, 1 a guess), per view, beside the 95th
    percentile on its validation cines where the predictor carries it."""
    ref, odd = detail.get("uncertainty_p95", {}), unfamiliar(detail)
    rows = []
    for v, d in detail["uncertainty"].items():
        for k, e in d.items():
            p95 = ref.get(v, {}).get(k)
            flag = k in odd.get(v, [])
            rows.append(f"<tr class='{'flagged' if flag else 'ok'}'><td>{html.escape(v)}</td><td>{html.escape(k)}</td>"
                        f"<td>{e:.3f}</td><td>{'—' if p95 is None else f'{p95:.3f}'}</td><td class='check'>"
                        + ("&#9888; less sure than on 95 % of its validation cines: this cine may look unlike its "
                           "training data" if flag else "ok" if p95 is not None else "no validation yardstick")
                        + "</td></tr>")
    return ("<p class='prov'>Segmentation uncertainty (mean softmax entropy inside each structure; 0 = certain, "
            "1 = uniform), beside its 95th percentile on the model's validation cines:</p><table class='measures'>"
            "<tr><th>view</th><th>structure</th><th>entropy</th><th>validation p95</th><th>check</th></tr>"
            f"{''.join(rows)}</table>")


def _cell(v) -> str:
    """A QC value as shown: '—' where the file does not say."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


VIEW_WORDS = {"SAX": "short-axis (SAX stack)", "2CH": "LV two-chamber (2CH)", "3CH": "three-chamber (3CH)",
              "4CH": "four-chamber (4CH)"}
SERIES_COLUMNS = ("series", "description", "files", "frames", "slices", "orientation", "role", "reason")


def series_html(rows: list[dict]) -> str:
    """Every series of a DICOM folder with the role it was given and the rule that gave it."""
    if not rows:
        return ""
    head = "".join(f"<th>{c}</th>" for c in SERIES_COLUMNS)
    kind = lambda role: "flagged" if role == "failed" else "ok" if role.startswith("cine") and role != "cine other" \
        else "skip"
    body = "".join(f"<tr class='{kind(r['role'])}'>"
                   + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in SERIES_COLUMNS) + "</tr>"
                   for r in rows)
    read = sum(r["role"].startswith("cine") and r["role"] != "cine other" for r in rows)
    return (f"<p class='prov' id='series-summary'>{len(rows)} series in the folder, {read} read as cines (a series "
            "sorted wrongly: name its view with <code>--view SERIES=VIEW</code>):</p>"
            f"<table class='measures' id='series'><tr>{head}</tr>{body}</table>")


def input_html(qc: list[dict], notes: list[dict], body: Body, views: set[str] = frozenset()) -> str:
    """The input QC: each cine's acquisition with its flags, every series of a DICOM folder with its role, the
    views the exam lacks, the files passed over, what body data was used."""
    cols = ("view", "frames", "frame_ms", "cycle_ms", "pixel_mm", "slice_mm", "slices")
    head = "".join(f"<th>{c}</th>" for c in cols) + "<th>check</th>"
    rows = []
    for q in qc:
        flags = "; ".join(q[f"{k}_flags"] for k in INPUT_KINDS if q[f"{k}_flags"])
        cells = "".join(f"<td>{html.escape(_cell(q[c]))}</td>" for c in cols)
        rows.append(f"<tr class='{'flagged' if flags else 'ok'}'>{cells}<td class='check'>"
                    f"{'&#9888; ' + html.escape(flags) if flags else 'ok'}</td></tr>")
    parts = ["<h2>Input</h2>", f"<table class='measures'><tr>{head}</tr>{''.join(rows)}</table>",
             series_html([n["series"] for n in notes if "series" in n])]
    lacking = [v for v in ("SAX", "2CH", "3CH", "4CH") if v not in views]
    if lacking and views:
        parts.append(f"<p class='na' id='views-lacking'>No {', '.join(VIEW_WORDS[v] for v in lacking)} cine was read "
                     "from this exam: the measures that need it are not shown.</p>")
    notes = [n for n in notes if "series" not in n]
    if notes:
        items = "".join(f"<li>{html.escape(n['file'])}: {html.escape(n['reason'])}</li>" for n in notes)
        parts.append(f"<p class='na'>{len(notes)} file(s) passed over:</p><ul class='skipped'>{items}</ul>")
    sex = "given" if body.sex else "not given (no sex-specific normal range)"
    size = "given (BSA-indexed measures added)" if body.bsa else "not given"
    parts.append(f"<p class='prov'>Sex: {sex}; height and weight: {size}; from {html.escape(body.given)}. "
                 "Their values are used, never shown.</p>")
    return "\n".join(parts)


CSS = """body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}h2{border-bottom:1px solid #ccc}
.warn{background:#fff3cd;padding:.4em}.na{color:#a00}.prov,.time{color:#555;font-size:90%}
table.measures td,table.measures th{padding:2px 10px;text-align:left}img{max-width:100%}
tr.flagged td{background:#fde2e2}tr.flagged td.check{color:#a00}td.check{font-size:90%}tr.skip td{color:#777}
tr.uncertain td{background:#fff3cd}tr.na-row td{color:#888}tr.abnormal td{background:#e8ecfb}
details.research{margin-top:2em}
details.research>summary{font-size:120%;cursor:pointer}#tier-summary{font-size:115%}"""


def write_report(results: list[dict], cines: list[Cine], notes: list[dict], missing: dict[str, str],
                 out: Path, body: Body | None = None, profile: str = "?", made_from: str | None = None
                 ) -> dict[str, Path]:
    """report.html, measures.csv and report.json in `out`, each written atomically; `made_from`: a fingerprint of the
    patient's files (a cohort's reports are redone when it changes)."""
    from .plausible import CUTOFFS, EF_WIDTH, RULES, SIZE_WIDTH, SYSTOLE, VIEWS_APART, sources_of, tier_counts

    body = body or Body()
    by_id = {c.cine_id: c for c in cines}
    checked, hidden, qc = check_results(results, cines, body)
    prov = {r["method"]: r["provenance"] for r in results}
    checked = checked.assign(research=[research_reason(r, prov.get(r.method, {}), profile)
                                       for r in checked.itertuples()])
    counted = checked[checked.research == ""]
    in_main = {r["method"] for r in results if real_checked(r["provenance"], profile)
               and (r["result"] is None or (counted.method == r["method"]).any())}
    main = [r for r in results if r["method"] in in_main]
    research = [r for r in results if r["method"] not in in_main]
    tiers = tier_counts(counted)
    views = ", ".join(f"{c.view} ({c.n_frames} frames)" for c in cines)
    body_html = [f"<h1>cmrlib report: one {PATIENT}, every method</h1><p>Cines read: {html.escape(views)}.</p>",
                 f"<p class='{'warn' if tiers['withheld'] + tiers['uncertain'] + tiers['abnormal'] else 'prov'}' "
                 f"id='tier-summary'>{tiers['withheld']} withheld, {tiers['uncertain']} uncertain, "
                 f"{tiers['abnormal']} abnormal (of {len(counted)} numbers from models with a passed real-data check "
                 f"and a calibrated interval; {tiers['not_measurable']} not measurable from these cines, "
                 "uncounted).</p>"]
    body_html += [f'<p class="warn">{html.escape(b)}</p>' for b in page_banners(main, profile)]
    seg = next((r["result"] for r in results if r["result"] is not None and r["result"].detail.get("uncertainty")),
               None)  # the model that measures its uncertainty per structure: the segmenter
    odd = {v: ks for v, ks in unfamiliar(seg.detail).items() if ks} if seg is not None else {}
    if odd:
        where = "; ".join(f"{v}: {', '.join(ks)}" for v, ks in odd.items())
        body_html.append(f"<p class='warn'>Unlike its training data? The segmenter is less sure here than on 95 % of "
                         f"its validation cines ({html.escape(where)}).</p>")
    body_html.append(input_html(qc, notes, body, {c.view for c in cines}))
    mine = lambda m, rows: rows[rows.method == m]  # noqa: E731
    sections = {r["method"]: _section(r, by_id, mine(r["method"], counted if r["method"] in in_main else checked),
                                      mine(r["method"], hidden), profile) for r in results}
    body_html += [sections[r["method"]] for r in main]
    if not main:
        body_html.append("<p class='na' id='no-main'>No model of this run has a passed real-data check and a "
                         "calibrated interval: every number is a research output below.</p>")
    for m, why in missing.items():
        body_html.append(f"<h2>{html.escape(predictor_class(m).title)}</h2><p class='na'>not available: "
                         f"{html.escape(why)}</p>")
    aside = [_aside(r, mine(r["method"], checked[checked.research != ""])) for r in main]
    aside = [a for a in aside if a] + [sections[r["method"]] for r in research]
    if aside:
        n_out = int((checked.research != "").sum())
        body_html.append(f"<details class='research' id='research'><summary>Research outputs: {n_out} number(s) "
                         "without a passed real-data check of their own model or a calibrated interval, outside "
                         "every count</summary><p class='prov'>Each section says what stands behind it; none of these "
                         "numbers is a clinical estimate.</p>" + "".join(aside) + "</details>")
    rules = "; ".join(r.text for r in RULES)
    cuts = "; ".join(f"{m} {', '.join(f'{c:g}' for c in cs)}" for m, cs in CUTOFFS.items())
    refs = sources_of(checked.measure)
    body_html.append(f"<h2>How the numbers are checked</h2><p class='prov'>The main table holds a number only when the "
                     "model that read it passed a real-data check of its own and carries an interval calibrated on "
                     "real patients. Three tiers, never summed. <b>Not measurable</b>: the cines cannot give the "
                     "number (no frame times, too few frames). <b>Withheld</b>: outside human bounds, breaking one of "
                     f"these identities ({html.escape(rules)}), read from implausible spacing, or at ED/ES frames "
                     f"whose systole spans less than {100 * SYSTOLE[0]:.0f} % or more than {100 * SYSTOLE[1]:.0f} % "
                     f"of the cycle or whose views disagree by more than {100 * VIEWS_APART:.0f} % of it. "
                     "<b>Uncertain</b>: its 90 % interval (split-conformal, from real patients the model never "
                     f"trained on) crosses a clinical cut-off ({html.escape(cuts)} %), or reaches further than "
                     f"±{EF_WIDTH:g} points (EF) or ±{100 * SIZE_WIDTH:.0f} % (volumes, mass). <b>Abnormal</b>: a "
                     "number outside the normal range for the patient's sex (without the sex: outside the range of "
                     "either sex; inside one, the page says for which), or a clinical grade below normal. The LV-RV "
                     "stroke-volume gap is shown as a measure (regurgitation or shunt volume, or basal contouring), "
                     "never as a flag. Normal ranges and grades: "
                     + html.escape("; ".join(sorted(set(refs.values()))) or "none for these measures") + ".</p>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>cmrlib report</title><style>{CSS}</style>"
            f"</head><body>{''.join(body_html)}</body></html>")
    files = dict(html=out / "report.html", csv=out / "measures.csv", json=out / "report.json")
    atomic_write_text(files["html"], page)
    atomic_write_text(files["csv"], spreadsheet_safe(checked).to_csv(index=False))
    atomic_write_json(files["json"], dict(
        kind=REPORT_KIND, profile=profile, cines=[dict(view=c.view, frames=c.n_frames) for c in cines], input=qc,
        methods=[dict(method=r["method"], model=r["model"], content_key=r["predictor"].content_key(),
                      available=r["result"] is not None, why=r["why"], seconds=round(r["seconds"], 3),
                      provenance=r["provenance"], warnings=banners(r["provenance"], profile),
                      real_checked=real_checked(r["provenance"], profile),
                      calibration=calibration(r["provenance"])) for r in results],
        missing=missing, numbers=len(counted), **tiers, research=[r["method"] for r in research],
        research_numbers=checked.loc[checked.research != "", ["method", "measure", "research"]].to_dict("records"),
        unfamiliar=odd,
        not_in_these_views=hidden.measure.tolist(),
        series=[n["series"] for n in notes if "series" in n], skipped_files=[n for n in notes if "series" not in n],
        reference_ranges=refs, made_from=made_from))
    return files


def own_folder(out: Path, **around: Path) -> Path:
    """`out` resolved, refused when it is a system folder or a file, or is or lies in one of `around` (name ->
    folder, e.g. the patient's or the run's)."""
    o = out.resolve()
    if o == Path(o.anchor) or o == Path.home().resolve() or o in MOUNTS or any(o == s or s in o.parents
                                                                              for s in SYSTEM):
        raise AnalyseError(f"--out {out}: a system folder; give a folder of its own for the report")
    for what, folder in around.items():
        f = folder.resolve()
        if o == f or f in o.parents:
            raise AnalyseError(f"--out {out.name or out} lies in {what}; give a folder of its own "
                               "for the report")
    if o.exists() and not o.is_dir():
        raise AnalyseError(f"--out {out.name} is a file, not a folder")
    return o


def check_out(out: Path, patient: Path, run_dir: Path, force: bool = False) -> Path:
    """The report folder, refused when it is a system folder, the patient's or the run's folder (or inside one),
    or a non-empty folder that is not a cmrlib report (one that is needs `force` to be replaced)."""
    o = own_folder(out, **{"the patient's folder": patient, "the run folder": run_dir})
    if o.is_dir() and any(o.iterdir()):
        if not _holds_report(o):
            raise AnalyseError(f"--out {out.name or out} is not empty and holds no cmrlib report; give a new folder")
        if not force:
            raise AnalyseError(f"--out {out.name or out} holds a cmrlib report already (--force replaces it)")
    return out


def finished_report(folder: Path) -> bool:
    """Whether a folder holds a finished cmrlib report (its report.json, written last, says so)."""
    from .runfiles import RunFileError, read_json

    try:
        return read_json(folder, folder / "report.json").get("kind") == REPORT_KIND
    except RunFileError:
        return False


def _holds_report(folder: Path) -> bool:
    """Whether a folder holds a cmrlib report and nothing else."""
    return finished_report(folder) and all(p.name in REPORT_FILES for p in folder.iterdir())


@dataclass
class Models:
    """A run's predictors loaded once: those that can be used, why the others cannot, and the run's profile."""

    predictors: dict[str, Predictor]
    missing: dict[str, str]
    profile: str


def load_models(run_dir: Path, skip_broken: bool = False, warn: Callable[[str], None] | None = None) -> Models:
    """Every Predictor of a run. One that exists but cannot be opened is an error (`skip_broken`: a warning, and
    the report says so)."""
    if not run_dir.is_dir():
        raise AnalyseError(f"--run {run_dir.name}: not a folder (a run folder made by `cmrlib run`)")
    predictors, absent, broken = run_predictors(run_dir)
    for m, why in broken.items():
        (warn or _stderr)(f"cmrlib: predictor {m} cannot be opened: {why}")
    if broken and not skip_broken:
        raise AnalyseError(f"--run {run_dir.name}: {len(broken)} predictor(s) cannot be opened "
                           f"({', '.join(broken)}; reasons above); --skip-broken reports without them")
    if not predictors:
        raise AnalyseError(f"--run {run_dir.name}: no predictors/ (run the notebooks 01-06 there first)")
    missing = absent | {m: f"its predictor cannot be opened ({why})" for m, why in broken.items()}
    return Models(predictors, missing, run_profile(run_dir))


def report_patient(patient: Path, models: Models, out: Path, log: Callable[[str], None] = print,
                   sex: str | None = None, height_cm: float | None = None, weight_kg: float | None = None,
                   views: dict[int, str] | None = None, made_from: str | None = None) -> dict[str, Path]:
    """One patient through loaded models into a report folder; the files written."""
    cines, notes = read_patient(patient, views)
    log(f"read {len(cines)} cine(s): {', '.join(c.view for c in cines)}")
    results = run_all(models.predictors, cines, log)
    out.mkdir(parents=True, exist_ok=True)
    return write_report(results, cines, notes, models.missing, out, body_of(cines, sex, height_cm, weight_kg),
                        models.profile, made_from)


def analyse(patient: str | Path, run_dir: str | Path, out: str | Path, log: Callable[[str], None] = print,
            skip_broken: bool = False, force: bool = False, warn: Callable[[str], None] | None = None,
            sex: str | None = None, height_cm: float | None = None, weight_kg: float | None = None,
            views: dict[int, str] | None = None) -> dict[str, Path]:
    """Read one patient, run every Predictor of the run, write the report; the files written. sex, height_cm,
    weight_kg: for normal ranges and BSA (else from the files' headers where they say); views: {DICOM series
    number: view or 'skip'} over the sorting rules."""
    run_dir, out, patient = Path(run_dir), Path(out), Path(patient)
    if sex is not None and sex not in SEXES:
        raise AnalyseError(f"--sex {sex[:20]!r}: give one of {', '.join(SEXES)}")
    check_body(height_cm, weight_kg)  # before anything is read or loaded
    if not run_dir.is_dir():
        raise AnalyseError(f"--run {run_dir.name}: not a folder (a run folder made by `cmrlib run`)")
    check_out(out, patient, run_dir, force)
    t0 = time.perf_counter()
    models = load_models(run_dir, skip_broken, warn)
    log(f"{len(models.predictors)} predictor(s) loaded ({time.perf_counter() - t0:.2f} s)")
    files = report_patient(patient, models, out, log, sex, height_cm, weight_kg, views)
    log(f"report: {files['html']} ({time.perf_counter() - t0:.1f} s in all)")
    return files


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)
