"""`cmrlib validate COHORT --run RUN --out OUT`: a site's own contoured patients against the run's segmenter.

Each patient's folder goes through the run's segmentation Predictor; its LV and RV volumes, EF and mass are set
against the site's reference (a CSV of reference values by folder name, or the ED/ES masks an ACDC-layout folder
carries). The site gets Bland-Altman and ICC per measure, and 90 % intervals recalibrated on its patients
(split-conformal, coverage checked leaving each patient out). OUT is a new run folder: the run's Predictors, the
segmenter's carrying the site's intervals and the site's yardstick for the report's entropy check (its weights
unchanged unless `--fine-tune`; the original run untouched), and `validation/` with the tables and the figure.
`cmrlib analyse --run OUT` then prints the site's intervals and says so. Patients are S001, S002... in the sorted
order of their folders; no folder name is written.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import stats
from .measure import EDES_ENTROPY, ES_OVERSHOOT_ML, SAX_VOLUMES, UNITS, spread_columns
from .analyse import AnalyseError, own_folder, read_patient
from .analyse_batch import failure, pseudonyms, subject_folders
from .predictor import SEGMENTER, file_name, run_predictors
from .record import Cine
from .runfiles import RunFileError, read_json
from .utils import atomic_write_json, atomic_write_text, rng, seed_for, spreadsheet_safe

LEVEL = 0.9
MIN_PATIENTS = 10  # fewer cannot give a 90 % interval (ceil((n + 1) 0.9) <= n needs n >= 9) nor a useful ICC
VALIDATION = "validation"  # OUT's folder of tables
ENTROPY = "entropy_"  # a measures table's column prefix: the segmenter's mean SAX entropy inside a structure
QC_QUANTILE = 95.0  # the entropy yardstick: a cine less sure than this percentile of the site's patients is flagged
FINE_TUNE = dict(folds=5, epochs=10, lr=1e-3, seed=0, bf16=False)  # --fine-tune's schedule, never chosen on the site


def read_reference(path: Path | None) -> dict[str, dict[str, float]]:
    """folder name -> reference values from a CSV with a `patient` column and measure columns (any of SAX_VOLUMES)."""
    if path is None:
        return {}
    from .tables import number, read_table

    t = read_table(path, {"patient": str.strip, **{m: number for m in SAX_VOLUMES}}, required=("patient",),
                   any_of=SAX_VOLUMES, what="reference table", key="patient")
    cols = [m for m in SAX_VOLUMES if m in t.columns]
    return {str(r["patient"]): {m: float(r[m]) for m in cols if pd.notna(r[m])} for _, r in t.iterrows()}


def reference_of(cines, given: dict[str, float] | None) -> dict[str, float]:
    """A patient's reference: the CSV's row where given, else the truths of the SAX masks at ED and ES."""
    if given:
        return given
    sax = next((c for c in cines if c.view == "SAX"), None)
    meta = sax.meta if sax is not None and sax.meta.get("truth_from") else {}
    return {m: float(meta[m]) for m in SAX_VOLUMES if meta.get(m) is not None}


def measure_cohort(folders: list[Path], segmenter, refs: dict[str, dict], log: Callable[[str], None],
                   progress: bool = True, subjects: list[str] | None = None,
                   contoured: dict[str, Cine] | None = None) -> pd.DataFrame:
    """One row per patient (S001..., or `subjects`): status, and each measure's `_auto` and `_ref`. `contoured`:
    filled with each patient's contoured SAX frames (`contoured_frames`) from the same read."""
    from tqdm.auto import tqdm

    names = subjects or pseudonyms(len(folders))
    rows = []
    for name, folder in zip(tqdm(names, desc="patients", disable=not progress), folders, strict=True):
        row = dict(subject=name, status="measured")
        try:
            cines, _ = read_patient(folder)
            if contoured is not None and (c := contoured_frames(cines)) is not None:
                contoured[name] = c
            ref = reference_of(cines, refs.get(folder.name))
            if not ref:
                raise AnalyseError(f"{folder.name}: no reference (no --reference row, no SAX masks at ED and ES)",
                                   "no reference (no --reference row, no SAX masks at ED and ES)")
            pred = segmenter.predict(cines)
            got, entropy = pred.measures, (pred.detail.get("uncertainty") or {}).get("SAX") or {}
            row |= {f"{m}_auto": got.get(m, np.nan) for m in ref} | {f"{m}_ref": v for m, v in ref.items()}
            row |= {f"{ENTROPY}{k}": v for k, v in entropy.items()}
            row |= {f"{EDES_ENTROPY}{k}": v
                    for k, v in ((pred.detail.get("uncertainty_ed_es") or {}).get("SAX") or {}).items()}
            row[ES_OVERSHOOT_ML] = pred.detail.get("es_overshoot", np.nan)  # what withholds the LV numbers read at ES
        except Exception as e:  # one patient's bad files never stop the site's validation
            row["status"] = failure(e)
            log(f"  {row['subject']}: {row['status']}")
        rows.append(row)
    return pd.DataFrame(rows)


