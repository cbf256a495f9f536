"""CUSSP's inputs: valve-patch cines for every 4CH cine of a store (full cycle and the regurgitant window),
centre-of-mass crops for the CNN-LSTM, MR labels, the unlabelled pool, and the datasets each training stage
draws from (two augmented views, labelled cines, Siamese pairs)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from fastprogress.fastprogress import progress_bar

from ...labels import LV, MR_MIN_GRADE
from ...measure import MeasureError, area_curve, ed_es_from_curve, resample_cycle
from ...record import Cine
from ...store import CohortStore
from ...transforms.geometry import Affine2D, RandomAffine2D
from ...transforms.intensity import percentile_range
from ...tables import TableError, read_table, subject, zero_one
from ...utils import load_arrays, rng, save_arrays
from ...labels import NoLabels
from .valve import ValveError, valve_patch


class LabelsError(TableError):
    """MR labels that cannot be used (a store without grades and no table; the table's own errors are TableErrors)."""


# ---------------------------------------------------------------- time axis


def systolic_window(x: np.ndarray, es: int, n: int) -> np.ndarray:
    """The `n` frames of a cine ending at ES (cyclic), where a regurgitant jet shows; needs at least n frames."""
    if len(x) < n:
        raise ValveError(f"the cine has {len(x)} frames, fewer than the {n} the window model needs")
    return x[(es - n + 1 + np.arange(n)) % len(x)]


def ed_es(cine: Cine, labels: np.ndarray) -> tuple[int, int]:
    """ED/ES from the cine's own indices, else the maxima/minima of the segmented LV area over the cycle."""
    if cine.ed is not None and cine.es is not None:
        return int(cine.ed), int(cine.es)
    return ed_es_from_curve(area_curve(labels, cine.spacing, LV))


# ---------------------------------------------------------------- CNN-LSTM input


def com_crop(cine: Cine, size: int = 64, pixel_mm: float = 2.5) -> np.ndarray:
    """The CNN-LSTM's input: every frame cropped around the centre of mass of the mean frame's intensity, at
    `pixel_mm` per pixel, scaled to the cine's 1st-99th percentiles."""
    from scipy import ndimage

    mean = cine.pixels.mean(0)
    w = np.clip(mean - np.median(mean), 0, None)
    row, col = ndimage.center_of_mass(w) if w.sum() > 0 else ((mean.shape[0] - 1) / 2, (mean.shape[1] - 1) / 2)
    c = (float(col), float(row))
    aff = Affine2D(size=(size, size), center=c, scale=float(cine.spacing[-1]) / pixel_mm)
    return np.clip(percentile_range(aff.image(cine.pixels.astype(np.float32))), 0, 1).astype(np.float32)


# ---------------------------------------------------------------- the patch set


@dataclass
class PatchSet:
    """Preprocessed 4CH cines: `cycle` (N, frames, S, S) from ED over the whole cycle, `window` (N, W, S, S) the
    W frames ending at ES (zeros where `has_window` is False), `crops` (N, frames, C, C) for the CNN-LSTM, and a
    `failures` table (cine, subject, reason) of cines left out."""

    cine_ids: list[str]
    subjects: list[str]
    cycle: np.ndarray
    window: np.ndarray
    has_window: np.ndarray
    crops: np.ndarray
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["cine_id", "subject", "reason"]))

    def __len__(self):
        return len(self.cine_ids)

    @classmethod
    def join(cls, sets: Sequence["PatchSet"]) -> "PatchSet":
        """One set of several stores' cines (each set's cines in order, one after the other)."""
        cat = lambda k: np.concatenate([getattr(s, k) for s in sets])
        return cls([c for s in sets for c in s.cine_ids], [c for s in sets for c in s.subjects],
                   *(cat(k) for k in ("cycle", "window", "has_window", "crops")),
                   failures=pd.concat([s.failures for s in sets], ignore_index=True))

    def save(self, path: str | Path, settings: Mapping) -> Path:
        """Write atomically with the settings that made it."""
        arrays = dict(cycle=self.cycle, window=self.window, has_window=self.has_window, crops=self.crops)
        return save_arrays(path, arrays, dict(settings), cine_ids=self.cine_ids, subjects=self.subjects,
                           failures=self.failures.to_dict("records"))

    @classmethod
    def load(cls, path: str | Path, settings: Mapping) -> "PatchSet | None":
        """The saved set if it was made with these settings, else None."""
        saved = load_arrays(path, dict(settings))
        if saved is None:
            return None
        arrays, meta = saved
        return cls(meta["cine_ids"], meta["subjects"], **arrays,
                   failures=pd.DataFrame(meta["failures"], columns=["cine_id", "subject", "reason"]))


