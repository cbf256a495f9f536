"""TempReg-Net's detectors on real SAX patients, folds by patient: each network fine-tuned from its phantom model on
the training folds (best epoch on the validation fold) and scored on the test fold; the phantom models, the seam
control and the LV volume curves on every patient (the run segmenter's read by notebook 01's cross-fitted models, each
patient by the one that never saw it); the detector the run ships chosen by one rule on every cine, and that rule's
error measured by nested cross-validation (chosen on four folds, scored on the fifth). Plain functions of the named
pieces the Study hands them."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import pandas as pd

from ...learn import BestWeights
from ...results import Target, share_target
from ...store import fold_roles
from ...utils import seed_for, seeded
from .curves import read_frames
from .data import Reading, dataloaders
from .evaluate import choose, combined_rows, evaluate, paired_table, real_afd_table
from .learner import learner
from .predict import predict, seam_detect, seg_detect
from .predictor import COMBINED, NETWORK, VOLUME_CURVE, Predictor


@dataclass(frozen=True)
class RealResult:
    """A real-cine table and the one line a Predictor's provenance keeps of it (None: no TempReg-Net row)."""

    table: pd.DataFrame
    check: str | None = None


@dataclass(frozen=True)
class RealSax:
    """The real SAX patients' cines (rolled), folds and prepared sequences, by subject."""

    cines: dict
    folds: pd.Series
    items: dict


@dataclass(frozen=True)
class RealCines:
    """The real SAX patients' detectors scored per cine (out of fold where trained), the table over every cine,
    the detector the rule ships and the rule scored as a procedure (nested cross-validation)."""

    per_cine: pd.DataFrame
    table: pd.DataFrame
    choice: pd.DataFrame
    shipped: str
    kind: str  # the shipped detector's `predictor.DETECTOR_KINDS` entry
    smooth: int  # its curve's circular moving average (frames)
    decoder: str  # how its network's curve becomes ED and ES (`curves.DECODERS`)
    reading: Reading  # the slices its network averages and the frames it reads the cycle at (`data.Reading`)
    trained_as: str  # its network's fine-tuning, a `trainings` key ('' for none)
    picks: pd.DataFrame  # the rule's pick with each fold left out
    procedure: pd.DataFrame  # every detector beside the rule's nested row (`PROCEDURE`), with its paired difference
    check: str | None
    best_epochs: list[int]


SEAM = "Seam control (largest frame-to-frame change)"
PHANTOM_CURVE = "LV volume curve (phantom-only segmenter)"
NETWORK_ROW = "TempReg-Net (fine-tuned)"
TEMPLATE_ROW = "TempReg-Net (fine-tuned, template fit)"  # the same curves, ED and ES from the closest eq. 4 curve
HYBRID_ROW = "TempReg-Net (fine-tuned, template ED, minimum ES)"  # the same curves: ED by template, ES by minimum
SLICES_ROW = "TempReg-Net (fine-tuned, 3 mid slices averaged)"  # its curves on 3 slices about the mid one, averaged


def trainings(frames: int) -> dict[str, Reading]:
    """TempReg-Net's fine-tunings on real patients by name, each with how it reads a cine: the mid slice as
    acquired, every LV slice in training (3 mid slices averaged at test), every cine resampled to `frames` frames,
    and both; one change at a time, so each one's effect shows."""
    return {"TempReg-Net": Reading(), "TempReg-Net on every slice": Reading(slices=3, every_slice=True),
            f"TempReg-Net at {frames} frames": Reading(frames=frames),
            f"TempReg-Net on every slice at {frames} frames": Reading(slices=3, every_slice=True, frames=frames)}


