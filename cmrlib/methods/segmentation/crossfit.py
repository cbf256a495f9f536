"""Cross-fitted SAX segmenters: notebook 01's phantom + ACDC recipe trained once per fold of ACDC's patients, so that
every ACDC patient, and every real SAX cine of the same patients, is segmented by a model that neither learned its
masks nor chose anything on it (nnU-Net's five folds). The folds are the real SAX cohort's
(`io.real.real_sax_cohort`), so a method cross-validated on that cohort reads each test fold with the model of the
same fold; ACDC's other patients are dealt round the folds by diagnosis."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ...io.acdc import exam_of
from ...results import Target, mean_target, share_target

CROSSFIT = Path("01") / "crossfit.json"  # in a run folder: subject -> fold, and each fold's model file


OUT_OF_FOLD = "ACDC out-of-fold"  # how a target of the cross-fitted models names its patients
DICE_TARGETS = (("LV", 0.93), ("MYO", 0.87), ("RV", 0.89))  # the shipped model's held-out Dice (estimates)
OUT_OF_FOLD_TARGETS = (("LV", 0.93), ("MYO", 0.86), ("RV", 0.87))  # every exam out of fold: the interval's low end


def acdc_folds(groups: Mapping[str, str], cine_folds: Mapping[str, int], k: int, seed: int) -> dict[str, int]:
    """ACDC subject -> fold 0..k-1: a real SAX cohort patient keeps its fold there; the others are dealt round the
    folds by diagnosis; one exam segmented twice (`io.acdc.SAME_EXAM`) sits in one fold."""
    from ...io.acdc import SAME_EXAM
    from ...store import grouped_folds

    kept = {str(s): int(f) for s, f in cine_folds.items()}
    for exam in SAME_EXAM:  # the exam's other segmentation follows the one the cohort kept
        fold = next((kept[s] for s in exam if s in kept), None)
        kept |= {s: fold for s in exam if s in groups and fold is not None}
    rest = {str(s): g for s, g in groups.items() if str(s) not in kept}
    return {**kept, **(grouped_folds(rest, k, seed, SAME_EXAM) if rest else {})}


def fold_subjects(folds: Mapping[str, int], splits: Mapping[str, str], fold: int) -> dict[str, list[str]]:
    """Fold `fold`'s subjects by role: 'test' (the fold), 'valid' (the other folds' patients that ACDC's stratified
    split puts in validation: they calibrate the decision and train nothing) and 'train' (the rest)."""
    out: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for s in sorted(folds):
        role = "test" if folds[s] == fold else "valid" if splits.get(s) == "valid" else "train"
        out[role].append(s)
    return out


def fold_cines(manifest: pd.DataFrame, folds: Mapping[str, int], splits: Mapping[str, str], k: int
               ) -> dict[int, tuple[list[str], list[str], list[str]]]:
    """fold -> the SAX cines its network trains on, calibrates on and segments (`fold_subjects`); an exam held
    twice (074 and 076) is segmented once, under its own id."""
    sax = manifest.query("view == 'SAX'")
    cine_of = dict(zip(sax.subject, sax.cine_id))
    roles = {}
    for fold in range(k):
        role = {r: [s for s in v if s in cine_of] for r, v in fold_subjects(folds, splits, fold).items()}
        roles[fold] = ([cine_of[s] for s in role["train"]], [cine_of[s] for s in role["valid"]],
                       [cine_of[s] for s in role["test"] if exam_of(s) == s])
    return roles


def dice_targets(scores: pd.DataFrame, seed: int = 0) -> list[Target]:
    """Each structure's Dice per patient (the mean of its ED and ES frames), averaged over the patients with its
    patient-bootstrap interval, against the out-of-fold targets: met only when the whole interval is."""
    per = scores.groupby(["subject", "structure"]).dice.mean().unstack()
    return [mean_target(f"{OUT_OF_FOLD} {s} Dice", per[s], ">=", t, seed=seed) for s, t in OUT_OF_FOLD_TARGETS
            if s in per]


def measure_targets(measures: pd.DataFrame, pairs: dict, agree: pd.DataFrame, who: str, seed: int = 0
                    ) -> list[Target]:
    """LVEF's mean absolute error over the patients (patient-bootstrap interval) and LVEDV's ICC(2,1) (its F-test
    interval), each against its target: met only when the whole interval is."""
    out = []
    if "LVEF" in pairs:
        auto, ref = pairs["LVEF"]
        out.append(mean_target(f"{who} LVEF MAE (points)", (measures[auto] - measures[ref]).abs(), "<=", 4.0,
                               seed=seed))
    if "LVEDV" in agree.index:
        r = agree.loc["LVEDV"]
        out.append(Target(f"{who} LVEDV ICC", float(r.icc2), ">=", 0.95, float(r.icc2_low), float(r.icc2_high),
                          n=int(r.n), test="ICC(2,1) F-test interval, 95 %"))
    return out


def sax_evidence(shipped: str, held_out: pd.Series | None, n_held_out: int, oof_scores: pd.DataFrame | None,
                 folds: int, agree, seed: int = 0) -> tuple[list, list[str]]:
    """The shipped SAX model's real targets and the lines its Predictor's check keeps of them: every ACDC patient out
    of fold where its recipe is cross-fitted (`oof_scores`: Dice per frame of `folds` fold models' labels), each
    target with its interval over the patients, else its own held-out patients' Dice (`held_out`, None for the
    phantom model, which has none); then the measures' targets (`agree`: `Study.acdc_measures`, or None); `seed`:
    the bootstrap's."""
    rows, lines = [], []
    if held_out is not None:
        if oof_scores is None:
            rows += [(f"shipped SAX model ({shipped}): ACDC held-out {s} Dice", float(held_out[s]), ">=", t)
                     for s, t in DICE_TARGETS]
        lines.append(f"SAX model ({'ACDC only' if shipped == 'acdc' else 'phantom + ACDC'}) on {n_held_out} held-out "
                     f"ACDC patients (manual masks, ED and ES): LV / MYO / RV Dice {held_out['LV']:.3f} / "
                     f"{held_out['MYO']:.3f} / {held_out['RV']:.3f}")
    if oof_scores is not None:
        dice = dice_targets(oof_scores, seed)
        d = {t.figure.split()[-2]: t.value for t in dice}
        rows += dice
        lines.append(f"the SAX model's recipe cross-fitted over {folds} folds of ACDC, each of "
                     f"{oof_scores.subject.nunique()} patients read by the fold model that never saw it (manual masks, "
                     f"ED and ES): LV / MYO / RV Dice {d['LV']:.3f} / {d['MYO']:.3f} / {d['RV']:.3f}")
    if agree is not None:
        rows += measure_targets(agree.measures, agree.pairs, agree.table,
                                OUT_OF_FOLD if oof_scores is not None else "ACDC held-out", seed)
    return rows, lines


