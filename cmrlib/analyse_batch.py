"""`cmrlib analyse COHORT --run RUN --out OUT`: one report per subject (one sub-folder each), `summary.csv` with a row
per subject (every measure and its flags) and an index page; models loaded once, resumable.

Subjects are named S001, S002 ... in the sorted order of their folders; no folder or file name reaches a report, the
summary or the index. `batch.json` is written before the first subject, so a killed batch resumes; a finished
subject is not redone while its files (`made_from`), the cohort's folders and the models are unchanged.
"""
from __future__ import annotations

import hashlib
import html
import re
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from .analyse import (CSS, INPUT_KINDS, REPORT_FILES, AnalyseError, Models, _source, finished_report, load_models,
                      own_folder, report_patient)
from .io.common import guess_view, loop_reason
from .plausible import TIER_KEYS
from .runfiles import RunFileError, guard, read_csv, read_json
from .utils import atomic_write_json, atomic_write_text, spreadsheet_safe

BATCH_KIND = "cmrlib analyse batch"
BATCH_FILES = ("index.html", "summary.csv", "batch.json")
AUTO_SOURCES = ("acdc", "nifti", "ukbb", "ukbb_cardiac")  # a DICOM patient's sub-folders may be its series


def subject_folders(folder: Path) -> list[Path]:
    """The sub-folders of a cohort folder, sorted, hidden ones aside; a link that loops is one too, a subject that
    fails with its reason, never left out unseen."""
    return sorted(p for p in folder.iterdir() if (p.is_dir() or loop_reason(p)) and not p.name.startswith("."))


def pseudonyms(n: int) -> list[str]:
    """S001, S002, ...: the names a cohort's subjects go by in every output, never their folders' names."""
    return [f"S{i:03d}" for i in range(1, n + 1)]


def _kind(folder: Path) -> str | None:
    if loop_reason(folder):
        return None
    try:
        return _source(folder)[0]
    except AnalyseError:
        return None


def is_cohort(folder: str | Path) -> bool:
    """Whether a folder holds one subject per sub-folder and no cines of its own: two or more sub-folders, none
    named after a view, each an ACDC, NIfTI or UK Biobank patient (DICOM cohorts are named with --cohort)."""
    folder = Path(folder)
    if not folder.is_dir() or any(p.is_file() and not p.name.lower().endswith((".md", ".txt", ".csv", ".json"))
                                  for p in folder.iterdir()):
        return False
    subs = subject_folders(folder)
    return len(subs) >= 2 and not any(guess_view(p.name) for p in subs) and all(_kind(p) in AUTO_SOURCES
                                                                               for p in subs)


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def models_key(models: Models) -> str:
    """What the reports depend on besides the cines: every predictor's content, the missing ones, the profile."""
    return _key(models.profile, *(f"{m}:{p.content_key()}" for m, p in sorted(models.predictors.items())),
                *sorted(models.missing))


def check_batch_out(out: Path, cohort: Path, run_dir: Path, force: bool = False) -> None:
    """The batch folder: not a system folder, not inside the cohort or the run; empty, a cmrlib batch, or (with
    `force`) a folder of nothing but a batch's files and subject folders (a batch killed before its record)."""
    o = own_folder(out, **{"the cohort folder": cohort, "the run folder": run_dir})
    if not o.is_dir() or not any(o.iterdir()) or _batch_state(o) is not None:
        return
    if force and all(SUBJECT.fullmatch(p.name) or p.name in BATCH_FILES for p in o.iterdir()):
        return
    raise AnalyseError(f"--out {out.name or out} is not empty and holds no cmrlib batch; give a new folder"
                       + ("" if force else " (--force takes over one that holds only a batch's subject folders)"))


SUBJECT = re.compile(r"S\d{3,}")  # a subject's folder in a batch: its pseudonym


def _batch_state(out: Path) -> dict | None:
    try:
        state = read_json(out, out / "batch.json")
    except RunFileError:
        return None
    return state if state.get("kind") == BATCH_KIND else None