@dataclass(frozen=True)
class PatchSettings:
    """`preprocess`'s settings, declared once: the Study takes them from its parameters (`config_from`), its
    Predictor carries them beside the classifier."""
    size: int
    patch_mm: float
    frames: int
    window: int
    crop_size: int
    crop_mm: float


def preprocess(cine: Cine, labels: np.ndarray, size: int = 64, patch_mm: float = 1.8, frames: int = 30,
               window: int = 25, crop_size: int = 64, crop_mm: float = 2.5) -> dict:
    """One 4CH cine -> its cycle patch (from ED, resampled to `frames`), its systolic window (None, with the
    reason, if the cine is too short), its CNN-LSTM crop and the `ValvePatch` they came from (`valve`, for
    figures and checks); ValveError / MeasureError when no valve."""
    ed, es = ed_es(cine, labels)
    patch = valve_patch(cine, labels, ed, size, patch_mm)
    out = dict(cycle=resample_cycle(np.roll(patch.pixels, -ed, axis=0), frames),
               crops=resample_cycle(np.roll(com_crop(cine, crop_size, crop_mm), -ed, axis=0), frames),
               window=None, window_error=None, valve=patch)
    try:
        out["window"] = systolic_window(patch.pixels, es, window)
    except ValveError as e:
        out["window_error"] = str(e)
    return out


def preprocess_store(store: CohortStore, segment: Callable[[Cine], np.ndarray], cine_ids: Sequence[str],
                     size: int = 64, patch_mm: float = 1.8, frames: int = 30, window: int = 25, crop_size: int = 64,
                     crop_mm: float = 2.5, progress: bool = True) -> PatchSet:
    """`preprocess` every listed 4CH cine (segmented by `segment`); a cine that fails is recorded with its reason,
    the others go on."""
    keep, fails = [], []
    for cid in progress_bar(list(cine_ids), display=progress, leave=False):
        cine = store.read(cid)
        try:
            keep.append((cine, preprocess(cine, segment(cine), size, patch_mm, frames, window, crop_size, crop_mm)))
        except (ValveError, MeasureError, NoLabels) as e:
            fails.append(dict(cine_id=cid, subject=str(cine.subject), reason=str(e)))
            continue
        if keep[-1][1]["window_error"]:
            fails.append(dict(cine_id=cid, subject=str(cine.subject), reason=keep[-1][1]["window_error"]))
    def stack(key: str, shape: tuple) -> np.ndarray:
        """One input of every kept cine as float16 (a cine without a window gets zeros; `has_window` says so)."""
        arrays = [np.zeros(shape, np.float32) if p[key] is None else p[key] for _, p in keep]
        return np.stack(arrays).astype(np.float16) if arrays else np.zeros((0, *shape), np.float16)

    return PatchSet(cine_ids=[c.cine_id for c, _ in keep], subjects=[str(c.subject) for c, _ in keep],
                    cycle=stack("cycle", (frames, size, size)), window=stack("window", (window, size, size)),
                    has_window=np.array([p["window"] is not None for _, p in keep], bool),
                    crops=stack("crops", (frames, crop_size, crop_size)),
                    failures=pd.DataFrame(fails, columns=["cine_id", "subject", "reason"]))


# ---------------------------------------------------------------- labels


