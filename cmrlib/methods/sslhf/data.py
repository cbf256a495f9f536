"""SSLHF's inputs: HFrEF/HFpEF labels (LVEF < 50 %), LV-centred SAX patch cines (one per slice that shows the LV),
patient-grouped stratified folds, the flips and rotations that augment a patch, and the datasets the restoration
proxy and the classifier draw from."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from fastprogress.fastprogress import progress_bar
from scipy import ndimage

from ...labels import LV
from ...measure import resample_cycle
from ...tables import TableError, one_of, percent, read_table, subject
from ...labels import NoLabels
from ...record import Cine
from ...skipped import StudySkipped
from ...store import CohortStore, fold_roles
from ...transforms.corrupt import corrupt, random_corruption
from ...transforms.geometry import Affine2D
from ...transforms.intensity import clip_zscore
from ...utils import load_arrays, rng, save_arrays

HFREF_BELOW = 50.0  # LVEF (%) below which a heart-failure patient is HFrEF, at or above it HFpEF (the paper's rule)
CLASSES = {0: "HFpEF", 1: "HFrEF"}  # the positive class is HFrEF


class HFLabelsError(TableError):
    """Heart-failure labels that cannot be used (no phantom LVEF and no table, too few patients per class; the
    table's own errors are TableErrors)."""


class PatchError(ValueError):
    """A SAX cine that gives no patch (too few frames, not a stack, no slice with the LV)."""


# ---------------------------------------------------------------- labels


def hf_class(lvef) -> np.ndarray:
    """1 (HFrEF) where LVEF < 50 %, else 0 (HFpEF)."""
    return (np.asarray(lvef, float) < HFREF_BELOW).astype(int)


def _from_table(labels_csv: str | Path) -> pd.DataFrame:
    """subject, lvef (NaN where only a class is given), hfref from a user's table (columns subject and lvef or
    hf_class = HFrEF / HFpEF)."""
    tab = read_table(labels_csv, {"subject": subject, "lvef": percent, "hf_class": one_of(*CLASSES.values())},
                     any_of=("lvef", "hf_class"), what="heart-failure labels table")
    tab = tab.reindex(columns=["subject", "lvef", "hf_class"])
    lvef = pd.to_numeric(tab.lvef)
    cls = tab.hf_class.map({v: float(k) for k, v in CLASSES.items()})
    hfref = pd.Series(np.where(lvef.notna(), hf_class(lvef.fillna(100)), cls), index=tab.index)
    return pd.DataFrame(dict(subject=tab.subject, lvef=lvef, hfref=hfref))


def hf_labels(store: CohortStore, labels_csv: str | Path | None = None, ef_column: str = "lv_ef_measured"
              ) -> pd.DataFrame:
    """subject, lvef, hfref (1 HFrEF, 0 HFpEF), lvef_true (phantom only) for the store's heart-failure patients
    with a SAX cine: the phantom's clinically measured LVEF (`ef_column`) of its HF patients, or a user's table.
    Subjects the table names but the store lacks are in `.attrs["unknown"]`; SAX subjects without a label (or,
    in the phantom, without heart failure) in `.attrs["unlabelled"]`: they may serve the self-supervised proxy."""
    m = store.manifest()
    sax = m[m.view == "SAX"].drop_duplicates("subject").set_index("subject")
    if labels_csv is None:
        if "hf_class" not in sax or ef_column not in sax:
            raise HFLabelsError(f"the store has no hf_class / {ef_column} columns (not a phantom cohort with measured "
                                "LVEF); pass labels_csv with columns subject and lvef or hf_class")
        hf = sax[sax.hf_class.isin(["HFrEF", "HFpEF"])]
        lvef = pd.to_numeric(hf[ef_column], errors="coerce")
        out = pd.DataFrame(dict(subject=hf.index, lvef=lvef.to_numpy(), hfref=hf_class(lvef.fillna(100)),
                                lvef_true=pd.to_numeric(hf.lv_ef, errors="coerce").to_numpy()))
        out = out[lvef.notna().to_numpy()]
        unknown: list[str] = []
    else:
        tab = _from_table(labels_csv)
        unknown = sorted(set(tab.subject) - set(sax.index))
        out = tab[tab.subject.isin(sax.index) & tab.hfref.notna()].assign(lvef_true=np.nan)
    out = out.astype({"hfref": int}).sort_values("subject").reset_index(drop=True)
    out.attrs.update(unknown=unknown, unlabelled=sorted(set(sax.index) - set(out.subject)))
    return out


@dataclass(frozen=True)
class HFCohort:
    """The heart-failure patients' store and labels, the unlabelled pool's store and cines, the phantom's
    phenotypes (None for a real cohort)."""

    hf_store: object
    labels: pd.DataFrame
    pool_store: object
    pool_ids: list
    phenotype: pd.Series | None


def hf_cohort(store: CohortStore, labels_csv: str | Path | None, made: CohortStore | None) -> HFCohort:
    """The heart-failure patients and their classes, from the phantom HF cohort `made` (the store's SAX cines are
    the pool) or from `labels_csv` over the store (its unlabelled SAX subjects are the pool); `StudySkipped` when
    neither gives a patient."""
    phenotype = None
    if labels_csv is None:
        if made is None:
            raise StudySkipped("this store holds real cines but no heart-failure labels. Notebook 05 needs "
                               "labels_csv: a CSV with a `subject` column (the store's subject ids) and either "
                               "`lvef` (LVEF in %, HFrEF below 50) or `hf_class` (HFrEF / HFpEF), one row per "
                               "heart-failure patient with a SAX cine. Nothing was trained.")
        hf_store, labels, pool_ids = made, hf_labels(made), store.select(view="SAX")
        phenotype = made.manifest().drop_duplicates("subject").set_index("subject").hf_class
    else:
        hf_store, labels = store, hf_labels(store, labels_csv)
        if not len(labels):
            raise HFLabelsError(f"labels_csv {Path(labels_csv).name}: none of its {len(labels.attrs['unknown'])} "
                                "subject(s) has a SAX cine in this cohort; nothing was trained (the table's "
                                "`subject` column must hold the store's ids)")
        unlabelled = set(labels.attrs["unlabelled"])
        pool_ids = [c for c in store.select(view="SAX") if c.rsplit("_", 1)[0] in unlabelled]
    if not len(labels):
        raise StudySkipped("no heart-failure patients in this run (see the cohort step)")
    return HFCohort(hf_store, labels, store, pool_ids, phenotype)


def cohort_table(labels: pd.DataFrame) -> pd.DataFrame:
    """Heart-failure patients per class with their LVEF's mean, SD and range."""
    counts = labels.groupby("hfref").agg(patients=("subject", "size"), lvef_mean=("lvef", "mean"),
                                         lvef_sd=("lvef", "std"), lvef_min=("lvef", "min"), lvef_max=("lvef", "max"))
    counts.index = [CLASSES[i] for i in counts.index]
    return counts


def patch_counts(labels: pd.DataFrame, patch_subjects) -> pd.DataFrame:
    """Patients and patches per class (`patch_subjects`: the patient of each patch)."""
    used = labels.assign(patches=labels.subject.map(pd.Series(patch_subjects).value_counts()))
    return used.groupby("hfref").agg(patients=("subject", "size"), patches=("patches", "sum")).rename(index=CLASSES)


def flipped_labels(labels: pd.DataFrame) -> tuple[int, int]:
    """Patients whose true LVEF lies within 5 points of the rule's threshold, and labels that measurement error puts
    on the other side of the truth (phantom only)."""
    wrong = int(((labels.lvef_true < HFREF_BELOW) != (labels.hfref == 1)).sum())
    return int((labels.lvef_true - HFREF_BELOW).abs().lt(5).sum()), wrong


# ---------------------------------------------------------------- patches


def lv_slices(ed_labels: np.ndarray, min_px: int = 20) -> list[int]:
    """Slices (base to apex order of the stack) whose ED segmentation holds at least `min_px` LV pixels."""
    area = (np.asarray(ed_labels) == LV).reshape(len(ed_labels), -1).sum(1)
    return [int(z) for z in np.flatnonzero(area >= min_px)]


def pick_slices(slices: Sequence[int], n: int | None) -> list[int]:
    """At most `n` slices spread evenly from the first to the last (all when n is None)."""
    slices = list(slices)
    if n is None or len(slices) <= n:
        return slices
    return [slices[int(round(i))] for i in np.linspace(0, len(slices) - 1, n)]


def lv_patch(frames: np.ndarray, centre: tuple[float, float], pixel_mm: float, size: int = 32,
             patch_mm: float = 3.0, n_frames: int = 32, clip_pct: float = 99.5) -> np.ndarray:
    """One slice's cine (T, H, W) from ED -> (n_frames, size, size): a square of size * patch_mm mm around the LV
    centre (x, y), the cycle resampled to n_frames, intensities clipped at their `clip_pct` percentile (the
    paper's fixed threshold, here per patch as scanner units differ) and z-scored."""
    aff = Affine2D(size=(size, size), center=(float(centre[0]), float(centre[1])), scale=pixel_mm / patch_mm)
    crop = aff.image(np.asarray(frames, np.float32))
    return clip_zscore(resample_cycle(crop, n_frames), lo=0.0, hi=clip_pct)


@dataclass(frozen=True)
class PatchSettings:
    """`preprocess`'s settings, declared once: the Study takes them from its parameters (`config_from`), its
    Predictor carries them beside every fold's classifier."""
    size: int
    patch_mm: float
    n_frames: int
    min_frames: int
    max_slices: int | None
    min_lv_px: int
    clip_pct: float


def preprocess(cine: Cine, ed_labels: np.ndarray, size: int = 32, patch_mm: float = 3.0, n_frames: int = 32,
               min_frames: int = 16, max_slices: int | None = 3, min_lv_px: int = 20, clip_pct: float = 99.5
               ) -> tuple[np.ndarray, list[int]]:
    """A SAX stack (T, Z, H, W) and its ED segmentation (Z, H, W) -> patches (N, n_frames, size, size) of up to
    `max_slices` LV slices, each centred on its own LV, with their slice indices; PatchError names the problem."""
    if not cine.is_stack:
        raise PatchError(f"{cine.cine_id}: not a SAX stack (pixels {cine.pixels.shape})")
    if cine.n_frames < min_frames:
        raise PatchError(f"{cine.cine_id}: {cine.n_frames} frames, fewer than the {min_frames} a patch needs")
    slices = pick_slices(lv_slices(ed_labels, min_lv_px), max_slices)
    if not slices:
        raise PatchError(f"{cine.cine_id}: no slice with the LV (at least {min_lv_px} px at ED)")
    ed = int(cine.ed or 0)
    pix = np.roll(cine.pixels, -ed, axis=0)
    patches = []
    for z in slices:
        row, col = ndimage.center_of_mass(ed_labels[z] == LV)
        patches.append(lv_patch(pix[:, z], (col, row), cine.spacing[-1], size, patch_mm, n_frames, clip_pct))
    return np.stack(patches).astype(np.float32), slices


def ed_frame(cine: Cine) -> Cine:
    """The ED frame of a cine as a one-frame cine (what the segmenter needs to find the LV)."""
    ed = int(cine.ed or 0)
    own = cine.labels is not None and bool(cine.labelled[ed])
    return Cine(subject=cine.subject, view=cine.view, pixels=cine.pixels[ed:ed + 1], spacing=cine.spacing,
                frame_times=cine.frame_times[ed:ed + 1], source=cine.source,
                labels=cine.labels[ed:ed + 1] if own else None)


@dataclass
class HFPatches:
    """LV patches of SAX cines: `x` (N, T, S, S) float32, each patch's `subject` and `slice`, and the `failures`
    (cine, subject, reason) of cines that gave none."""

    x: np.ndarray
    subject: np.ndarray
    slice: np.ndarray
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["cine_id", "subject", "reason"]))

    def __len__(self):
        return len(self.x)

    def take(self, subjects) -> "HFPatches":
        """The patches of these subjects (in the set's order)."""
        keep = np.isin(self.subject, list(subjects))
        return HFPatches(self.x[keep], self.subject[keep], self.slice[keep], self.failures)

    def save(self, path: str | Path, settings: dict) -> Path:
        """Write atomically with the settings that made it."""
        return save_arrays(path, dict(x=self.x, subject=self.subject.astype(str), slice=self.slice), settings,
                           failures=self.failures.to_dict("records"))

    @classmethod
    def load(cls, path: str | Path, settings: dict) -> "HFPatches | None":
        """The saved set if it was made with these settings, else None."""
        saved = load_arrays(path, settings)
        if saved is None:
            return None
        a, meta = saved
        return cls(a["x"], a["subject"].astype(str), a["slice"],
                   pd.DataFrame(meta["failures"], columns=["cine_id", "subject", "reason"]))


