"""MVnet's experiment (Gonzales et al. 2021) on the run's 2CH and 4CH cines: the valve tracks, the trackers of both
stages (trained or reused), test-time crops and smoothing chosen on validation, spatial errors per stage, MAPSE
and e' against the reference and a second observer, the reference's own noise, the annotation-convention matrix,
real cines, and the run's MVnet Predictor."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
import pandas as pd

from ...distributed import rank
from ...learn import Fitted, config_from
from ...longform import STAGE_METHODS, from_columns
from ...plots import agreement_figure
from ...study import Study as Base, StudyError, StudySkipped, shows
from .data import Tracks, convention_tracks, load_tracks
from .evaluate import (AGREEMENT, AGREEMENT_UNITS, Inference, TestResults, agreement_tables, convention_matrix,
                       inference_settings, observer_frames, phantom_checks, pooled_displacement_error,
                       summarise_spatial, test_results, tracker_costs)
from .figures import CAPTIONS as FIGURE_CAPTIONS
from .figures import displacement_figure, heatmap_figure, spatial_figure, tracking_figure
from .learner import MVConfig, convention_predictions, fit_or_load
from .predict import MVnet, predict_all, tta_shifts
from .predictor import Predictor
from .real import RealTracked, Tuning, carried_check, fine_tune_4ch, pseudo_check, real_rows, with_references

CONVENTIONS = ("A", "B", "mixed")  # the annotation conventions a tracker is trained on (the paper's Fig. 6)


@dataclass(frozen=True)
class Conventions:
    """The convention matrix, the convention trackers' logs, their views and epochs."""

    matrix: pd.DataFrame
    logs: list
    views: list
    epochs: tuple


