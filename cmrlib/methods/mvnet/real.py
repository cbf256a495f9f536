"""MVnet on real cines: the trackers' measures on every DICOM and UK-Biobank-style 2CH/4CH cine, and, where a cine
has LV and LA pseudo-labels (the UK Biobank demo's 4CH), the annulus they imply as a pseudo-reference; the 4CH
tracker fine-tuned on one demo subject, the other never trained on nor used for a choice."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...distributed import rank
from ...learn import export
from ...measure import fill_gaps
from ...utils import seed_for, seeded
from .data import Track
from .evaluate import clinical, pseudo_point_error, pseudo_reference
from .learner import MVConfig, train_stage
from .predict import MVnet, model_path

ANNULUS_MM = 4.0  # the held-out demo cines' mean distance from the pseudo-label annulus, at most


@dataclass(frozen=True)
class RealTracked:
    """The trackers on the real cines, and the 4CH tracker fine-tuned on a demo subject (None: none)."""

    table: pd.DataFrame
    tuned: MVnet | None


@dataclass(frozen=True)
class Tuning:
    """How the 4CH tracker is fine-tuned on a demo subject: epochs per stage (0: not), the real cine's share of the
    training cines, the subject, the run's seed."""

    epochs: int
    share: float
    subject: str
    seed: int


def with_references(found: list) -> list[tuple]:
    """(name, cine, scored, filled) per real cine: the pseudo-reference on the frames with a valve line of their own
    (scored) and with its gaps filled (what the measures and the training read); None without pseudo-labels."""
    out = []
    for name, c in found:
        scored = pseudo_reference(c.labels, c.spacing, fill=False)
        out.append((name, c, scored, None if scored is None else fill_gaps(scored)))
    return out


def fine_tune_4ch(cines: list[tuple], base: MVnet, phantom: list, valid: list, cfg: MVConfig, how: Tuning,
                  models_dir) -> tuple[MVnet, str] | tuple[None, str]:
    """The 4CH tracker fine-tuned, both stages, from `base` on the phantom's training tracks plus the demo subject's
    4CH cine with its pseudo-reference ((cine, filled reference or None) pairs), repeated to `how.share` of the
    training cines and monitored on phantom validation only, each stage exported to `models_dir` (by process 0 when
    data-parallel); the tracker, or None, and what was done."""
    real = [Track(c.pixels, c.spacing, ref, c.frame_times, 0, c.subject, c.view) for c, ref in cines
            if c.subject == how.subject and c.view == "4CH" and ref is not None]
    if not how.epochs or not real:
        return None, (f"no fine-tuned 4CH tracker (epochs_real={how.epochs}, {len(real)} demo 4CH cines of "
                      f"{how.subject!r} with a pseudo-reference)")
    repeats = max(1, round(how.share / (1 - how.share) * len(phantom) / len(real)))
    t0, stages = time.perf_counter(), []
    for stage, net in ((1, base.stage1), (2, base.stage2)):
        with seeded(seed_for(how.seed, "mvnet", "real", stage, "init")):
            learn = train_stage(phantom + real * repeats, valid, stage, copy.deepcopy(net), how.epochs, cfg.bs, cfg.lr,
                                cfg.schedule, cfg.perturb_mm, seed=seed_for(how.seed, "mvnet", "real", stage, "data"),
                                quiet=True, frames_per_cine=cfg.frames_per_cine)
        if rank() == 0:
            export(learn, model_path(models_dir, "4CH", stage, "real"))
        stages.append(learn.model)
    tuned = MVnet(stages[0], stages[1], "4CH", base.n_refine, base.smooth, base.tta)
    return tuned, (f"4CH tracker fine-tuned on {how.subject} ({len(real)} cine x {repeats} beside {len(phantom)} "
                   f"phantom cines, {how.epochs} epochs per stage) in {time.perf_counter() - t0:.0f} s")