def made_from(folder: Path) -> str:
    """What a subject's report was made from: each file's path inside its folder, size and modification time (a
    file replaced by another patient's changes it)."""
    from .io.common import walk

    if why := loop_reason(folder):
        return _key(why)  # a subject that fails with its reason
    parts = []
    for p in walk(folder):
        st = p.stat()
        parts.append(f"{p.relative_to(folder).as_posix()}|{st.st_size}|{st.st_mtime_ns}")
    return _key(*parts)


def _made_from(report: Path) -> str | None:
    """The input fingerprint a finished report was made from (None: not finished, or from before fingerprints)."""
    try:
        return read_json(report, report / "report.json").get("made_from")
    except RunFileError:
        return None


def masked(file: str | None) -> str:
    """A file's path inside a subject's folder with every name replaced (folder and file names can be a patient's),
    its extension kept: what a summary may show of it."""
    if not file:
        return ""
    parts = Path(file).parts
    last = parts[-1]
    ext = "".join(Path(last).suffixes[-2:]) if "." in last else ""
    return "/".join(["…"] * (len(parts) - 1) + [f"…{ext}"])


def failure(e: Exception) -> str:
    """Why a subject has no report, as its summary row may say it: the error's kind, the masked file, the problem
    (an error cmrlib did not foresee: its kind only, as its text could hold anything)."""
    if isinstance(e, AnalyseError) and e.problem:
        where = masked(e.file)
        return f"failed: {e.kind or 'AnalyseError'}: " + (f"{where}: " if where else "") + e.problem[:240]
    return f"failed: {type(e).__name__}"


def summary_row(name: str, folder: Path, status: str) -> dict:
    """One subject's row: status, views, how many numbers in the main table and in each tier, every measure's value
    and every tier's reasons."""
    row = dict(subject=name, status=status)
    if not finished_report(folder):
        return row
    rep = read_json(folder, folder / "report.json")
    tab = read_csv(folder, folder / "measures.csv")
    tab = tab.assign(**{c: tab[c].astype(object).fillna("") for c in ("flag", "tier") if c in tab})
    row.update(views="+".join(c["view"] for c in rep["cines"]), numbers=rep["numbers"],
               **{t: rep.get(t, 0) for t in TIER_KEYS}, input_flags=sum(any(q[f"{k}_flags"] for k in INPUT_KINDS) for q in rep["input"]),
               skipped_files=len(rep["skipped_files"]))
    for r in tab.itertuples():
        row[f"{r.method}: {r.measure}"] = r.value
    row["flags"] = " | ".join(f"{r.method} {r.measure}: {r.tier}: {r.flag}" for r in tab.itertuples() if r.flag)
    return row


def suspect(summary: pd.DataFrame) -> pd.Series:
    """Whether each reported subject has a withheld or uncertain number in its main table."""
    return (summary.get("withheld", 0) + summary.get("uncertain", 0)) > 0


def index_html(summary: pd.DataFrame, profile: str) -> str:
    """The cohort's index page: one line per subject with its tiers, linking its report."""
    rows = []
    for r in summary.itertuples():
        ok = r.status == "reported"
        link = f"<a href='{r.subject}/report.html'>{r.subject}</a>" if ok else r.subject
        counts = "" if not ok else " / ".join(f"{int(getattr(r, t))}" for t in ("withheld", "uncertain", "abnormal"))
        cells = [link, html.escape(r.status), html.escape(str(getattr(r, "views", "") or "")), counts]
        bad = not ok or getattr(r, "withheld", 0) > 0
        rows.append(f"<tr class='{'flagged' if bad else 'uncertain' if ok and r.uncertain else 'ok'}'>"
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    done = summary[summary.status == "reported"]
    share = suspect(done).mean() if len(done) else float("nan")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>cmrlib cohort reports</title>"
            f"<style>{CSS}</style></head><body><h1>cmrlib: {len(summary)} subjects</h1>"
            f"<p class='prov'>Models of a {html.escape(profile)} run. {len(done)} reported, "
            f"{len(summary) - len(done)} not; {share:.0%} of the reported subjects have a withheld or uncertain "
            "number. Subjects are numbered in the sorted order of their folders.</p>"
            "<table class='measures'><tr><th>subject</th><th>status</th><th>views</th>"
            "<th>withheld / uncertain / abnormal</th></tr>" + "".join(rows) + "</table></body></html>")