def coverage_target(name: str, coverage: float, n: int, target: float = 0.85) -> Target:
    """An interval's coverage over n patients with its Clopper-Pearson 95 % interval, against its target."""
    return share_target(name, coverage, n, ">=", target, over="patients")


def write(run_dir: str | Path, folds: Mapping[str, int], models: Mapping[int, str], recipe: str) -> Path:
    """`<run>/01/crossfit.json`: the folds, each fold's model file (relative to `<run>/01`) and the recipe."""
    from ...utils import atomic_write_json

    path = Path(run_dir) / CROSSFIT
    atomic_write_json(path, dict(k=len(models), recipe=recipe, folds=dict(sorted(folds.items())),
                                 models={str(k): str(v) for k, v in sorted(models.items())}))
    return path


@dataclass
class CrossFitted:
    """The run's segmentation Predictor (`base`: its long-axis segmenter and settings) with each fold's SAX
    segmenter in turn: `labels(cine)` segments a cine by the model of its subject's fold, which never saw it (a
    subject in no fold was in no model's training)."""

    base: object
    fold_nets: dict[int, object]
    folds: dict[str, int]
    _per_fold: dict[int, object] = field(default_factory=dict, repr=False)

    def fold(self, subject) -> int:
        """The fold of a subject; fold 0 for a subject in none, which no fold model trained on (the folds hold every
        patient of the ACDC store the models trained from)."""
        return self.folds.get(str(subject), 0)

    def for_subject(self, subject):
        """The segmentation Predictor whose SAX segmenter is the one of this subject's fold."""
        k = self.fold(subject)
        if k not in self._per_fold:
            b = self.base
            self._per_fold[k] = type(b)({**b.nets, "SAX": self.fold_nets[k]}, b.prep, b.needs, b.provenance,
                                        f"{b.model} (SAX: cross-fitted fold {k})")
            if b.labels_folder is not None:
                self._per_fold[k].keep_labels_in(b.labels_folder)
        return self._per_fold[k]

    def labels(self, cine, entropy: dict | None = None):
        """Canonical labels at every frame, by the fold model that never saw the cine's subject."""
        return self.for_subject(cine.subject).labels(cine, entropy)

    def reads(self, view: str) -> bool:
        """Whether the base Predictor reads this view."""
        return self.base.reads(view)

    def encoder_features(self, cine, slices):
        """The frozen encoder features of the fold model that never saw the cine's subject."""
        return self.for_subject(cine.subject).encoder_features(cine, slices)

    def content_key(self) -> str:
        """What the cross-fitted segmentations depend on: the base Predictor, every fold model and the folds."""
        import hashlib

        from ... import modelfile

        h = hashlib.blake2b(self.base.content_key().encode(), digest_size=16)
        for k in sorted(self.fold_nets):
            h.update(f"{k}:{modelfile.fingerprint(self.fold_nets[k])}".encode())
        h.update(json.dumps(sorted(self.folds.items())).encode())
        return h.hexdigest()


def load(run_dir: str | Path, base) -> CrossFitted | None:
    """The cross-fitted segmenters notebook 01 wrote into a run folder around its segmentation Predictor `base`;
    None when the run has none, or when `base`'s SAX segmenter is not of their recipe (its provenance names the
    folds where it is: a phantom-only segmenter never saw a patient and reads every one itself)."""
    from ...learn import load as load_model

    path = Path(run_dir) / CROSSFIT
    if base is None or not base.reads("SAX") or (base.provenance or {}).get("cross_fitted") != str(CROSSFIT) \
            or not path.is_file():
        return None
    spec = json.loads(path.read_text())
    nets = {int(k): load_model(path.parent / f, "SAX segmenter", "notebook 01") for k, f in spec["models"].items()}
    return CrossFitted(base, nets, {str(s): int(f) for s, f in spec["folds"].items()})