def network_rows(frames: int) -> dict[str, tuple[str, Reading, str]]:
    """The real table's fine-tuned TempReg-Net rows: each one's fine-tuning (`trainings`), how it reads a cine at
    test and its decoder (`curves.DECODERS`); every one a candidate for the shipped detector."""
    t = trainings(frames)
    plain, every, fixed, both = t
    return {NETWORK_ROW: (plain, t[plain], "argmax"), TEMPLATE_ROW: (plain, t[plain], "template"),
            HYBRID_ROW: (plain, t[plain], "hybrid"), SLICES_ROW: (plain, Reading(slices=3), "argmax"),
            "TempReg-Net (fine-tuned on every slice, 3 mid slices averaged)": (every, t[every], "argmax"),
            f"TempReg-Net (fine-tuned and read at {frames} frames)": (fixed, t[fixed], "argmax"),
            f"TempReg-Net (fine-tuned on every slice at {frames} frames, 3 mid slices averaged)":
                (both, t[both], "argmax"),
            f"TempReg-Net (fine-tuned on every slice at {frames} frames, 3 mid slices; template ED, minimum ES)":
                (both, t[both], "hybrid")}


def run_curve(smooth: int, decoder: str = "argmax") -> str:
    """The name of the run segmenter's LV volume-curve row at a smoothing, read by its extremes or (hybrid) ED by
    the closest eq. 4 curve and ES by the minimum."""
    reading = "; template ED, minimum ES" if decoder == "hybrid" else ""
    return f"LV volume curve (run segmenter, smooth {smooth}{reading})"


CURVE_DECODERS = ("argmax", "hybrid")  # the readings of the run segmenter's LV volume curve scored on real patients


def combined(smooth: int) -> str:
    """The name of the row that averages fine-tuned TempReg-Net and the run segmenter's curve on the cycle."""
    return f"TempReg-Net + LV volume curve (smooth {smooth})"




def fixed_detectors(nets: dict, methods: list, size: int, zoom: float, phantom_segmenter, seg, curve_smooth: list
                    ) -> tuple[dict, dict[str, float]]:
    """The real-patient detectors that train on none of them: the phantom networks, the seam control and the LV
    volume curves (the run segmenter's, `seg`, once per cine, each smoothing read from it; None: none); and the
    seconds each cine's segmentation took (filled as they run)."""
    found = {f"{m} (phantom only)": partial(predict, nets[m], size=size, zoom=zoom) for m in methods}
    found[SEAM] = seam_detect
    if phantom_segmenter is not None:
        found[PHANTOM_CURVE] = partial(seg_detect, phantom_segmenter)
    if seg is None:
        return found, {}
    memo: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}

    def curve(cine, smooth, decoder):
        if cine.cine_id not in memo:
            t0 = time.perf_counter()
            memo[cine.cine_id] = seg_detect(seg, cine)["curve"]
            seconds[cine.cine_id] = time.perf_counter() - t0
        c = memo[cine.cine_id]
        return dict(curve=c, **dict(zip(("ed", "es"), read_frames(c, smooth, decoder))))

    return {**{run_curve(k, d): partial(curve, smooth=k, decoder=d) for d in CURVE_DECODERS
               for k in curve_smooth}, **found}, seconds


@dataclass(frozen=True)
class Tuning:
    """How a phantom model is fine-tuned on real patients: the run's seed and the notebook's training settings."""

    seed: int
    epochs: int
    lr: float
    bs: int
    delta: float
    upsilon: float
    beta: float
    alpha: float
    size: int
    zoom: float
    frames: int
    path: object
    model_kw: dict

    @classmethod
    def of(cls, p: dict, path, model_kw: dict) -> "Tuning":
        """From notebook 02's parameters, the folder its learners write into and the network's settings."""
        return cls(p["seed"], p["real_epochs"], p["real_lr"], p["bs"], p["delta"], p["upsilon"], p["beta"],
                   p["alpha"], p["size"], p["zoom"], p["real_frames"], path, model_kw)