def analyse_cohort(cohort: str | Path, run_dir: str | Path, out: str | Path, log: Callable[[str], None] = print,
                   skip_broken: bool = False, force: bool = False, warn: Callable[[str], None] | None = None,
                   progress: bool = True) -> dict[str, Path]:
    """Every subject folder of a cohort through the run's predictors (loaded once): a report each, summary.csv,
    index.html and batch.json in `out`. batch.json is written first, so a killed batch resumes; a subject that fails
    is recorded and the others go on; a rerun redoes a subject whose report is unfinished or whose files changed
    (`made_from`), and every subject with `force`."""
    from tqdm.auto import tqdm

    cohort, run_dir, out = Path(cohort), Path(run_dir), Path(out)
    if not cohort.is_dir():
        raise AnalyseError(f"{cohort.name}: not a folder (give a folder with one sub-folder per subject)")
    check_batch_out(out, cohort, run_dir, force)
    folders = subject_folders(cohort)
    if not folders:
        raise AnalyseError(f"{cohort.name}: no sub-folders (one per subject)")
    t0 = time.perf_counter()
    models = load_models(run_dir, skip_broken, warn)
    names = pseudonyms(len(folders))
    keys = dict(cohort=_key(*(f.name for f in folders)), models=models_key(models))
    state = _batch_state(out) if out.is_dir() else None
    if state is not None and {k: state.get(k) for k in keys} != keys and not force:
        raise AnalyseError(f"--out {out.name}: holds reports of another cohort or other models (--force redoes all)")
    log(f"{len(folders)} subjects, {len(models.predictors)} predictor(s) loaded ({time.perf_counter() - t0:.1f} s)")
    files = dict(html=out / "index.html", csv=out / "summary.csv", json=out / "batch.json")
    try:  # every place the batch writes, before it writes: no link, nothing leading out of --out
        guard(out, *files.values(), *(out / n for n in names))
    except RunFileError as e:
        raise AnalyseError(f"--out {out.name}: {e}") from None
    out.mkdir(parents=True, exist_ok=True)
    record = dict(kind=BATCH_KIND, **keys, subjects=len(names), profile=models.profile)
    atomic_write_json(files["json"], dict(record, status="running"))  # a killed batch resumes from here
    status: dict[str, str] = {}
    for name, folder in tqdm(list(zip(names, folders)), desc="subjects", disable=not progress):
        dest, made = out / name, made_from(folder)
        if not force and finished_report(dest) and _made_from(dest) == made:
            status[name] = "reported"
            continue
        try:
            report_patient(folder, models, dest, log=lambda _: None, made_from=made)
            status[name] = "reported"
        except Exception as e:  # one subject's bad files never stop the cohort
            status[name] = failure(e)
            log(f"  {name}: {status[name]}")
    summary = pd.DataFrame([summary_row(n, out / n, status[n]) for n in names])
    atomic_write_text(files["csv"], spreadsheet_safe(summary).to_csv(index=False))
    atomic_write_text(files["html"], index_html(summary, models.profile))
    atomic_write_json(files["json"], dict(record, status="complete",
                                          reported=int((summary.status == "reported").sum()),
                                          seconds=round(time.perf_counter() - t0, 1)))
    log(f"{(summary.status == 'reported').sum()} of {len(names)} reported: {files['html']} "
        f"({time.perf_counter() - t0:.1f} s)")
    return files


__all__ = ["analyse_cohort", "is_cohort", "BATCH_FILES", "REPORT_FILES"]
