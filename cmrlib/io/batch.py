"""The one ingest loop every source shares: find subjects, read each, write atomically, report, resume, split.

A source module provides `find(root, **opts) -> list[Item]` and `read(item, notes) -> list[Cine]`; this driver
does the rest. A subject is complete once all its cines are in the store and a marker
`<cohort>/.ingest/<source>/<subject>.json` says so; a re-run skips complete subjects and retries the rest.
"""
from __future__ import annotations

import importlib
import json
import multiprocessing as mp
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from types import ModuleType

import numpy as np
from tqdm.auto import tqdm

from ..store import CohortStore, stratified_split
from ..utils import atomic_write_json
from .common import Item, note
from .errors import IngestError
from .pseudonyms import PseudonymError, Pseudonyms
from .qa import anatomy_ok

SOURCES = ("acdc", "mnms", "mnms2", "ukbb", "dicom", "nifti")
PSEUDONYMS = {"ukbb": "required", "dicom": "optional", "nifti": "optional"}  # sources whose ids may identify people
PREFIX = {"ukbb": "ukbb", "dicom": "sub", "nifti": "sub"}
STRATA = ("group", "pathology", "disease")  # meta keys splits are stratified on, first present wins
FRACTIONS = (0.7, 0.15, 0.15)


def source_module(source: str) -> ModuleType:
    """The module implementing a source (`cmrlib.io.<source>`)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; one of {SOURCES}")
    return importlib.import_module(f"{__package__}.{source}")


# ---------------------------------------------------------------- subjects and resume state


def assign_subjects(items: list[Item], source: str, pseudonym_file, out) -> list[Item]:
    """Give every item its stored subject id: a pseudonym where the source's ids may identify a person."""
    need = PSEUDONYMS.get(source)
    if need == "required" and pseudonym_file is None:
        raise PseudonymError(f"{source}: subject ids are private; pass pseudonym_file= (a CSV you keep, outside "
                             f"the cohort folder) to hold the id -> pseudonym mapping")
    if need and pseudonym_file is not None:
        ps = Pseudonyms(pseudonym_file, PREFIX[source]).check_outside(out)
        names = ps.assign([it.key for it in items])
        for it in items:
            it.subject, it.private = names[it.key] + it.suffix, True
    return items


def _marker(root: Path, source: str, subject: str) -> Path:
    return root / ".ingest" / source / f"{subject}.json"


def is_done(store: CohortStore, source: str, item: Item) -> bool:
    """A subject is complete when its marker exists and every cine it lists is in the store."""
    m = _marker(store.root, source, item.subject)
    if not m.exists():
        return False
    try:
        ids = json.loads(m.read_text())["cines"]
    except (json.JSONDecodeError, KeyError):
        return False
    return all(i in store for i in ids)


def _scrub(text: str, item: Item) -> str:
    """Replace a private key (EID, identifying folder name) by the pseudonym in report text."""
    return text.replace(item.key, item.subject) if item.private and item.key else text


# ---------------------------------------------------------------- one subject


def _qa(cine, notes: list, name: str) -> None:
    """Flag labelled SAX cines whose masks fail the anatomy check (a likely flipped label convention)."""
    if cine.view != "SAX" or cine.labels is None or not cine.labelled.any():
        return
    t = cine.ed if cine.ed is not None and cine.labelled[cine.ed] else int(np.flatnonzero(cine.labelled)[0])
    ok, sc = anatomy_ok(cine.labels[t])
    cine.meta["label_anatomy_ok"] = ok
    if not ok:
        notes.append(dict(file=name, error="LabelAnatomy", message=f"{cine.cine_id}: masks fail the anatomy check "
                          f"{ {k: round(v, 3) for k, v in sc.items()} }: wrong label convention?"))