def tune_one(method: str, start: dict, dls, seed: int, how: Tuning, epochs: int | None = None, best: bool = True):
    """One method's network from its phantom weights (`start`) fine-tuned on `dls` (one cycle of `epochs`, the
    notebook's by default; `best`: the best epoch on validation kept); the network and its `BestWeights` (None)."""
    with seeded(seed):
        learn = learner(dls, method, beta=how.beta, alpha=how.alpha, path=how.path, **how.model_kw)
        learn.model.load_state_dict(start)
        keep = BestWeights(patience=how.epochs, min_epochs=1) if best else None
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(epochs or how.epochs, how.lr, cbs=[keep] if keep else None)
    return learn.model.eval(), keep


def fine_tune_fold(real_items: dict, folds: pd.Series, roles: dict, k: int, methods: list, starts: dict,
                   how: Tuning) -> tuple[dict, list[dict]]:
    """Every method's phantom model (`starts`: its weights) fine-tuned on fold k's training sequences, TempReg-Net's
    also each other way of `trainings`, the best epoch on the validation fold kept; the detectors (each method,
    every row of `network_rows`) and a log row per fine-tuning."""
    nets, log = {}, []
    for name, items in real_items.items():
        chosen = methods if name == "TempReg-Net" else [m for m in methods if m == "TempReg-Net"]
        split = {s: next((r for r, fs in roles.items() if folds[s] in fs), "test") for s in items}
        seqs = [replace(it, split=split[s]) for s, it in items.items() if split[s] in ("train", "valid")]
        dls = dataloaders(seqs, bs=how.bs, delta=how.delta, upsilon=how.upsilon, seed=seed_for(how.seed, "real", k))
        for m in chosen:
            key = m if name == "TempReg-Net" else name
            nets[key], best = tune_one(m, starts[m], dls, seed_for(how.seed, "edes", "real", key, k), how)
            log.append(dict(fold=k, method=key, best_epoch=best.best_epoch, valid_loss=float(best.best),
                            train=sum(s.split == "train" for s in seqs), valid=sum(s.split == "valid" for s in seqs)))
    found = {f"{m} (fine-tuned)": partial(predict, nets[m], size=how.size, zoom=how.zoom) for m in methods}
    for row, (name, reading, decoder) in network_rows(how.frames).items():
        if name in nets:
            found[row] = partial(predict, nets[name], size=how.size, zoom=how.zoom, decoder=decoder,
                                 slices=reading.slices, frames=reading.frames)
    return found, log


def per_cine(parts: list[pd.DataFrame], cines: dict, folds: pd.Series, short_frames: int, curve_smooth: list
             ) -> pd.DataFrame:
    """Every detector's rows on the real cines in one table, fine-tuned TempReg-Net averaged with each run curve on
    the cycle added, each row's patient, fold and whether its cine is short."""
    res = pd.concat(parts, ignore_index=True)
    curves = [m for m in map(run_curve, curve_smooth) if m in set(res.method)]
    if NETWORK_ROW in set(res.method):
        res = pd.concat([res] + [combined_rows(res, NETWORK_ROW, run_curve(k), combined(k))
                                 for k in curve_smooth if run_curve(k) in curves], ignore_index=True)
    subject = {c.cine_id: s for s, c in cines.items()}
    res["subject"] = res["cine_id"].map(subject)
    res["fold"] = res["subject"].map(folds)
    res["short"] = res["n_frames"] < short_frames
    return res


def detector_kinds(curve_smooth: list, frames: int) -> dict[str, tuple]:
    """Every candidate for the shipped detector (simplest first) -> (kind, smoothing, decoder, reading, its
    fine-tuning)."""
    return {**{run_curve(k, d): (VOLUME_CURVE, k, d, Reading(), "") for d in CURVE_DECODERS for k in curve_smooth},
            **{row: (NETWORK, 1, dec, reading, name) for row, (name, reading, dec) in network_rows(frames).items()},
            **{combined(k): (COMBINED, k, "argmax", Reading(), "TempReg-Net") for k in curve_smooth}}


PROCEDURE = "shipping rule, chosen without the cine's fold"  # the rule as a procedure: each fold read by its pick


