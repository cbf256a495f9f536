"""The one ingest loop every source shares: find subjects, read each, write atomically, report, resume, split.

A source module provides `find(root, **opts) -> list[Item]` and `read(item, notes) -> list[Cine]`; this driver
does the rest. A subject is complete once all its cines are in the store and a marker
`<cohort>/.ingest/<source>/<subject>.json` says so; a re-run skips complete subjects and retries the rest.

Guarantees (each pinned by tests/test_io_hostile.py and tests/test_store_hostile.py): nothing is written outside
the cohort folder (subject ids are checked to one safe form here and again by the store's writer, and no planted
link inside is followed); two inputs that map to one subject are both refused; a cohort has one writer at a time,
holds one source (another is refused), and leftovers of a killed run are cleaned when the next one starts; a marker
counts only when its cines are intact, so damage is ingested again; the splits are a pure function of the
participants and the seed, so an interrupted and resumed run ends with the store an uninterrupted one writes;
`report.json` and the manifest describe what is on disk while a run goes on; workers stop with their parent.
Subjects run as Dask tasks (`cmrlib.dask_tasks`) when workers > 1 or a scheduler is named.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import re
import shutil
import time
from collections import defaultdict
from functools import partial
from pathlib import Path
from types import ModuleType

import numpy as np

from ..dask_tasks import client, map_tasks
from ..record import RecordError, is_safe_id
from ..store import SPLIT_FRACTIONS, CohortStore, stratified_split
from ..utils import atomic_write_json
from .common import Item, loop_reason, note
from .errors import IngestError, MetadataError
from .pseudonyms import PseudonymError, Pseudonyms
from .qa import anatomy_ok

SOURCES = ("acdc", "mnms", "mnms2", "ukbb", "dicom", "nifti")
PSEUDONYMS = {"ukbb": "required", "dicom": "optional", "nifti": "optional"}  # sources whose ids may identify people
PREFIX = {"ukbb": "ukbb", "dicom": "sub", "nifti": "sub"}
STRATA = ("group", "pathology", "disease")  # meta keys splits are stratified on, first present wins
REPORT_EVERY_S = 5.0  # report.json is rewritten at most this often while a run goes on


def source_module(source: str) -> ModuleType:
    """The module implementing a source (`cmrlib.io.<source>`)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")
    return importlib.import_module(f"{__package__}.{source}")


# ---------------------------------------------------------------- inputs, subjects and resume state


def check_locations(path: Path, out: Path) -> None:
    """The input must be an existing folder and the cohort a folder (or not yet there)."""
    if not path.exists():
        raise IngestError(path, "input folder not found")
    if not path.is_dir():
        raise IngestError(path, "is a file; give the folder that holds the source's subjects")
    if out.exists() and not out.is_dir():
        raise IngestError(out, "the cohort folder (--out) is an existing file")


def pseudonyms_for(source: str, pseudonym_file, out) -> Pseudonyms | None:
    """The pseudonym table a source uses (checked before anything is read): required for ukbb, kept outside `out`."""
    need = PSEUDONYMS.get(source)
    if need == "required" and pseudonym_file is None:
        raise PseudonymError(f"{source}: subject ids are private; pass pseudonym_file= (--pseudonyms FILE: a CSV you "
                             f"keep, outside the cohort folder) to hold the id -> pseudonym mapping")
    return Pseudonyms(pseudonym_file, PREFIX[source]).check_outside(out) if need and pseudonym_file else None


def assign_subjects(items: list[Item], ps: Pseudonyms | None) -> list[Item]:
    """Give every item its stored subject id: a pseudonym where the source's ids may identify a person."""
    if ps is not None:
        names = ps.assign([it.key for it in items])
        for it in items:
            it.subject, it.private = names[it.key] + it.suffix, True
    return items


def check_subjects(items: list[Item], root: Path) -> tuple[list[Item], list[dict]]:
    """Items whose subject id is safe and theirs alone; the rest as bad rows naming the file(s) the id came from.

    An id must be letters, digits, '-' and '_' (it becomes a folder name); two inputs mapping to one id (e.g.
    `patient001/` and `patient001_old/`) would overwrite each other, so neither is ingested.
    """
    bad, by_id = [], defaultdict(list)
    for it in items:
        if is_safe_id(it.subject):
            by_id[it.subject].append(it)
        else:
            err = MetadataError(it.source_of_id, f"subject id {it.subject!r} is not letters, digits, '-' and '_' "
                                                 f"(at most 64): refused")
            bad.append(_bad_row(err, it, root))
    ok = []
    for subject, group in by_id.items():
        if len(group) == 1:
            ok.append(group[0])
            continue
        for it in group:  # a private input (an identifying folder name) is never named in another's row
            others = ", ".join("another input" if o.private else _rel(o.source_of_id, root)
                               for o in group if o is not it)
            err = MetadataError(it.source_of_id, f"maps to subject {subject} as {others} does: rename one")
            bad.append(_bad_row(err, it, root))
    return sorted(ok, key=lambda it: it.subject), bad