def ingest_item(source: str, item: Item, root: str | Path) -> dict:
    """Read one subject and write its cines; never raises: returns ok/cines/notes or the error as a report row."""
    store, notes, written = CohortStore(root), [], []
    try:
        cines = source_module(source).read(item, notes)
        if not cines:
            raise IngestError(item.name, "no cine found")
        seen, keep = set(), []
        for c in cines:
            if c.cine_id in seen:
                notes.append(dict(file=item.name, error="DuplicateView",
                                  message=f"a second {c.view} cine; kept the first"))
                continue
            seen.add(c.cine_id)
            _qa(c, notes, item.name)
            keep.append(c)
        for c in keep:
            written.append(store.write(c, overwrite=True))
        atomic_write_json(_marker(store.root, source, item.subject),
                          dict(subject=item.subject, source=source, cines=[c.cine_id for c in keep]))
        res = dict(ok=True, subject=item.subject, cines=[c.cine_id for c in keep])
    except Exception as e:  # a batch never stops at a bad subject: the error becomes a report row
        for p in written:  # all or nothing per subject: no cine of a failed subject stays behind
            shutil.rmtree(p, ignore_errors=True)
        row = note(e, getattr(e, "path", None) or item.name)
        res = dict(ok=False, subject=item.subject, bad=dict(row, subject=item.subject))
    res["notes"] = [dict(n, subject=item.subject) for n in notes]
    return json.loads(_scrub(json.dumps(res), item))


# ---------------------------------------------------------------- splits


def update_splits(store: CohortStore, seed: int = 0, fractions=FRACTIONS) -> dict[str, str]:
    """Keep existing assignments; split new subjects stratified on the first of `STRATA` their meta has."""
    m = store.manifest(refresh=True)
    if m.empty:
        return {}
    subjects = sorted(set(m["subject"].astype(str)))
    old = {s: v for s, v in store.splits().items() if s in subjects}
    col = next((c for c in STRATA if c in m.columns), None)
    strata = dict(zip(m["subject"].astype(str), m[col].astype(str), strict=True)) if col else {}
    new = stratified_split({s: strata.get(s, "all") for s in subjects if s not in old}, seed, fractions)
    splits = {**old, **new}
    store.write_splits(splits)
    return splits


# ---------------------------------------------------------------- the driver


def _run(source: str, todo: list[Item], root: Path, workers: int, progress: bool):
    """Yield each item's result, serially or over a process pool."""
    bar = dict(total=len(todo), desc=f"ingest {source}", disable=not progress, unit="subject")
    if workers <= 1 or len(todo) <= 1:
        for it in tqdm(todo, **bar):
            yield ingest_item(source, it, root)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
        futs = [ex.submit(ingest_item, source, it, root) for it in todo]
        for f in tqdm(as_completed(futs), **bar):
            yield f.result()


def ingest(source: str, path: str | Path, out: str | Path, *, pseudonym_file: str | Path | None = None,
           workers: int = 1, progress: bool = True, limit: int | None = None, seed: int = 0,
           fractions: tuple[float, float, float] = FRACTIONS, **source_opts) -> CohortStore:
    """Ingest a source folder into the cohort store at `out`; bad subjects go to `store.report()`, re-runs resume.

    source: one of SOURCES. pseudonym_file: CSV mapping private ids to pseudonyms (required for ukbb, optional
    for dicom/nifti; kept outside `out`). limit: first N subjects only. seed/fractions: train/valid/test split.
    source_opts: passed to the source's `find` (e.g. dicom `subject_level=0`).
    """
    t0 = time.perf_counter()
    mod, path, root = source_module(source), Path(path), Path(out)
    if not path.exists():
        raise IngestError(path, "input folder not found")
    store = CohortStore(root)
    items = assign_subjects(mod.find(path, **source_opts), source, pseudonym_file, root)
    items = sorted(items, key=lambda it: it.subject)[:limit]
    todo = [it for it in items if not is_done(store, source, it)]
    bad, notes, n_ok, n_cines = [], [], 0, 0
    for res in _run(source, todo, root, workers, progress):
        notes += res["notes"]
        if res["ok"]:
            n_ok, n_cines = n_ok + 1, n_cines + len(res["cines"])
        else:
            bad.append(res["bad"])
    store.write_report(bad, extra=dict(source=source, n_subjects=len(items), n_already_done=len(items) - len(todo),
                                       n_ingested=n_ok, n_cines_written=n_cines, notes=notes,
                                       seconds=round(time.perf_counter() - t0, 2)))
    update_splits(store, seed, fractions)
    store.manifest(refresh=True)
    return store