class Study(Base):
    """Notebook 03: one step per cell, its named pieces shared as cached properties (`outline()` lists both)."""

    method = "mvnet"
    number = "03"
    CAPTIONS = FIGURE_CAPTIONS
    GLANCE = dict(method="MVnet", headline="ICC MAPSE / e'", paper="0.94 / 0.93",
                  phantom=[["MAPSE", "MAPSE ICC (MVnet vs ref)"], ["e'", "e' ICC (MVnet vs ref)"]],
                  real=[["annulus from the UK Biobank pseudo-labels (mm)",
                         "UKBB demo 4CH, * tracker, held-out cines*"]])
    BATCHES = ("bs",)
    PARAMS: ClassVar[dict] = {
        # study
        **Base.RUN,  # profile, seed, run_dir, figures_dir, budget_min
        "data_dir": None,            # real-data root (mvnet-dicom-sample/, ukbb-demo/); None -> $CMRLIB_DATA
        "views": ["2CH", "4CH"],
        "max_train": None,           # cap on training cines per view (None: all)
        "max_test": None,            # cap on test cines per view
        "eval_splits": ["test"],     # splits evaluated (smoke adds "valid": a tiny cohort has < 3 test subjects)
        "variability": True,         # train on convention B only and mixed, evaluate each on each (Fig. 6)
        "variability_views": None,   # views for the convention experiment (None: all of `views`)
        "real_cines": True,          # run the tracker on the real DICOM / NIfTI cines when present
        "epochs_real": 2,            # the 4CH tracker fine-tuned on phantom + one UK Biobank demo subject's pseudo-reference annulus (epochs per stage); 0: none
        "real_subject": "ukbb-demo-1",  # the demo subject it trains on; the other is held out and scored
        "real_share": 0.25,          # share of that tracker's training cines that are the demo's (repeated)
        "real_tracker": "phantom",   # 4CH tracker the run's MVnet Predictor carries: "phantom" or "real" (the fine-tuned one)
        "retrain": False,            # True: train again even where {run_dir}/03/models holds a tracker trained with these settings
        # model
        "threads": 1,                # torch CPU threads (2 threads on a shared 2-core CPU can be 20x slower)
        "arch": "tiny",              # tiny | resnet18 | resnet34 | resnet50 (the paper's)
        "widths": [16, 32, 64, 128],  # tiny only
        "blocks": [1, 1, 1, 1],      # tiny only
        "head": "softargmax",        # tiny only: pool (linear on pooled features) | flat | softargmax
        "coords": False,             # tiny only: CoordConv input channels
        "pretrained": False,         # ImageNet init (torchvision archs; fails clearly offline)
        "epochs1": 2,                # stage-1 epochs
        "epochs2": 2,                # stage-2 epochs
        "frames_per_cine": 10,       # frames drawn per training cine and epoch (None: all)
        "bs": 32,
        "lr": 3e-3,
        "schedule": "one_cycle",     # one_cycle | fit (constant lr, the paper's Adam 1e-4)
        "perturb_mm": 6.0,           # stage-2 training standardises from points moved by N(0, u * perturb_mm), u ~ U(0, 1)
        "n_refine": 2,               # stage-2 passes (2 gives 1+2+2)
        "window2": 2,                # stage-2 soft-argmax at inference: +-cells around the peak (None: whole map, centre-biased)
        "smooth": "valid",           # Savitzky-Golay window (frames) over each pass's track; None: raw points; "valid": window and tta chosen on validation cines
        "tta": 3.0,                  # last stage-2 pass: mean of 5 crops shifted by 0 or +-N standardised px (None: one crop)
        "velocity_window": 5,        # Savitzky-Golay window (frames) for the valve velocity; None: central differences
        "variability_epochs": None,  # [epochs1, epochs2] for the convention models (None: as the main model, which is reused)
    }

    def __init__(self, params: dict, out=None):
        super().__init__(params, out)
        p = self.p
        # the parameters that name MVConfig's fields ("valid": the smoothing is chosen on validation cines)
        self.cfg = config_from(MVConfig, p, smooth=None if p["smooth"] == "valid" else p["smooth"])
        self.models_dir = self.out / "models"
        if p["real_tracker"] not in ("phantom", "real"):
            raise StudyError(f"real_tracker is 'phantom' or 'real', got {p['real_tracker']!r}")

    @cached_property
    def data(self) -> Tracks:
        """Each view's cines and valve tracks by annotation (observer 1 convention A and B, observer 2, the truth)."""
        p = self.p
        return load_tracks(self.store, p["views"], p["max_train"], p["max_test"], p["eval_splits"])

    def prepare(self) -> pd.DataFrame:
        """Cines per view and split."""
        return pd.DataFrame([{"view": v, **{s: len(cs) for s, cs in by.items()},
                              "frames/cine": int(np.median([len(c.pixels) for c in by["train"]]))}
                             for v, by in self.data.cines.items()])

    def _tracker(self, view: str, name: str, cfg: MVConfig, epochs=None, finish=None) -> tuple[MVnet, pd.DataFrame]:
        """A view's tracker trained on annotation convention `name` ('A', 'B' or 'mixed'), or reused
        (`fit_or_load`, the protocol's reuse rule); with its log."""
        p = self.p
        tr, va = convention_tracks(view, name, self.data, p["seed"])
        prefix = f"conv{name}" if epochs else name
        return fit_or_load(tr, va, cfg, view, self.models_dir, prefix, quiet=finish is not None, epochs=epochs,
                           retrain=p["retrain"], cohort=self.store.fingerprint(), finish=finish)

    def make_trackers(self, finish=None) -> Fitted:
        """Stage 1 then stage 2 of each view's convention-A tracker (reused when the run folder holds one trained
        with these settings and cines, unless `retrain`; `finish`: `cmrlib fit`'s export); their training log."""
        nets, logs = {}, []
        for v in self.p["views"]:
            with self.nb.timer(f"{v} tracker, convention A"):
                nets[v], log = self._tracker(v, "A", self.cfg, finish=finish)
            logs.append(log)
        return Fitted(nets, pd.concat(logs, ignore_index=True))

    @cached_property
    def phantom_trackers(self) -> Fitted:
        """Each view's convention-A tracker as trained (inference settings not yet chosen), and the log."""
        return self.make_trackers()

    fit = shows("phantom_trackers.log", "The convention-A trackers' training log (`reused` rows come from the run "
                                        "folder).")

    def choose(self, trackers: dict[str, MVnet]) -> Inference:
        """With `smooth='valid'`: the smoothing window and test-time crops with the smallest |mean| + SD of the
        displacement error on the validation cines (the candidates written); else the profile's setting."""
        p = self.p
        inf = inference_settings(trackers, {v: self.data.tracks["obsA"][v]["valid"] for v in p["views"]}, p["smooth"],
                                 p["tta"])
        if inf.choices is not None:
            self.nb.table(inf.choices, "inference_valid")
        return inf

    @cached_property
    def inference(self) -> Inference:
        """The smoothing and test-time crops chosen for the phantom trackers (`choose`), set on them."""
        return self.choose(self.phantom_trackers.nets)

    @cached_property
    def trackers(self) -> dict[str, MVnet]:
        """The convention-A trackers with the chosen smoothing and test-time crops."""
        _ = self.inference  # the chosen settings, set on the trackers
        return self.phantom_trackers.nets

    @cached_property
    def tuned_cfg(self) -> MVConfig:
        """The run's MVnet settings with the chosen smoothing and crops (the convention and real trackers run alike)."""
        return dataclasses.replace(self.cfg, smooth=self.inference.smooth, tta=self.inference.tta)

    def choose_inference(self) -> pd.DataFrame:
        """The smoothing window and test-time crop shift kept, with the candidates where they were chosen."""
        inf = self.inference
        print(f"track smoothing window: {inf.smooth}; test-time crop shift: {inf.tta} px")
        return inf.choices if inf.choices is not None else pd.DataFrame([dict(smooth=inf.smooth, tta=inf.tta,
                                                                              chosen_by="profile")])

    def train(self, finish=None, rows: int | None = None) -> list[dict]:
        """What `cmrlib fit mvnet` runs: both stages per view, each handed to `finish` (under `accelerate` each
        process trains on its share of every batch), then, in process 0, the inference settings chosen on the
        validation cines and the run's MVnet Predictor (the phantom trackers, no real-data check: notebook 03 adds
        it); one row per stage with its validation loss."""
        fitted = self.make_trackers(finish)
        if rank() == 0:
            self.choose(fitted.nets)
            self.write_predictor(fitted.nets, "phantom trackers (cmrlib fit): no real-data check")
        return [dict(r, model=f"{r['view']} stage {r['stage']}") for r in fitted.log.to_dict("records")]

    def write_predictor(self, trackers: dict[str, MVnet], note: str, real_tracker: MVnet | None = None):
        """The run's MVnet Predictor: the phantom trackers, the 4CH one fine-tuned on a real subject when
        `real_tracker` is 'real' and one was, with the velocity window and `note` on its real-data check."""
        trackers = dict(trackers)
        if self.p["real_tracker"] == "real" and real_tracker is not None:
            trackers["4CH"] = real_tracker
        return self.nb.predictor(Predictor.from_trackers(trackers, self.p["velocity_window"], self.nb.provenance(
            self.store, None, note=note)))

    @cached_property
    def test_results(self) -> TestResults:
        """Every stage on the test cines: point, angle and displacement errors per frame, the clinical measures per
        subject and their long shape for notebook 07 (written), and the seconds per cine."""
        with self.nb.timer("test inference"):
            t = test_results(self.trackers, self.data.tests, self.data.obs, self.p["velocity_window"])
        frames, subj = t.frames, t.subj
        self.nb.tables({"spatial_frames": frames, "spatial_summary": summarise_spatial(frames),
                        "clinical_subjects": subj})
        self.nb.table(from_columns(subj, STAGE_METHODS, "phantom", "observer 1", self.store.conditions()),
                      "measures_long")
        return t

    def evaluate(self) -> pd.DataFrame:
        """Errors per stage and view on the test cines, with the paper's Fig. 4/5."""
        t = self.test_results
        print(f"inference: {t.sec_per_cine:.2f} s per cine (1+{'+'.join(['2'] * self.cfg.n_refine)}, "
              f"{len(tta_shifts(self.inference.tta))} crops in the last pass, {self.p['threads']} threads, shared CPU)")
        self.figure(spatial_figure(t.frames), "03_spatial_errors")
        self.figure(displacement_figure(t.frames), "03_displacement_error")
        return summarise_spatial(t.frames)

    def example_figure(self) -> None:
        """The reference and tracked points over a typical test cine of the last view."""
        v0 = self.p["views"][-1]
        tests = self.data.tests[v0]
        i0 = int(np.argsort([np.ptp(t.points[:, :, 1]) for t in tests])[len(tests) // 2])  # a typical case
        t = tests[i0]
        fig = tracking_figure(t.pixels, {"reference": t.points,
                                         "MVnet 1+2+2": self.test_results.preds[v0][i0]["1+2+2"]},
                              t.spacing, title=f"{v0} test case", ed=t.ed)
        self.figure(fig, "03_tracking_example")

    @cached_property
    def agreement_tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """MAPSE and e' of MVnet, a second observer and the true motion against the reference, overall and per
        stage (the paper's Tables 4/5; written)."""
        agree, by_stage = agreement_tables(self.test_results.subj)
        self.nb.tables({"agreement": agree, "agreement_by_stage": by_stage})
        return agree, by_stage

    def agreement(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The agreement tables and their figure (MVnet and a second observer against observer 1)."""
        agree, by_stage = self.agreement_tables
        shown = ("MAPSE MVnet", "e' MVnet", "MAPSE observer 2", "e' observer 2")
        self.figure(agreement_figure(self.test_results.subj, {k: AGREEMENT[k] for k in shown}, AGREEMENT_UNITS),
                    "03_agreement")
        cols = ["measure", "unit", "n", "ref_str", "auto_str", "bias", "sd", "icc2", "icc2_low", "icc2_high", "r"]
        return agree[cols], by_stage[cols]

    def reference_noise(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """How far observer 2 and the true motion sit from the reference, beside MVnet (written)."""
        frames = self.test_results.frames
        ref_noise = pd.concat([observer_frames(self.data.obs, self.data.tests), frames[frames["stage"] == "1+2+2"]],
                              ignore_index=True)
        pooled = self.nb.kept(pooled_displacement_error(ref_noise), "reference_noise")
        return summarise_spatial(ref_noise), pooled

    @cached_property
    def convention_runs(self) -> Conventions:
        """Trackers trained on convention A, B and mixed (trained or reused), each against the A and B references
        (the paper's Fig. 6; written); `StudySkipped` with `variability` off."""
        p = self.p
        if not p["variability"]:
            raise StudySkipped("variability experiment off (variability=False)")
        vviews = list(p["variability_views"] or p["views"])
        ep = tuple(p["variability_epochs"]) if p["variability_epochs"] else None
        tests = self.data.tests
        var_tests = {"A": {v: tests[v] for v in vviews}, "B": {v: self.data.tracks["obsB"][v]["test"] for v in vviews}}
        var_preds = {} if ep else {"A": {v: self.test_results.preds[v] for v in vviews}}  # a shorter budget retrains A
        more, logs = convention_predictions(vviews, [n for n in CONVENTIONS if n not in var_preds],
                                            lambda v, n: self._tracker(v, n, self.tuned_cfg, ep), var_tests["A"],
                                            self.nb.timer)
        conv = convention_matrix({**var_preds, **more}, var_tests, window=p["velocity_window"])
        self.nb.table(conv, "conventions")
        return Conventions(conv, logs, vviews, ep or (self.cfg.epochs1, self.cfg.epochs2))

    def conventions(self) -> pd.DataFrame:
        """The convention matrix and its figure (Fig. 6)."""
        c = self.convention_runs
        print(f"convention models: views {c.views}, epochs {c.epochs}")
        self.figure(heatmap_figure(c.matrix), "03_conventions")
        return c.matrix

    def train_log(self) -> pd.DataFrame:
        """Every tracker's training rows: convention A's, then the convention experiment's (written)."""
        conv = self.optional("convention_runs")
        log = pd.concat([self.phantom_trackers.log, *(conv.logs if conv is not None else [])], ignore_index=True)
        return self.nb.kept(log, "train_log")

    def _real(self) -> list:
        """(name, cine) of the real DICOM and UK-Biobank-style cines under the data root that a tracker reads."""
        if not self.p["real_cines"]:
            raise StudySkipped("real cines off (real_cines=False)")
        return self.real_named(tuple(self.p["views"]), "real DICOM or UK Biobank cines")

    def _fit_real(self, cines: list[tuple]) -> MVnet | None:
        """The 4CH tracker fine-tuned on one demo subject (`real.fine_tune_4ch`; its stages exported) and its phantom
        test error beside the phantom tracker's (written); None when it is not fine-tuned."""
        p = self.p
        if "4CH" not in self.trackers:
            print("no fine-tuned 4CH tracker (no phantom 4CH tracker)")
            return None
        tuned, said = fine_tune_4ch(cines, self.trackers["4CH"], self.data.tracks["obsA"]["4CH"]["train"],
                                    self.data.tracks["obsA"]["4CH"]["valid"], self.cfg,
                                    Tuning(p["epochs_real"], p["real_share"], p["real_subject"], p["seed"]),
                                    self.models_dir)
        print(said)
        if tuned is not None:
            self._phantom_after_fine_tuning(tuned)
        return tuned

    def _phantom_after_fine_tuning(self, tuned: MVnet) -> None:
        """Phantom 4CH test point and displacement errors of both 4CH trackers (written): what the real cine costs
        on the phantom."""
        tests = self.data.tests["4CH"]
        both = {"phantom": self.test_results.preds["4CH"],
                "fine-tuned": predict_all({"4CH": tuned}, {"4CH": tests})["4CH"]}
        self.nb.table(tracker_costs(both, tests, self.p["velocity_window"]), "phantom_4ch_trackers", index=True)

    @cached_property
    def real_results(self) -> RealTracked:
        """The trackers on real cines (`real.real_row`): the measures and an overlay figure each, the point error
        against the pseudo-reference where a cine has one; the phantom tracker on every cine, the fine-tuned 4CH one
        on the 4CH cines with its training subject marked (`trained_on`); `StudySkipped` without real cines."""
        found = with_references(self._real())
        with self.nb.timer("4CH tracker fine-tuned on the demo"):
            tuned = self._fit_real([(c, ref) for _, c, _, ref in found])
        table, figures = real_rows(found, self.trackers, tuned, self.p["real_subject"], self.p["velocity_window"])
        for name, c, shown, ref in figures:
            slug = name.lower().replace(" ", "_").replace("#", "")
            self.figure(tracking_figure(c.pixels, shown, c.spacing, title=name), f"03_real_{slug}",
                        "03_real" if ref is not None else "03_real_without_reference")
        return RealTracked(self.nb.kept(table, "real_cines"), tuned)

    real_cines = shows("real_results.table", "The trackers' measures on the real cines, and their error against the "
                                             "demo's pseudo-reference.")

    PAPER_FIGURES = ("03_spatial_errors", "03_displacement_error", "03_conventions")

    @classmethod
    def paper_figures(cls, run_dir):
        """MVnet's spatial and displacement errors, and its annulus conventions against each other."""
        if (f := run_dir / "03" / "spatial_frames.csv").exists():
            frames = pd.read_csv(f)
            yield "03_spatial_errors", spatial_figure(frames)
            yield "03_displacement_error", displacement_figure(frames)
        if (f := run_dir / "03" / "conventions.csv").exists():
            yield "03_conventions", heatmap_figure(pd.read_csv(f))

    def headline_tables(self):
        """Agreement with observer 1 per stage on the phantom's test split, asked for by name."""
        if (agreed := self.optional("agreement_tables")) is not None:
            yield ("headline_agreement", "MVnet: agreement with observer 1 per stage (phantom test)",
                   agreed[1][["measure", "unit", "n", "bias", "loa_low", "loa_high", "mae", "icc2"]].round(3))

    def checks(self) -> pd.DataFrame:
        """The paper's agreement, displacement and speed targets (written, with the training log); the trackers with
        the chosen smoothing and crops become the run's MVnet Predictor."""
        t, real = self.test_results, self.optional("real_results")
        targets = self.targets([*phantom_checks(self.agreement_tables[0], t.frames, t.sec_per_cine),
                                *pseudo_check(None if real is None else real.table)])
        self.train_log()
        self.write_predictor(self.trackers, *carried_check(real, self.p["real_tracker"]))
        print(f"notebook 03 ran in {self.minutes() * 60:.0f} s (profile {self.p['profile']})")
        return targets