def carried_check(real: "RealTracked | None", real_tracker: str) -> tuple[str, MVnet | None]:
    """The Predictor's real-data check line, on the 4CH tracker it carries (the fine-tuned one where `real_tracker`
    is 'real' and one was; not the one the target scores), and that fine-tuned tracker (None: none)."""
    tuned = None if real is None else real.tuned
    carried = "fine-tuned" if real_tracker == "real" and tuned is not None else "phantom"
    pseudo = pseudo_check(None if real is None else real.table, carried)
    return (f"{pseudo[0][0]}: {pseudo[0][1]:.1f}" if pseudo else "real cines run without a reference (qualitative "
            "only)"), tuned


def real_row(name: str, c, which: str, tracker: MVnet, scored: np.ndarray | None, ref: np.ndarray | None,
             shown: dict, trained_on: str, window: int | None) -> dict:
    """One tracker on one real cine: its point error against the pseudo-reference's frames with a valve line
    (`scored`) and its measures beside the filled reference's (`ref`), where there is one; its tracks join `shown`
    for the figure (`trained_on`: the subject the fine-tuned tracker saw)."""
    t0 = time.perf_counter()
    out = tracker.track(c.pixels, c.spacing)
    dt = time.perf_counter() - t0
    tr = Track(c.pixels, c.spacing, None, c.frame_times, 0, name, c.view)
    row = dict(cine=name, view=c.view, tracker=which, trained_on=which == "fine-tuned" and str(c.subject) == trained_on,
               frames=c.n_frames, spacing_mm=round(c.spacing[0], 3), seconds=dt,
               **clinical({c.view: (out["1+2+2"], tr)}, window))
    if which == "phantom":
        shown["stage 1"] = out["1"]
    shown[f"1+2+2 ({which})"] = out["1+2+2"]
    if ref is not None:
        row.update(point_err_mm=pseudo_point_error(out["1+2+2"], scored, c.spacing),
                   ref_frames=int(np.isfinite(scored).all(axis=(1, 2)).sum()),
                   **{f"{k}_pseudo": v for k, v in clinical({c.view: (ref, tr)}, window).items()})
    return row


def real_rows(found: list[tuple], trackers: dict, tuned: MVnet | None, trained_on: str, window: int | None
              ) -> tuple[pd.DataFrame, list[tuple]]:
    """The phantom tracker of each cine's view on every real cine, and the fine-tuned one on the 4CH cines
    (`real_row`): the table, and per cine (name, cine, tracks shown with the pseudo-reference's, reference or
    None) for its figure."""
    rows, figures = [], []
    for name, c, scored, ref in found:
        which = {"phantom": trackers[c.view], **({"fine-tuned": tuned} if tuned is not None and c.view == "4CH"
                                                  else {})}
        shown = {}
        rows += [real_row(name, c, w, tracker, scored, ref, shown, trained_on, window) for w, tracker in which.items()]
        if ref is not None:
            shown["pseudo-labels"] = ref
        figures.append((name, c, shown, ref))
    return pd.DataFrame(rows), figures


def pseudo_check(tab: pd.DataFrame | None, which: str | None = None) -> list[tuple]:
    """The real-cine target (none without a pseudo-reference): the 4CH annulus within `ANNULUS_MM` of the points the
    UK Biobank demo's 4CH pseudo-labels imply, on average over the cines tracker `which` ('phantom' or 'fine-tuned';
    by default the fine-tuned one where there is one) never trained on."""
    if tab is None or "point_err_mm" not in tab or tab["point_err_mm"].isna().all():
        return []
    which = which or ("fine-tuned" if (tab["tracker"] == "fine-tuned").any() else "phantom")
    held = tab[(tab["tracker"] == which) & ~tab["trained_on"] & tab["point_err_mm"].notna()]
    if held.empty:
        return []
    return [(f"UKBB demo 4CH, {which} tracker, held-out cines: mean distance from the pseudo-label annulus (mm)",
             held["point_err_mm"].mean(), "<=", ANNULUS_MM)]