def contoured_frames(cines: list[Cine]) -> Cine | None:
    """A patient's SAX cine cut to its contoured frames (what fine-tuning learns from), or None without masks."""
    c = next((c for c in cines if c.view == "SAX" and c.labels is not None and c.labelled.any()), None)
    if c is None:
        return None
    idx = np.flatnonzero(c.labelled)
    at = {int(t): i for i, t in enumerate(idx)}
    return replace(c, pixels=c.pixels[idx], labels=c.labels[idx], labelled=np.ones(len(idx), bool),
                   frame_times=c.frame_times[idx], landmarks={}, ed=at.get(c.ed), es=at.get(c.es))


def fold_of(n: int, folds: int, seed: int) -> np.ndarray:
    """Each of n patients' fold (0..folds-1), balanced and drawn from the seed."""
    return rng(seed_for(seed, "validate", "folds")).permutation(np.arange(n) % folds)


def fine_tune_cv(folders: list[Path], subjects: list[str], frames: dict[str, Cine], segmenter,
                 refs: dict[str, dict], tune: dict, log: Callable[[str], None], progress: bool = True):
    """The segmenter's SAX network fine-tuned on the site's contours (`frames`: each contoured patient's frames, as
    `measure_cohort` kept them): scored by cross-validation inside the cohort (each patient measured by a model
    fine-tuned without them; the table `measure_cohort` gives), and the Predictor fine-tuned on every contoured
    patient, to ship. (out-of-fold table, that Predictor, the patients it learnt)"""
    from tqdm.auto import tqdm

    if len(frames) < MIN_PATIENTS:
        raise AnalyseError(f"--fine-tune needs SAX masks in at least {MIN_PATIENTS} patients' folders (ACDC layout: "
                           f"ED and ES masks); {len(frames)} have them")
    names = sorted(frames)
    fold = dict(zip(names, fold_of(len(names), min(tune["folds"], len(names)), tune["seed"])))

    def fit(learn: list[str]):
        return segmenter.fine_tuned([frames[n] for n in learn], tune["epochs"], tune["lr"], tune["seed"],
                                    bf16=tune["bf16"])

    rows = []
    for k in tqdm(sorted(set(fold.values())), desc="fine-tune folds", disable=not progress):
        held = [n for n in names if fold[n] == k]
        rows.append(measure_cohort([folders[subjects.index(n)] for n in held], fit([n for n in names if n not in held]),
                                   refs, log, progress=False, subjects=held))
    table = pd.concat(rows, ignore_index=True).assign(fold=lambda t: t.subject.map(fold))
    return table.sort_values("subject").reset_index(drop=True), fit(names), names