def mr_labels(store: CohortStore, labels_csv: str | Path | None = None) -> pd.DataFrame:
    """subject, mr (0/1) and grade (where known) for the store's subjects with a 4CH cine: the phantom's
    `mr_grade` >= 1, or a user's table (columns subject, mr). Subjects the table names but the store lacks are
    returned in `.attrs["unknown"]`; subjects without a label are left out and listed in `.attrs["unlabelled"]`."""
    m = store.manifest()
    four = m[m.view == "4CH"].drop_duplicates("subject").set_index("subject")
    if labels_csv is None:
        if "mr_grade" not in four:
            raise LabelsError("the store has no mr_grade column; pass labels_csv (columns subject, mr)")
        grade = pd.to_numeric(four["mr_grade"], errors="coerce")
        out = pd.DataFrame(dict(subject=four.index, mr=(grade >= MR_MIN_GRADE).astype(float).where(grade.notna()),
                                grade=grade.to_numpy()))
        unknown = []
    else:
        tab = read_table(labels_csv, {"subject": subject, "mr": zero_one}, required=("subject", "mr"),
                         what="MR labels table")
        unknown = sorted(set(tab.subject) - set(four.index))
        tab = tab[tab.subject.isin(four.index)]
        out = four.index.to_frame(index=False).merge(tab[["subject", "mr"]], how="left")
        out["grade"] = np.nan
    out = out.assign(split=[store.splits().get(s) for s in out.subject])
    unlabelled = out.subject[out.mr.isna()].tolist()
    out = out.dropna(subset=["mr"]).astype({"mr": int}).reset_index(drop=True)
    out.attrs.update(unknown=unknown, unlabelled=unlabelled)
    return out


# ---------------------------------------------------------------- augmentation and datasets


@dataclass(frozen=True)
class PatchAug:
    """The random views of a patch cine (C, S, S): an `Affine2D` drawn by `RandomAffine2D` (rotation, scale,
    shift as a fraction of S, left-right flip; the LA stays on top), then gamma, gain and offset and Gaussian
    noise, values kept in [0, 1], and a cyclic shift of the frames by up to `shift` either way. Every parameter
    comes from the generator passed in; `jitter` and `np.roll` are the deterministic steps. The defaults follow
    the authors' code: a mild affine (5 degrees, scale 0.9-1.1) and a shift that, with the encoder's central
    crop, is their random 32-px crop; no intensity change and no frame shift."""

    degrees: float = 5.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.08
    flip_p: float = 0.0
    gamma: tuple[float, float] = (1.0, 1.0)
    gain: float = 0.0
    noise: float = 0.0
    shift: int = 0

    @classmethod
    def make(cls, settings: Mapping | None) -> "PatchAug":
        """From a notebook's settings (YAML lists as tuples) over the defaults."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in dict(settings or {}).items()})

    def __call__(self, x: np.ndarray, g: np.random.Generator) -> np.ndarray:
        s = x.shape[-1]
        base = Affine2D(size=(s, s), center=((s - 1) / 2, (s - 1) / 2))
        aff = RandomAffine2D(self.degrees, self.scale, self.flip_p, self.translate).sample(base, g)
        noise = g.standard_normal(x.shape, np.float32) * self.noise if self.noise else 0.0  # none drawn when off
        out = jitter(aff.image(np.asarray(x, np.float32)), float(g.uniform(*self.gamma)),
                     float(1 + g.uniform(-self.gain, self.gain)), float(g.uniform(-self.gain, self.gain) / 2), noise)
        return np.roll(out, int(g.integers(-self.shift, self.shift + 1)), axis=0) if self.shift else out


def jitter(x: np.ndarray, gamma: float, gain: float, offset: float, noise: np.ndarray | float = 0.0) -> np.ndarray:
    """The deterministic intensity change behind `PatchAug`: gain * x ** gamma + offset + noise, clipped to [0, 1]."""
    x = np.clip(x, 0, 1, dtype=np.float32)
    if gamma != 1.0:
        np.power(x, np.float32(gamma), out=x)
    x *= np.float32(gain)
    x += np.float32(offset) + noise
    return np.clip(x, 0, 1, out=x)


class TwinViews:
    """Two independently augmented views of each cine (Barlow Twins); the target is a dummy 0."""

    def __init__(self, x: np.ndarray, aug: PatchAug, seed: int = 0):
        self.x, self.aug, self.g = x, aug, rng(seed)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        xi = self.x[i]
        return np.stack([self.aug(xi, self.g), self.aug(xi, self.g)]), np.float32(0)


class Labelled:
    """Labelled cines: one augmented view (or, `twin=True`, two, for the Barlow + cross-entropy objective) and
    the MR label; `aug=None` gives the cine as it is (validation, test)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, aug: PatchAug | None = None, twin: bool = False, seed: int = 0):
        self.x, self.y, self.aug, self.twin, self.g = x, np.asarray(y, np.float32), aug, twin, rng(seed)

    def __len__(self):
        return len(self.x)

    def new_empty(self) -> "Labelled":
        """An empty copy (what `Learner.export` keeps instead of the data)."""
        return Labelled(self.x[:0], self.y[:0], self.aug, self.twin)

    def view(self, i: int) -> np.ndarray:
        return np.asarray(self.x[i], np.float32) if self.aug is None else self.aug(self.x[i], self.g)

    def __getitem__(self, i):
        v = np.stack([self.view(i), self.view(i)]) if self.twin else self.view(i)
        return v, self.y[i]