def preprocess_store(store: CohortStore, segment: Callable[[Cine], np.ndarray], cine_ids: Sequence[str],
                     progress: bool = True, **prep) -> HFPatches:
    """`preprocess` every listed SAX cine, its LV found by `segment` on the ED frame (`segmentation.anatomy`); a cine
    that fails is recorded with its reason and the others go on."""
    xs, subs, slices, fails = [], [], [], []
    for cid in progress_bar(list(cine_ids), display=progress, leave=False):
        cine = store.read(cid)
        try:
            x, zs = preprocess(cine, segment(ed_frame(cine))[0], **prep)
        except (PatchError, NoLabels) as e:
            fails.append(dict(cine_id=cid, subject=str(cine.subject), reason=str(e)))
            continue
        xs.append(x)
        subs += [str(cine.subject)] * len(x)
        slices += zs
    t, s = prep.get("n_frames", 32), prep.get("size", 32)
    x = np.concatenate(xs) if xs else np.zeros((0, t, s, s), np.float32)
    return HFPatches(x, np.array(subs, dtype=str), np.array(slices, dtype=int),
                     pd.DataFrame(fails, columns=["cine_id", "subject", "reason"]))


# ---------------------------------------------------------------- folds


def patient_folds(labels: pd.DataFrame, k: int = 5, seed: int = 0) -> pd.Series:
    """Each patient's fold 0..k-1, stratified by class (scikit-learn), patients being the unit."""
    from sklearn.model_selection import StratifiedKFold
    fold_roles(0, k)  # fewer than 3 folds leave no training fold: say so before any patch is read
    y = labels.hfref.to_numpy(int)
    if np.bincount(y, minlength=2).min() < k:
        raise HFLabelsError(f"{k}-fold cross-validation needs {k} patients of each class; got "
                            f"{np.bincount(y, minlength=2).tolist()} (HFpEF, HFrEF)")
    fold = np.empty(len(y), int)
    for i, (_, test) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)):
        fold[test] = i
    return pd.Series(fold, index=labels.subject.to_numpy(), name="fold")