def fine_tune_table(before: pd.DataFrame, after: pd.DataFrame, pairs: dict, seed: int) -> pd.DataFrame:
    """Per measure, on the patients both measured: MAE of the run's segmenter and of the fine-tuned one (out of
    fold), and the paired difference (after - before) with its 95 % bootstrap interval."""
    both = before.merge(after, on="subject", suffixes=("", "_ft"))
    rows = []
    for m, (a, r) in pairs.items():
        if f"{a}_ft" not in both:
            continue
        e0, e1 = (both[a] - both[r]).abs(), (both[f"{a}_ft"] - both[r]).abs()
        d, lo, hi = stats.paired_bootstrap(e1, e0, seed=seed)
        rows.append(dict(measure=m, n=int((e0.notna() & e1.notna()).sum()), mae_run=e0.mean(),
                         mae_fine_tuned=e1.mean(), difference=d, ci_low=lo, ci_high=hi))
    return pd.DataFrame(rows).set_index("measure")


def pairs_of(table: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """The measures with an automatic and a reference value for at least MIN_PATIENTS patients."""
    return {m: (f"{m}_auto", f"{m}_ref") for m in SAX_VOLUMES if {f"{m}_auto", f"{m}_ref"} <= set(table.columns)
            and (table[f"{m}_auto"].notna() & table[f"{m}_ref"].notna()).sum() >= MIN_PATIENTS}


def interval_table(table: pd.DataFrame, pairs: dict, run_cal: dict) -> pd.DataFrame:
    """Per measure: the site's half-width and its out-of-fold coverage beside the run's half-width (and its scale)
    and how often that one holds the site's patients."""
    site = stats.conformal_intervals(table, pairs, LEVEL)
    spreads = spread_columns(table, pairs)
    for m, (a, r) in pairs.items():
        cal = run_cal.get(m) or {}
        hw, scale = cal.get("half_width", np.nan), cal.get("scale", "none")
        d = table[table[a].notna() & table[r].notna()]
        spread = d[spreads[m]] if m in spreads else None
        site.loc[m, "run_scale"], site.loc[m, "run_half_width"] = scale, hw
        site.loc[m, "run_coverage"] = float((stats.scaled_errors(d[a], d[r], scale, spread) <= hw).mean()) \
            if np.isfinite(hw) else np.nan
    return site


def qc_table(table: pd.DataFrame, run_p95: dict[str, float]) -> pd.DataFrame:
    """Per structure, the entropy yardstick of the report's check "less sure than on 95 % of its validation cines":
    the run's, the site's (the 95th percentile over the site's patients) and the share of the site's patients
    above each (the site's left out one patient at a time, so that it is not scored on the patients that set it)."""
    rows = []
    for col in [c for c in table.columns if c.startswith(ENTROPY)]:
        e = table[col].dropna().to_numpy(float)
        if len(e) < MIN_PATIENTS:
            continue
        k = col[len(ENTROPY):]
        loo = np.mean([e[i] > np.percentile(np.delete(e, i), QC_QUANTILE) for i in range(len(e))])
        run = run_p95.get(k, np.nan)
        rows.append(dict(structure=k, n=len(e), run_p95=run, site_p95=float(np.percentile(e, QC_QUANTILE)),
                         run_flags=float((e > run).mean()) if np.isfinite(run) else np.nan, site_flags=float(loo)))
    return pd.DataFrame(rows, columns=["structure", "n", "run_p95", "site_p95", "run_flags", "site_flags"]
                        ).set_index("structure")


def site_intervals(site: pd.DataFrame, name: str) -> dict[str, dict]:
    """The Predictor's `intervals` from the site's table."""
    return {m: dict(half_width=round(float(r.half_width), 3), n=int(r.n), level=LEVEL,
                    coverage=round(float(r.coverage), 3), calibrated_on=f"{name}: {int(r.n)} site patients")
            for m, r in site.iterrows() if np.isfinite(r.half_width)}


def run_record(run: Path) -> dict | None:
    """The run's run.json through the checked reader (None where there is none): one that is a link, a FIFO, too
    large or not JSON is an error, never an unknown profile."""
    f = run / "run.json"
    if not (f.exists() or f.is_symlink()):
        return None
    try:
        return read_json(run, f)
    except RunFileError as e:
        raise AnalyseError(f"--run {run.name}: {e}") from None


def _copy_run(predictors: dict, record: dict | None, dest: Path) -> None:
    """The run's predictors as loaded and checked, saved anew, and its run record, into `dest`: nothing is copied
    as found (no link, FIFO or stray file of the run travels, and no hard link ties the two runs)."""
    for m, pred in predictors.items():
        pred.save(dest / "predictors" / file_name(m))
    if record is not None:
        atomic_write_json(dest / "run.json", record)


def validate(cohort: str | Path, run_dir: str | Path, out: str | Path, reference: str | Path | None = None,
             log: Callable[[str], None] = print, progress: bool = True, fine_tune: bool | dict = False
             ) -> dict[str, Path]:
    """The site's patients against the run's segmenter; OUT a new run folder whose segmenter carries the site's
    intervals. fine_tune: also adapt the SAX network on the site's contours (True, or settings over `FINE_TUNE`),
    scored by cross-validation inside the cohort; OUT's segmenter is then the one fine-tuned on every contoured
    patient, its intervals from the out-of-fold errors. The files written."""
    cohort, run_dir, out = Path(cohort), Path(run_dir), Path(out)
    if not cohort.is_dir():
        raise AnalyseError(f"{cohort.name}: not a folder (one sub-folder per patient)")
    o = own_folder(out, **{"the cohort folder": cohort, "the run folder": run_dir})
    if o.exists() and any(o.iterdir()):
        raise AnalyseError(f"--out {out.name}: not empty; give a new folder for the validated run")
    folders = subject_folders(cohort)
    if len(folders) < MIN_PATIENTS:  # counted before anything is measured
        raise AnalyseError(f"{cohort.name}: {len(folders)} patient folder(s); a validation needs at least "
                           f"{MIN_PATIENTS}")
    run_json = run_record(run_dir)
    predictors, _, broken = run_predictors(run_dir)
    if SEGMENTER not in predictors:
        raise AnalyseError(f"--run {run_dir.name}: no segmentation predictor to validate"
                           + (f" ({broken[SEGMENTER]})" if SEGMENTER in broken else ""))
    subjects = pseudonyms(len(folders))
    refs = read_reference(Path(reference) if reference else None)
    t0 = time.perf_counter()
    seg = predictors[SEGMENTER]
    contoured: dict[str, Cine] = {}
    table = measure_cohort(folders, seg, refs, log, progress, subjects, contoured=contoured if fine_tune else None)
    done = table[table.status == "measured"]
    pairs = pairs_of(done)
    if not pairs:
        raise AnalyseError(f"{cohort.name}: fewer than {MIN_PATIENTS} patients with a measure and its reference "
                           f"({len(done)} of {len(table)} measured)")
    run_cal = dict(seg.provenance.get("intervals") or {})
    agree = stats.agreement_table(done, pairs, units=UNITS)
    calibrating, tuned = done, None
    if fine_tune:
        tune = FINE_TUNE | (fine_tune if isinstance(fine_tune, dict) else {})
        oof, seg, learnt = fine_tune_cv(folders, subjects, contoured, seg, refs, tune, log, progress)
        calibrating = oof[oof.status == "measured"]
        tuned = fine_tune_table(done, calibrating, pairs, tune["seed"])
        seg.model = seg.model.replace("SAX segmenter", f"SAX segmenter fine-tuned on {len(learnt)} site patients")
        for m, r in tuned.iterrows():
            log(f"  {m}: MAE {r.mae_run:.2f} -> {r.mae_fine_tuned:.2f} fine-tuned, out of fold ({int(r.n)} patients)")
    site = interval_table(calibrating, pairs_of(calibrating), run_cal)
    o.mkdir(parents=True, exist_ok=True)  # built in place: validation.json, written last, says it is finished
    _copy_run({m: p for m, p in predictors.items() if m != SEGMENTER}, run_json, o)
    name = f"validated {time.strftime('%Y-%m-%d')}" + (" (fine-tuned)" if fine_tune else "")
    record = dict(patients=len(done), measures=list(pairs), from_run=run_dir.name, date=time.strftime("%Y-%m-%d"))
    if tuned is not None:
        record["fine_tuned"] = dict({k: tune[k] for k in ("folds", "epochs", "lr", "seed")}, patients=len(learnt),
                                    mae=tuned[["mae_run", "mae_fine_tuned"]].round(3).to_dict("index"))
    qc = qc_table(calibrating, ((seg.prep.get("uncertainty_p95") or {}).get("SAX")) or {})
    if len(qc):  # the report's entropy check measured against the site's patients
        seg.prep = dict(seg.prep, uncertainty_p95={**(seg.prep.get("uncertainty_p95") or {}),
                                                   "SAX": qc.site_p95.round(5).to_dict()})
        record["uncertainty_p95"] = f"SAX: the {QC_QUANTILE:g}th percentile over {int(qc.n.max())} site patients"
    seg.provenance = dict(seg.provenance, intervals=run_cal | site_intervals(site, name), validation=record)
    seg.save(o / "predictors" / file_name(SEGMENTER))
    files = _write_validation(o, table, done, pairs, agree, site, qc, calibrating, tuned, record, run_dir.name,
                              time.perf_counter() - t0)
    log(f"{len(done)} of {len(table)} patients measured; validated run: {o} ({time.perf_counter() - t0:.1f} s)")
    return files


def _write_validation(o: Path, table: pd.DataFrame, done: pd.DataFrame, pairs: dict, agree: pd.DataFrame,
                      site: pd.DataFrame, qc: pd.DataFrame, calibrating: pd.DataFrame, tuned: pd.DataFrame | None,
                      record: dict, from_run: str, seconds: float) -> dict[str, Path]:
    """The validated run's `validation/` folder: measures, agreement, intervals, QC, the fine-tune's tables, the
    figure, and validation.json last (it says the folder is finished). The files written."""
    v = o / VALIDATION
    v.mkdir()
    files = dict(run=o, agreement=v / "agreement.csv", intervals=v / "intervals.csv", measures=v / "measures.csv",
                 figure=v / "agreement.png", qc=v / "qc.csv")
    atomic_write_text(files["measures"], spreadsheet_safe(table).to_csv(index=False))
    atomic_write_text(files["agreement"], agree.to_csv())
    atomic_write_text(files["intervals"], site.to_csv())
    atomic_write_text(files["qc"], qc.to_csv())
    if tuned is not None:
        files |= dict(fine_tune=v / "fine_tune.csv", measures_fine_tuned=v / "measures_fine_tuned.csv")
        atomic_write_text(files["fine_tune"], tuned.to_csv())
        atomic_write_text(files["measures_fine_tuned"], spreadsheet_safe(calibrating).to_csv(index=False))
    _figure(done, pairs, files["figure"])
    atomic_write_json(v / "validation.json", dict(
        kind="cmrlib validation", from_run=from_run, patients=len(table), measured=len(done), level=LEVEL,
        failed=table[table.status != "measured"][["subject", "status"]].to_dict("records"),
        intervals=json.loads(site.to_json(orient="index")), fine_tuned=record.get("fine_tuned"),
        qc=json.loads(qc.to_json(orient="index")), seconds=round(seconds, 1)))
    return files


def _figure(table: pd.DataFrame, pairs: dict, path: Path) -> None:
    """Regression and Bland-Altman per measure (LV volumes and EF)."""
    import matplotlib.pyplot as plt

    from .plots import agreement_figure

    shown = {m: p for m, p in pairs.items() if m in ("LVEDV", "LVESV", "LVEF", "LVM")}
    fig = agreement_figure(table, shown or pairs, units=UNITS)
    fig.savefig(path, dpi=90)
    plt.close(fig)
