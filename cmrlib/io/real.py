"""The real subjects under a data root, found in one place for every notebook: the UK Biobank demo's long-axis cines
(with its pipeline's pseudo-labels), ACDC's training patients stored with a full 4D cine beside their labelled
ED/ES frames, and the Siemens DICOM sample's 2CH and 4CH cines. Each comes with the reference its labels give and
what that reference is. The real SAX cohort of cropped cines (`acdc-cine/`) has a reader of its own
(`real_sax_cohort`): its truths come from `reference.csv`, not its cines."""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..measure import MeasureError, la_measures
from ..record import Cine
from ..skipped import StudySkipped
from ..utils import data_root

DICOM_SAMPLE = "mvnet-dicom-sample"  # its view folders: 2ch/, 4ch/
ACDC_TRAINING = Path("acdc") / "training"
PSEUDO, MANUAL, NONE = "pseudo-labels (a network's)", "manual masks (ED/ES)", "none"
REAL_SAX = "acdc-cine"  # the real SAX cohort's folder under the data root: ACDC's cropped cines + reference.csv
REAL_SAX_STORE = "real_sax"  # its store in a run folder, shared by every notebook that uses it
SECOND_OBSERVER = ("LVEDV", "LVESV", "LVEF")  # the real SAX table's `<measure>_second`: an exam's other segmentation


def real_sax_cohort(root: Path | None, out: Path, seed: int = 0, k: int = 5, per_group: int | None = None):
    """The real SAX cohort: ACDC's cine patients ingested once into `out` (a later call resumes and reuses it),
    their truths from the full manual labels (`reference.csv`, never the crop's masks), one exam once (ACDC segmented
    patient 074's exam twice, as 076: the first is kept), and each patient's fold of a `k`-fold split stratified by
    diagnosis; `per_group`: only the first patients (by id) of each diagnosis, for a quick run. The exam's second
    segmentation's truths ride along as `<measure>_second` (`SECOND_OBSERVER`). (store, subjects table: subject, group, fold and the
    truths); `StudySkipped` without the folder or with too few patients."""
    from ..store import grouped_folds
    from .acdc import REFERENCE, REFERENCE_FROM, SAME_EXAM, exam_of
    from .batch import ingest

    folder = None if root is None else Path(root) / REAL_SAX
    if folder is None or not (folder / REFERENCE).is_file():
        raise StudySkipped(f"no real SAX cines: {REAL_SAX}/{REFERENCE} is not under "
                           f"{'the data root' if root is None else Path(root).name} (set data_dir or $CMRLIB_DATA)")
    store = ingest("acdc", folder, out, seed=seed, progress=False)
    man = store.manifest()
    man = man[(man.view == "SAX") & (man.truth_from == REFERENCE_FROM)].drop_duplicates("subject")
    first = man.subject.map(exam_of) == man.subject  # one exam segmented twice counts once: its first segmentation
    second = {exam_of(r.subject): r for r in man[~first].itertuples()}  # the other, kept as a second observer
    man = man[first]
    if per_group is not None:
        man = man.sort_values("subject").groupby("group").head(int(per_group))
    if len(man) < 2 * k:
        raise StudySkipped(f"{len(man)} real SAX patients with reference truths: fewer than two per fold of {k}")
    strata = dict(zip(man.subject, man.group))
    folds = grouped_folds(strata, k, seed, SAME_EXAM)
    cols = ["subject", "cine_id", "group", "n_frames", "ed", "es", "LVEDV", "LVESV", "LVEF", "RVEF", "LVM",
            "bsa_m2", "lv_in_crop"]
    table = man[cols].assign(fold=man.subject.map(folds)).sort_values("subject").reset_index(drop=True)
    for k in SECOND_OBSERVER:
        table[f"{k}_second"] = table.subject.map(lambda s, k=k: getattr(second[s], k) if s in second else float("nan"))
    return store, table


def rolled_cine(store, row, seed: int) -> Cine:
    """A real SAX cohort cine (`row`: its subjects-table row) rolled by an offset drawn from the run seed and the
    patient (ACDC's ED is frame 0, which a detector must not learn to expect): every notebook reads a patient's cine
    with the same roll, so one detector has one number wherever it is scored."""
    from ..utils import rng, seed_for

    return store.read(row.cine_id).rolled(rng(seed_for(seed, "real shift", row.subject)).integers(int(row.n_frames)))