class SiamesePairs:
    """Pairs for the Siamese stage: the first cine non-MR, the second MR or non-MR with equal chance; the target
    is 1 for an unlike (non-MR, MR) pair. Each epoch draws `len(self)` new pairs from the generator."""

    def __init__(self, x: np.ndarray, y: np.ndarray, aug: PatchAug | None = None, n_pairs: int | None = None,
                 seed: int = 0):
        y = np.asarray(y).astype(int)
        self.x, self.aug, self.g = x, aug, rng(seed)
        self.neg, self.pos = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
        if not len(self.neg) or not len(self.pos):
            raise LabelsError("Siamese pairs need MR and non-MR training cines")
        self.n = int(n_pairs or len(y))

    def __len__(self):
        return self.n

    def __getitem__(self, _):
        a = self.g.choice(self.neg)
        unlike = self.g.random() < 0.5
        b = self.g.choice(self.pos if unlike else self.neg)
        view = lambda i: np.asarray(self.x[i], np.float32) if self.aug is None else self.aug(self.x[i], self.g)
        return np.stack([view(a), view(b)]), np.float32(unlike)


def labelled(ps: PatchSet, labels: pd.DataFrame, splits: str | Sequence[str], input: str = "cycle"
             ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """The labelled cines of some splits as one model's input ("cycle", "window" or "crops"): x (N, F, S, S)
    float32, y (N,), and their rows of `labels` (subject, mr, grade, split). Subjects without a patch (or, for
    "window", without enough frames) are not in it; the failures table says why."""
    splits = [splits] if isinstance(splits, str) else list(splits)
    lab = labels[labels.split.isin(splits)]
    pos = {s: i for i, s in enumerate(ps.subjects)}
    ok = [s in pos and (input != "window" or bool(ps.has_window[pos[s]])) for s in lab.subject]
    lab = lab[ok].reset_index(drop=True)
    idx = np.array([pos[s] for s in lab.subject], dtype=int)
    x = np.asarray(getattr(ps, input)[idx], np.float32) if len(idx) else np.zeros((0, *getattr(ps, input).shape[1:]),
                                                                                   np.float32)
    return x, lab.mr.to_numpy(int), lab


def unlabelled(sets: Sequence[PatchSet], input: str = "cycle", exclude: Sequence[str] = ()) -> np.ndarray:
    """The pretraining pool: every cine of the sets (labelled or not) except the `exclude` subjects (the test
    split, never seen by any stage); for "window" only cines long enough for it."""
    skip = set(exclude)
    parts = [np.asarray(getattr(ps, input)[[i for i, s in enumerate(ps.subjects) if s not in skip
                                            and (input != "window" or ps.has_window[i])]]) for ps in sets]
    return np.concatenate(parts) if parts else np.zeros((0,))


@dataclass(frozen=True)
class Inputs:
    """The split of each role ("eval": the scored splits), each input's (x, y, labels) per role, the scored
    subjects."""

    splits: dict
    data: dict
    test_subjects: list

    def xy(self, inp: str, split: str, subjects=None) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of one input and split, optionally only some subjects' cines (a label budget)."""
        x, y, lab = self.data[inp][split]
        if subjects is None:
            return x, y
        keep = lab.subject.isin(set(subjects)).to_numpy()
        return x[keep], y[keep]


def cohort_counts(labels: pd.DataFrame, pool_cines: int) -> pd.DataFrame:
    """Cines per split and class (non-MR, MR, MR %), and the unlabelled pool's cines."""
    counts = labels.groupby(["split", "mr"]).size().unstack(fill_value=0).reindex(columns=[0, 1], fill_value=0)
    counts = counts.rename(columns={0: "non-MR", 1: "MR"})
    counts["MR %"] = (100 * counts["MR"] / counts.sum(axis=1)).round(1)
    counts.loc["unlabelled pool"] = [pool_cines, 0, np.nan]
    return counts


def store_counts(sets: Mapping[str, PatchSet]) -> pd.DataFrame:
    """Per store: its 4CH cines, the patches and systolic windows they gave, and the cines left out."""
    return pd.DataFrame({n: dict(cines=len(ps) + ps.failures.cine_id.nunique() - int((~ps.has_window).sum()),
                                 patches=len(ps), windows=int(ps.has_window.sum()),
                                 left_out=len(set(ps.failures.cine_id) - set(ps.cine_ids)))
                         for n, ps in sets.items()}).T


def figure_subjects(labels: pd.DataFrame, have: Sequence[str]) -> list[tuple[str, str]]:
    """(subject, title) of the most severe MR subject, a mild one (grade 1) and one without MR among `have`, each
    subject once: the paper's Fig. 8."""
    shown = []
    have_ = labels[labels.subject.isin(have)]
    for pick, title in ((have_[have_.mr == 1].sort_values("grade", ascending=False), "MR"),
                        (have_[have_.grade == 1], "MR"), (have_[have_.mr == 0], "no MR")):
        if len(pick) and not any(s == pick.subject.iloc[0] for s, _ in shown):
            sub = pick.subject.iloc[0]
            grade = pick.set_index("subject").grade.get(sub)
            shown.append((sub, title + (f" (grade {int(grade)})" if pd.notna(grade) and grade > 0 else "")))
    return shown


def stores_labels(stores: Mapping[str, CohortStore], labels_csv=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The MR labels (`mr_labels`; `labels_csv` for the store named "cohort") and the manifests of several stores,
    each row with its store's name; the labels keep the first store's unknown and unlabelled subjects."""
    parts = [mr_labels(st, labels_csv if name == "cohort" else None).assign(store=name) for name, st in stores.items()]
    labels = pd.concat(parts, ignore_index=True)
    labels.attrs = parts[0].attrs
    return labels, pd.concat([st.manifest().assign(store=n) for n, st in stores.items()], ignore_index=True)


def keeping(find: Callable[[Cine], np.ndarray], subjects) -> tuple[Callable[[Cine], np.ndarray], dict]:
    """`find` that also keeps the labels it finds for the cines of `subjects` (the forest's measures reuse them),
    and the dict (cine id -> labels) it keeps them in."""
    kept, subjects = {}, set(subjects)

    def segment(cine: Cine) -> np.ndarray:
        labels = find(cine)
        if cine.subject in subjects:
            kept[cine.cine_id] = labels
        return labels
    return segment, kept