def subsample_patients(labels: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A class-stratified `fraction` of the patients (at least one per class): the learning curve's smaller sets."""
    if fraction >= 1:
        return labels
    g = rng(seed)
    parts = [grp.iloc[np.sort(g.choice(len(grp), max(1, int(round(fraction * len(grp)))), replace=False))]
             for _, grp in labels.groupby("hfref")]
    return pd.concat(parts).sort_values("subject")


# ---------------------------------------------------------------- augmentation and datasets


@dataclass(frozen=True)
class CineFlip:
    """The paper's augmentation as an invertible map of a patch (T, H, W): flips of rows, columns and time, then
    `k` quarter turns about the time axis."""

    flip_h: bool = False
    flip_v: bool = False
    flip_t: bool = False
    k: int = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = x[:, :, ::-1] if self.flip_h else x
        x = x[:, ::-1] if self.flip_v else x
        x = x[::-1] if self.flip_t else x
        return np.ascontiguousarray(np.rot90(x, self.k, axes=(1, 2)))

    def inverse(self, y: np.ndarray) -> np.ndarray:
        y = np.rot90(y, -self.k, axes=(1, 2))
        y = y[::-1] if self.flip_t else y
        y = y[:, ::-1] if self.flip_v else y
        return np.ascontiguousarray(y[:, :, ::-1] if self.flip_h else y)


def random_flip(g: np.random.Generator) -> CineFlip:
    """Each flip with probability 1/2 and 0-3 quarter turns."""
    return CineFlip(bool(g.random() < 0.5), bool(g.random() < 0.5), bool(g.random() < 0.5), int(g.integers(4)))


class Restoration:
    """The proxy's samples: (corrupted patch, original patch), each (1, T, S, S), after a random `CineFlip`; the
    corruptions are drawn per sample among `kinds` (shuffle, patch, frame)."""

    def __init__(self, x: np.ndarray, kinds: Sequence[str], seed: int = 0, augment: bool = True):
        self.x, self.kinds, self.augment, self.g = x, tuple(kinds), augment, rng(seed)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = np.asarray(self.x[i], np.float32)
        x = random_flip(self.g)(x) if self.augment else x
        return corrupt(x, random_corruption(x, self.g, self.kinds))[None], x[None]


class Labelled:
    """Labelled patches (1, T, S, S) with their class (float 0/1), flipped at random when `augment`."""

    def __init__(self, x: np.ndarray, y: np.ndarray, augment: bool = False, seed: int = 0):
        self.x, self.y, self.augment, self.g = x, np.asarray(y, np.float32), augment, rng(seed)

    def __len__(self):
        return len(self.x)

    def new_empty(self) -> "Labelled":
        """An empty copy (what `Learner.export` keeps instead of the data)."""
        return Labelled(self.x[:0], self.y[:0])

    def __getitem__(self, i):
        x = np.asarray(self.x[i], np.float32)
        return (random_flip(self.g)(x) if self.augment else x)[None], self.y[i]