@dataclass
class RealSubject:
    """One real subject's cines of the views asked for, the reference measures its labels give, and their kind."""

    name: str                                     # a pseudonym or the public dataset's own patient number
    cines: list[Cine]
    reference: dict = field(default_factory=dict)
    reference_is: str = NONE

    def named(self) -> list[tuple[str, Cine]]:
        """(name, cine) per cine, e.g. 'ukbb-demo-1 4CH'."""
        return [(f"{self.name} {c.view}", c) for c in self.cines]


def real_subjects(data_dir: str | Path | None, views: Sequence[str] = ("SAX", "2CH", "3CH", "4CH"),
                  labelled: bool = False) -> list[RealSubject]:
    """Every real subject under the data root (`data_dir`, else $CMRLIB_DATA) with a cine of `views` (only cines
    with labels when `labelled`): the UK Biobank demo's, ACDC's full-cine patients', the DICOM sample's, in that
    order. What is absent is printed without naming a folder (a data root may hold a person's name)."""
    root = data_root(data_dir)
    if root is None:
        print("real cines skipped: no data_dir and $CMRLIB_DATA is not set")
        return []
    found = [*_ukbb_demo(root, views), *_acdc_full(root, views), *_dicom_sample(root, views)]
    out = []
    for s in found:
        s.cines = [c for c in s.cines if c.view in views and (not labelled or c.labels is not None)]
        if s.cines:
            out.append(s)
    if not out:
        print(f"real cines skipped: no real {'/'.join(views)} cine under the data root")
    return out


def real_cines(data_dir: str | Path | None, views: Sequence[str], labelled: bool = False) -> list[tuple[str, Cine]]:
    """(name, cine) of every real cine of `views` (`real_subjects`, flattened)."""
    return [pair for s in real_subjects(data_dir, views, labelled) for pair in s.named()]


def _ukbb_demo(root: Path, views: Sequence[str]) -> list[RealSubject]:
    """The demo's subjects: long-axis cines with pseudo-labels; reference from its SAX ED/ES segmentation and the
    biplane LA of its 2CH + 4CH pseudo-labels."""
    from .ukbb_cardiac import LAYOUT, demo_folders, read_subject, sax_measures

    if not (root / "ukbb-demo").is_dir() or not set(views) & set(LAYOUT):
        return []
    out = []
    for name, folder in demo_folders(root / "ukbb-demo").items():
        cines = read_subject(folder, name, tuple(v for v in LAYOUT if v in views or v in ("2CH", "4CH")))
        ref = sax_measures(folder)
        lax = {c.view: c for c in cines if c.labels is not None}
        if {"2CH", "4CH"} <= set(lax):
            with contextlib.suppress(MeasureError):
                ref |= la_measures(lax["2CH"].labels, lax["2CH"].spacing, lax["4CH"].labels, lax["4CH"].spacing)
        out.append(RealSubject(name, cines, ref, PSEUDO))
    return out


def _acdc_full(root: Path, views: Sequence[str]) -> list[RealSubject]:
    """ACDC's training patients stored with their full 4D cine: the SAX cine with its manual ED/ES masks, and the
    volumes those masks give as the reference."""
    from .acdc import read_acdc_patient

    if "SAX" not in views or not (root / ACDC_TRAINING).is_dir():
        return []
    out = []
    for folder in sorted(p for p in (root / ACDC_TRAINING).iterdir() if (p / f"{p.name}_4d.nii.gz").exists()):
        c = read_acdc_patient(folder)
        out.append(RealSubject(f"ACDC {folder.name}", [c], dict(c.meta), MANUAL))
    return out


def _dicom_sample(root: Path, views: Sequence[str]) -> list[RealSubject]:
    """The DICOM sample's cines of the asked views (2CH, 4CH), without labels."""
    from .dicom import read_dicom_series

    cines = [c for v in ("2ch", "4ch") if v.upper() in views and (root / DICOM_SAMPLE / v).is_dir()
             for c in read_dicom_series(root / DICOM_SAMPLE / v)]
    return [RealSubject("DICOM", cines)] if cines else []