def _marker(root: Path, source: str, subject: str) -> Path:
    return CohortStore(root).own(root / ".ingest" / source / f"{subject}.json")


def is_done(store: CohortStore, source: str, item: Item) -> bool:
    """A subject is complete when its marker exists and every cine it lists is intact in the store (a cine that
    lost an array makes the subject ingested again)."""
    m = _marker(store.root, source, item.subject)
    if not m.is_file():
        return False
    try:
        ids = json.loads(m.read_text())["cines"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return False
    return all(store.intact(i) for i in ids)


# ---------------------------------------------------------------- report rows: named files, no identifiers


def _rel(path, root: Path) -> str:
    """A file as reports name it: relative to the input folder (absolute source paths may identify a person)."""
    p = Path(str(path))
    try:
        return str(p.resolve().relative_to(root.resolve())) if p.is_absolute() else str(p)
    except ValueError:
        return p.name


def _hide(text: str, key: str, pseudonym: str) -> str:
    """`key` replaced by `pseudonym` where it stands as a whole token (not inside another word or number)."""
    if len(key) < 3:  # too short to identify anyone, and as a substring it would mangle every message
        return text
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", pseudonym, text)


def scrub(row: dict, item: Item) -> dict:
    """A report row with a private key (EID, identifying folder name) replaced by the subject's pseudonym, by
    structure: path components of `file` that are or start the key, whole tokens of the other text fields; keys and
    other values untouched. Before serialising (JSON escapes non-ASCII, after which 'MÜLLER' no longer matches)."""
    if not (item.private and item.key):
        return row
    key, pseudonym = str(item.key), str(item.subject)
    out = dict(row)
    if isinstance(out.get("file"), str):
        parts = Path(out["file"]).parts
        out["file"] = str(Path(*[pseudonym + p[len(key):] if p == key or p.startswith(key + "_") or
                                 p.startswith(key + ".") else p for p in parts])) if parts else out["file"]
    for field in ("message", "error"):
        if isinstance(out.get(field), str):
            out[field] = _hide(out[field], key, pseudonym)
    return out


def looped(root: Path, items: list[Item]) -> list[dict]:
    """A bad row for each link under the source folder that loops or leads back above it (`loop_reason`) and no
    subject was read from: recorded, never left out unseen."""
    if not root.is_dir():
        return []
    read = {p for it in items for p in it.paths}
    return [dict(file=p.name, subject="", error="IngestError", message=why)
            for p in sorted(root.iterdir()) if p not in read and (why := loop_reason(p))]


def _bad_row(err: Exception, item: Item, root: Path) -> dict:
    row = note(err, getattr(err, "path", None) or item.name)
    return scrub(dict(row, file=_rel(row["file"], root), subject=item.subject), item)


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


def _no_cine(item: Item, notes: list) -> IngestError:
    """'No cine found', with the reasons the reader recorded (which file, why it was not a cine)."""
    if not notes:
        return IngestError(item.name, "no cine found")
    why = "; ".join(f"{Path(n['file']).name}: {n['message']}" for n in notes[:3])
    return IngestError(notes[0]["file"], f"no cine found ({len(notes)} series rejected: {why})")


def read_item(source: str, item: Item) -> tuple[list, list]:
    """The subject's cines (one per view, QA-flagged) and the reader's notes; typed errors name the file."""
    notes = []
    try:
        cines = source_module(source).read(item, notes)
    except RecordError as e:  # a reader built an inconsistent record: still a fault of this item's files
        raise MetadataError(item.name, str(e)) from e
    if not cines:
        raise _no_cine(item, notes)
    seen, keep = set(), []
    for c in cines:
        if c.cine_id in seen:
            notes.append(dict(file=item.name, error="DuplicateView", message=f"a second {c.view} cine; kept the first"))
            continue
        seen.add(c.cine_id)
        if item.suffix:
            c.meta["participant"] = item.participant
        _qa(c, notes, item.name)
        keep.append(c)
    return keep, notes


def ingest_item(source: str, item: Item, root: str | Path, input_root: str | Path = "/") -> dict:
    """Read one subject and write its cines; never raises: returns ok/cines/notes or the error as a report row."""
    store, written, notes, input_root = CohortStore(root), [], [], Path(input_root)
    try:
        cines, notes = read_item(source, item)
        for c in cines:
            written.append(store.write(c, overwrite=True))
        atomic_write_json(_marker(store.root, source, item.subject),
                          dict(subject=item.subject, source=source, cines=[c.cine_id for c in cines]))
        res = dict(ok=True, subject=item.subject, cines=[c.cine_id for c in cines])
    except Exception as e:  # a batch never stops at a bad subject: the error becomes a report row
        for p in written:  # all or nothing per subject: no cine of a failed subject stays behind
            shutil.rmtree(p, ignore_errors=True)
        res = dict(ok=False, subject=item.subject, bad=_bad_row(e, item, input_root))
    res["notes"] = [scrub(dict(n, file=_rel(n.get("file", ""), input_root), subject=item.subject), item)
                    for n in notes]
    return res


# ---------------------------------------------------------------- splits


def update_splits(store: CohortStore, seed: int = 0, fractions=SPLIT_FRACTIONS) -> dict[str, str]:
    """Every subject's split, computed afresh from the whole cohort: a pure function of the participants, their
    strata (the first of `STRATA` their meta has) and the seed, whatever order the subjects arrived in or how often
    an ingest was interrupted.

    The unit is the participant (`meta.participant`, else the subject): repeat visits of one person share a split,
    so no person is in both training and test.
    """
    m = store.manifest(split=False)
    if m.empty:
        return {}
    subj = m["subject"].astype(str)
    unit = (m["participant"].astype("string").fillna(subj) if "participant" in m.columns else subj).astype(str)
    of = dict(zip(subj, unit, strict=True))
    col = next((c for c in STRATA if c in m.columns), None)
    strata = dict(zip(unit, m[col].astype(str), strict=True)) if col else {}
    by_unit = stratified_split({u: strata.get(u, "all") for u in sorted(set(unit))}, seed, fractions)
    splits = {s: by_unit[u] for s, u in sorted(of.items())}
    store.write_splits(splits)
    return splits


def source_identity(source: str, path: Path, source_opts: dict) -> dict:
    """What a cohort ingested from `path` is: the source, a hash of the input folder (never the path: it may name
    a person) and the reader's options."""
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return {"source": source, "input": where, "options": {k: source_opts[k] for k in sorted(source_opts)}}


# ---------------------------------------------------------------- the driver


def _run(source: str, todo: list[Item], root: Path, input_root: Path, c, progress: bool):
    """Yield each item's result: in this process, or one Dask task per subject (a task lost with its worker is
    run again by Dask; one that still fails becomes the subject's report row)."""
    task = partial(ingest_item, source, root=str(root), input_root=str(input_root))
    for it, res, err in map_tasks(task, todo, c, desc=f"ingest {source}", unit="subject", progress=progress):
        yield res if err is None else dict(ok=False, subject=it.subject, bad=_bad_row(err, it, input_root), notes=[])


def ingest(source: str, path: str | Path, out: str | Path, *, pseudonym_file: str | Path | None = None,
           workers: int = 1, scheduler=None, progress: bool = True, limit: int | None = None, seed: int = 0,
           fractions: tuple[float, float, float] = SPLIT_FRACTIONS, **source_opts) -> CohortStore:
    """Ingest a source folder into the cohort store at `out`; bad subjects go to `store.report()`, re-runs resume.

    source: one of SOURCES. pseudonym_file: CSV mapping private ids to pseudonyms (required for ukbb, optional
    for dicom/nifti; kept outside `out`). workers / scheduler: one Dask task per subject (`cmrlib.dask_tasks.client`:
    a LocalCluster of `workers` processes, or the scheduler named); workers=1 without one runs here. limit: first N
    subjects only. seed/fractions: train/valid/test split.
    source_opts: passed to the source's `find` (e.g. dicom `subject_level=0`).
    Raises IngestError / PseudonymError / ValueError for a mistake in the call itself (paths, source, no subject).
    """
    t0 = time.perf_counter()
    mod, path, root = source_module(source), Path(path), Path(out)
    check_locations(path, root)
    ps = pseudonyms_for(source, pseudonym_file, root)
    items = mod.find(path, **source_opts)
    if not items:
        raise IngestError(path, f"no {source} subject found in this folder (see cmrlib/io/README.md for the layout)")
    store = CohortStore(root)
    with client(scheduler, workers) as c, store.writer():  # an unreachable scheduler stops it before any write
        store.claim(source_identity(source, path, source_opts))
        store.own(root / ".ingest" / source)
        store.clean_temporaries()
        update_splits(store, seed, fractions)  # heals what a killed run left: cines without a split, a damaged file
        items, refused = check_subjects(assign_subjects(items, ps), path)
        refused += looped(path, items)
        items = items[:limit]
        todo = [it for it in items if not is_done(store, source, it)]
        bad, notes, n_ok, n_cines, last = list(refused), [], 0, 0, 0.0
        info = dict(source=source, n_subjects=len(items) + len(refused), n_already_done=len(items) - len(todo))
        fresh = []  # cines written since the manifest was last appended to

        def report(status):
            store.append_manifest(fresh)
            fresh.clear()
            store.write_report(bad, extra=dict(info, status=status, n_ingested=n_ok, n_cines_written=n_cines,
                                               notes=notes, seconds=round(time.perf_counter() - t0, 2)))
        report("running")
        for res in _run(source, todo, root, path, c, progress):
            notes += res["notes"]
            if res["ok"]:
                n_ok, n_cines = n_ok + 1, n_cines + len(res["cines"])
                fresh += res["cines"]
            else:
                bad.append(res["bad"])
            if time.perf_counter() - last > REPORT_EVERY_S:
                report("running")
                last = time.perf_counter()
        store.append_manifest(fresh)
        fresh.clear()
        update_splits(store, seed, fractions)
        report("complete")
    return store