def nested(res: pd.DataFrame, candidates: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shipping rule scored as a procedure (nested cross-validation over the real cines' folds): per fold, the
    detector `choose` picks on the other folds' cines; the picks, and each cine's row of the detector picked without
    its fold (method `PROCEDURE`)."""
    picks, rows = [], []
    for k in sorted(res.fold.dropna().unique()):
        inner, outer = res[res.fold != k], res[res.fold == k]
        chosen, _ = choose(inner, candidates)
        picks.append(dict(fold=int(k), chosen=chosen, chosen_on=inner.cine_id.nunique(),
                          scored_on=outer.cine_id.nunique()))
        rows.append(outer[outer.method == chosen].assign(method=PROCEDURE))
    return pd.DataFrame(picks), pd.concat(rows, ignore_index=True)


def ship(res: pd.DataFrame, kinds: dict, short_frames: int, seed: int
         ) -> tuple[str, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The detector the rule (`choose`) picks among `kinds` on every real cine, which the run ships; the choice table;
    the rule's picks with each fold left out (`nested`); and every detector beside the rule's nested row on the same
    cines, with its paired difference from it (the rule's error is that row's, no cine having chosen its own
    detector). Fine-tuned TempReg-Net and empty tables when there are no candidates or fewer than two folds."""
    candidates = [m for m in kinds if m in set(res.method)]
    if not candidates or res.fold.nunique() < 2:
        return NETWORK_ROW, pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
    shipped, choice = choose(res, candidates)
    choice = choice.assign(n=res.cine_id.nunique(), chosen=lambda d: d.method == shipped)
    picks, rows = nested(res, candidates)
    both = pd.concat([res, rows], ignore_index=True)
    pair = paired_table(both, PROCEDURE, seed=seed_for(seed, "edes", "paired")).drop(columns="against")
    table = real_afd_table(both, short_frames).merge(pair.drop(columns="n"), on="method", how="left")
    return shipped, choice, picks, table


def check_line(procedure: pd.DataFrame, table: pd.DataFrame, n: int, folds: int) -> str | None:
    """The one line a Predictor's provenance keeps of the real patients: the shipping rule's error by nested
    cross-validation, else fine-tuned TempReg-Net on every cine out of fold (None: neither ran)."""
    if not procedure.empty:
        r = procedure.set_index("method").loc[PROCEDURE]
        return (f"{int(r.n)} real ACDC SAX cines (cyclically shifted), {folds} folds by patient, each read by the "
                f"detector the rule picks on the other folds: aFD ED {r.aFD_ED:.2f}, ES {r.aFD_ES:.2f} frames, ED "
                f"within 1 frame in {r.ED_within_1:.0f} %")
    if NETWORK_ROW in set(table.method):
        r = table.set_index("method").loc[NETWORK_ROW]
        return (f"{n} real ACDC SAX cines, cyclically shifted, 5-fold by patient: fine-tuned TempReg-Net aFD ED "
                f"{r.aFD_ED:.2f}, ES {r.aFD_ES:.2f} frames")
    return None


CINES_CI = "t-interval over cines, 95 %"  # what backs a real aFD target row (`evaluate.real_afd_table`)
CHOSEN_AMONG = ("among fine-tuned TempReg-Net (on the mid slice or every slice, at the cine's frames or resampled; its "
                "curve read by extremes, by template fit, or ED by template and ES by the minimum; one slice or 3 mid "
                "slices averaged), the run segmenter's LV volume curve (by its extremes, or ED by template and ES by "
                "the minimum) and their average")  # what the shipping rule chooses from, as the Predictor says


def fixed_rows(nets: dict, methods: list, size: int, zoom: float, phantom_segmenter, seg, curve_smooth: list,
               cines: dict) -> pd.DataFrame:
    """The detectors that learn nothing from real patients (`fixed_detectors`) on every real cine, each volume-curve
    row timed by the one segmentation it costs."""
    fixed, seconds = fixed_detectors(nets, methods, size, zoom, phantom_segmenter, seg, curve_smooth)
    rows = evaluate(fixed, cines.values(), total=len(cines))
    ran = rows.method.isin([run_curve(k, d) for k in curve_smooth for d in CURVE_DECODERS])
    if ran.any():  # a run without its segmenter (`cmrlib fit` on a bare cohort) has no curve rows
        rows.loc[ran, "sec"] = rows.loc[ran, "cine_id"].map(seconds).astype(float)
    return rows


def fine_tuned_rows(nets: dict, methods: list, real_items: dict, cines: dict, folds: pd.Series, n_folds: int,
                    how: Tuning) -> tuple[list[pd.DataFrame], list[dict]]:
    """Each network fine-tuned on the training folds and scored once on its test fold: the rows per fold and the
    fine-tunings' logs."""
    parts, logs, starts = [], [], {m: nets[m].state_dict() for m in methods}
    for k in range(n_folds):
        roles = fold_roles(k, n_folds)
        tuned, log = fine_tune_fold(real_items, folds, roles, k, methods, starts, how)
        logs += log
        test = [c for s, c in cines.items() if folds[s] in roles["test"]]
        parts.append(evaluate(tuned, test, total=len(test)))
    return parts, logs


def shipped_lines(r: RealCines) -> str:
    """The detector the rule picks on every real cine, its candidates, and its picks with each fold left out, as
    the notebook prints them."""
    return (f"chosen on all {int(r.choice.n.iloc[0])} real cines: {r.shipped}\n{r.choice.round(3).to_string(index=False)}"
            f"\nthe rule with each fold left out (its error below is the row {PROCEDURE!r}):\n"
            f"{r.picks.to_string(index=False)}")


def real_checks(demo: pd.DataFrame | None, real: RealCines | None) -> list:
    """On real cines: TempReg-Net against the UK Biobank demo's pseudo-labels, the fine-tuned network and the
    shipping rule by nested cross-validation on the real SAX patients."""
    checks = []
    if demo is not None and "TempReg-Net" in set(demo.method):
        worst = demo[demo.method == "TempReg-Net"][["fd_ed", "fd_es"]].to_numpy().max()
        checks.append(("TempReg-Net on every UKBB demo cine: largest frame difference from the 4CH "
                       "pseudo-labels' ED/ES", float(worst), "<=", 2))
    if real is not None and NETWORK_ROW in set(real.table.method):
        r = real.table.set_index("method").loc[NETWORK_ROW]
        checks.append(Target(f"real SAX patients ({int(r.n)}, out of fold): fine-tuned TempReg-Net aFD ES "
                             "(frames)", r.aFD_ES, "<=", 1.0, r.ES_low, r.ES_high, r.n, CINES_CI))
    if real is not None and not real.procedure.empty:
        r = real.procedure.set_index("method").loc[PROCEDURE]
        checks += [Target("real SAX patients: the shipping rule by nested cross-validation, aFD ES (frames)",
                          r.aFD_ES, "<=", 1.0, r.ES_low, r.ES_high, r.n, CINES_CI),
                   share_target("real SAX patients: the shipping rule by nested cross-validation, ED within 1 "
                                "frame (% of cines)", r.ED_within_1 / 100, int(r.n), ">=", 0.85, percent=True,
                                over="cines")]
    return checks


LABELLED_COLUMNS = ["method", "view", "n_frames", "ed", "es", "ed_pred", "es_pred", "fd_ed", "fd_es", "sec"]


def labelled_rows(detectors: dict, cines: list) -> tuple[pd.DataFrame, str | None]:
    """Every detector on real cines with labelled ED and ES: their rows, and phantom TempReg-Net's frame differences
    as the Predictor's real check (None without it)."""
    rows = evaluate(detectors, cines)[LABELLED_COLUMNS]
    fd = rows.set_index("method")
    if "TempReg-Net" not in fd.index:
        return rows, None
    ed, es = fd.loc["TempReg-Net", "fd_ed"], fd.loc["TempReg-Net", "fd_es"]
    return rows, f"one real ACDC SAX cine with labelled ED/ES: frame difference ED {ed:.0f}, ES {es:.0f}"


def pseudo_rows(detectors: dict, cines: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every detector on cines whose ED/ES their pseudo-labels imply: the rows with their curves (for the figure),
    and the table of frames against the pseudo-reference."""
    rows = evaluate(detectors, cines, total=len(cines), keep_curves=len(cines))
    rows["cine"] = [f"{c.subject} {c.view}" for c in cines for _ in detectors]
    cols = ["cine", *(c for c in LABELLED_COLUMNS if c != "view")]  # the view is in the cine's name
    return rows, rows[cols].rename(columns={"ed": "ed_pseudo", "es": "es_pseudo"})


def every_patient_network(seqs: list, best_epochs: list[int], epochs: int, start: dict, bs: int, delta: float,
                          upsilon: float, seed: int, how: Tuning):
    """TempReg-Net fine-tuned from its phantom weights (`start`) on every real patient's sequence, as the shipped
    row's fine-tuning, for the folds' median best epoch (`epochs` without them; nothing left to choose on)."""
    dls = dataloaders(seqs, bs=bs, delta=delta, upsilon=upsilon, seed=seed_for(seed, "real", "all"))
    n = max(1, int(np.median(best_epochs))) if best_epochs else epochs
    return tune_one("TempReg-Net", start, dls, seed_for(seed, "edes", "real", "all"), how, epochs=n, best=False)[0]


def real_cines_result(res: pd.DataFrame, logs: list[dict], short_frames: int, curve_smooth: list, frames: int,
                      seed: int, folds: int) -> RealCines:
    """The real patients' per-cine rows summarised: the table over every cine, the detector the rule picks on all of
    them (`ship`), the rule scored by nested cross-validation, its check line and its network's best epochs."""
    table = real_afd_table(res, short_frames)
    kinds = detector_kinds(curve_smooth, frames)
    shipped, choice, picks, procedure = ship(res, kinds, short_frames, seed)
    best = [int(g["best_epoch"]) for g in logs if g["method"] == (kinds[shipped][4] or "TempReg-Net")]
    return RealCines(res, table, choice, shipped, *kinds[shipped], picks, procedure,
                     check_line(procedure, table, res["cine_id"].nunique(), folds), best)


def shipped_predictor(real: "RealCines", provenance, size: int, zoom: float, segmenter_training, network
                      ) -> Predictor:
    """The ED/ES Predictor of the detector the rule picked on every real patient, with the rule's nested check:
    the volume curve (it reads the run's segmenter, `segmenter_training()` saying what that learned from), or
    TempReg-Net fine-tuned on every real patient (`network()`: the network and its cines), alone or combined with
    the curve. `provenance(check, **more)` is the run's provenance record."""
    chose = (f"chosen on {int(real.choice.n.iloc[0])} real ACDC SAX cines, its rule's error by nested "
             f"cross-validation, {CHOSEN_AMONG}")
    if real.kind == VOLUME_CURVE:
        seg = segmenter_training()
        return Predictor.from_volume_curve(real.smooth, provenance(
            real.check, real_training=f"none of its own; it reads the run's segmenter"
            f"{f' (trained on {seg})' if seg else ''}; {chose}"), decoder=real.decoder)
    net, n = network()
    prov = provenance(real.check, real_training=f"{n} real ACDC SAX cines; {chose}")
    name = "TempReg-Net (fine-tuned on real patients)"
    if real.kind == NETWORK:
        return Predictor.from_model(net, name, size, zoom, provenance=prov, decoder=real.decoder,
                                    reading=real.reading)
    return Predictor.combined(net, name, size, zoom, curve_smooth=real.smooth, provenance=prov)

