"""MVnet's experiment (Gonzales et al. 2021) on the run's 2CH and 4CH cines: the valve tracks, the trackers of both
stages (trained or reused), test-time crops and smoothing chosen on validation, spatial errors per stage, MAPSE
and e' against the reference and a second observer, the reference's own noise, the annotation-convention matrix,
real cines, and the run's MVnet Predictor."""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import ClassVar

import numpy as np
import pandas as pd

from ...distributed import rank
from ...learn import config_from, export
from ...longform import STAGE_METHODS, from_columns
from ...plots import agreement_figure
from ...stats import agreement_table
from ...utils import seed_for, seeded
from ...study import Study as Base, StudyError, StudySkipped
from .data import Track, load_cines, mixed_tracks, tracks_from_cines
from .evaluate import (choose_inference, clinical, convention_matrix, evaluate, observer_frames,
                       pooled_displacement_error, pseudo_point_error, pseudo_reference, summarise_spatial)
from .figures import displacement_figure, heatmap_figure, spatial_figure, tracking_figure
from .geometry import STAGES
from .learner import MVConfig, fit, fit_or_load, train_stage
from .predict import MVnet, model_path, predict_all, tta_shifts
from .predictor import Predictor

AGREEMENT = {"MAPSE MVnet": ("MAPSE_1+2+2", "MAPSE_ref"), "MAPSE observer 2": ("MAPSE_obsA2", "MAPSE_ref"),
             "MAPSE true motion": ("MAPSE_truth", "MAPSE_ref"), "e' MVnet": ("e_prime_1+2+2", "e_prime_ref"),
             "e' observer 2": ("e_prime_obsA2", "e_prime_ref"), "e' true motion": ("e_prime_truth", "e_prime_ref")}

CONVENTIONS = ("A", "B", "mixed")  # the annotation conventions a tracker is trained on (the paper's Fig. 6)


class Study(Base):
    """Notebook 03: `prepare`, `fit`, `choose_inference`, `evaluate`, `example_figure`, `agreement`,
    `reference_noise`, `conventions`, `real_cines`, `checks`."""

    method = "mvnet"
    number = "03"
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
        self.real_tab, self.real_tracker = None, None
        if p["real_tracker"] not in ("phantom", "real"):
            raise StudyError(f"real_tracker is 'phantom' or 'real', got {p['real_tracker']!r}")

    def prepare(self) -> pd.DataFrame:
        """Each view's cines and valve tracks by annotation (observer 1 convention A and B, observer 2, the truth);
        cines per view and split."""
        p, store, views = self.p, self.store, self.p["views"]
        self.cines = {v: {s: load_cines(store, v, s, p["max_train"]) for s in ("train", "valid")} for v in views}
        for v in views:
            self.cines[v]["test"] = [c for s in p["eval_splits"] for c in load_cines(store, v, s, p["max_test"])]
        self.tracks = {k: {v: {s: tracks_from_cines(cs, k) for s, cs in by.items()} for v, by in self.cines.items()}
                       for k in ("obsA", "obsB")}
        self.obs = {k: {v: [c.landmarks[k] for c in self.cines[v]["test"]] for v in views} for k in ("obsA2", "truth")}
        self.tests = {v: self.tracks["obsA"][v]["test"] for v in views}
        return pd.DataFrame([{"view": v, **{s: len(cs) for s, cs in by.items()},
                              "frames/cine": int(np.median([len(c.pixels) for c in by["train"]]))}
                             for v, by in self.cines.items()])

    def fit(self) -> pd.DataFrame:
        """Stage 1 then stage 2 of each view's convention-A tracker (reused when the run folder holds one trained
        with these settings and cines, unless `retrain`); the training log (written)."""
        self.trackers, self.logs = {}, []
        for v in self.p["views"]:
            with self.nb.timer(f"{v} tracker, convention A"):
                self.trackers[v], log = fit_or_load(self.tracks["obsA"][v]["train"], self.tracks["obsA"][v]["valid"],
                                                    self.cfg, v, self.models_dir, "A", retrain=self.p["retrain"],
                                                    cohort=self.store.fingerprint())
            self.logs.append(log)
        train_log = pd.concat(self.logs, ignore_index=True)
        self.nb.table(train_log, "train_log")
        return train_log

    def train(self, finish=None, rows: int | None = None) -> list[dict]:
        """What `cmrlib fit mvnet` runs: both stages per view, written by process 0 (under `accelerate` each
        process trains on its share of every batch), the inference settings chosen on the validation cines and the
        run's MVnet Predictor (process 0; the phantom trackers, no real-data check: notebook 03 adds it); one row
        per stage with the validation loss `fit` logs."""
        self.prepare()
        rows, self.trackers = [], {}
        for v in self.p["views"]:
            self.trackers[v], log = fit(self.tracks["obsA"][v]["train"], self.tracks["obsA"][v]["valid"], self.cfg,
                                        v, self.out if rank() == 0 else None, "A", quiet=True)
            rows += [dict(r, model=f"{v} stage {r['stage']}") for r in log.to_dict("records")]
        if rank() == 0:
            self.choose_inference()
            self.write_predictor("phantom trackers (cmrlib fit): no real-data check")
        return rows

    def write_predictor(self, note: str):
        """The run's MVnet Predictor: the phantom trackers, the 4CH one fine-tuned on a real subject when
        `real_tracker` is 'real' and one was, with the velocity window and `note` on its real-data check."""
        trackers = dict(self.trackers)
        if self.p["real_tracker"] == "real" and self.real_tracker is not None:
            trackers["4CH"] = self.real_tracker
        return self.nb.predictor(Predictor.from_trackers(trackers, self.p["velocity_window"], self.nb.provenance(
            self.store, None, note=note)))

    def choose_inference(self) -> pd.DataFrame:
        """With `smooth='valid'`: the smoothing window and test-time crops with the smallest |mean| + SD of the
        displacement error on validation cines, set on every tracker (written); the candidates, or the one setting
        the profile fixes."""
        p, choices = self.p, None
        smooth, tta = p["smooth"], p["tta"]
        if smooth == "valid":
            valid_tracks = {v: ts for v in p["views"] if len(ts := self.tracks["obsA"][v]["valid"])}
            choice = dict(smooth=None, tta=tta)
            if valid_tracks:
                choice, choices = choose_inference(self.trackers, valid_tracks, ttas=(None, tta) if tta else (None,))
                self.nb.table(choices, "inference_valid")
            smooth, tta = choice["smooth"], choice["tta"]
            self.cfg = dataclasses.replace(self.cfg, smooth=smooth, tta=tta)  # the convention models run alike
            for tr in self.trackers.values():
                tr.smooth, tr.tta = smooth, tta
        print(f"track smoothing window: {smooth}; test-time crop shift: {tta} px")
        return choices if choices is not None else pd.DataFrame([dict(smooth=smooth, tta=tta, chosen_by="profile")])

    def evaluate(self) -> pd.DataFrame:
        """Every stage on the test cines: point, angle and displacement errors per frame, the clinical measures per
        subject and their long shape for notebook 07 (written, with the paper's Fig. 4/5); errors per stage."""
        p = self.p
        t0 = time.perf_counter()
        with self.nb.timer("test inference"):
            self.preds = predict_all(self.trackers, self.tests)
        n_cines = sum(len(t) for t in self.tests.values())
        self.sec_per_cine = (time.perf_counter() - t0) / max(n_cines, 1)
        self.frames, self.subj = evaluate(self.preds, self.tests, self.obs, window=p["velocity_window"])
        spatial = summarise_spatial(self.frames)
        self.nb.table(self.frames, "spatial_frames")
        self.nb.table(spatial, "spatial_summary")
        self.nb.table(self.subj, "clinical_subjects")
        m = self.store.manifest().drop_duplicates("subject").set_index("subject")
        conditions = m["condition"].to_dict() if "condition" in m else {}
        self.nb.table(from_columns(self.subj, STAGE_METHODS, "phantom", "observer 1", conditions), "measures_long")
        print(f"inference: {self.sec_per_cine:.2f} s per cine (1+{'+'.join(['2'] * self.cfg.n_refine)}, "
              f"{len(tta_shifts(self.cfg.tta))} crops in the last pass, {p['threads']} threads, shared CPU)")
        self.nb.figure(spatial_figure(self.frames), "03_spatial_errors",
                       "MVnet point errors per stage and view (the paper's Fig. 4/5)")
        self.nb.figure(displacement_figure(self.frames), "03_displacement_error",
                       "MVnet valve displacement error per stage over the cycle")
        return spatial

    def example_figure(self) -> None:
        """The reference and tracked points over a typical test cine of the last view."""
        v0 = self.p["views"][-1]
        tests = self.tests[v0]
        i0 = int(np.argsort([np.ptp(t.points[:, :, 1]) for t in tests])[len(tests) // 2])  # a typical case
        t = tests[i0]
        fig = tracking_figure(t.pixels, {"reference": t.points, "MVnet 1+2+2": self.preds[v0][i0]["1+2+2"]},
                              t.spacing, title=f"{v0} test case", ed=t.ed)
        self.nb.figure(fig, "03_tracking_example", "MVnet tracked valve points on a test cine, per stage")

    def agreement(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """MAPSE and e' of MVnet, a second observer and the true motion against the reference, overall and per
        stage (the paper's Tables 4/5; written with the figure)."""
        subj = self.subj
        units = {k: ("mm" if k.startswith("MAPSE") else "cm/s") for k in AGREEMENT}
        n_subj = int(subj[["MAPSE_ref", "MAPSE_1+2+2"]].notna().all(axis=1).sum())
        if n_subj < 3:
            raise ValueError(f"only {n_subj} evaluated subjects: agreement statistics need >= 3 (use a larger cohort)")
        self.agree = agreement_table(subj, AGREEMENT, units).reset_index()
        stage_pairs = {f"{m} stage {s}": (f"{m}_{s}", f"{m}_ref") for m in ("MAPSE", "e_prime") for s in STAGES}
        by_stage = agreement_table(subj, stage_pairs, {k: ("mm" if "MAPSE" in k else "cm/s") for k in stage_pairs}
                                   ).reset_index()
        self.nb.table(self.agree, "agreement")
        self.nb.table(by_stage, "agreement_by_stage")
        shown = ("MAPSE MVnet", "e' MVnet", "MAPSE observer 2", "e' observer 2")
        self.nb.figure(agreement_figure(subj, {k: AGREEMENT[k] for k in shown}, units), "03_agreement",
                       "MAPSE and e' of MVnet and of a second observer against observer 1")
        cols = ["measure", "unit", "n", "ref_str", "auto_str", "bias", "sd", "icc2", "icc2_low", "icc2_high", "r"]
        return self.agree[cols], by_stage[cols]

    def reference_noise(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """How far observer 2 and the true motion sit from the reference, beside MVnet (written)."""
        ref_noise = pd.concat([observer_frames(self.obs, self.tests), self.frames[self.frames["stage"] == "1+2+2"]],
                              ignore_index=True)
        pooled = pooled_displacement_error(ref_noise)
        self.nb.table(pooled, "reference_noise")
        return summarise_spatial(ref_noise), pooled

    def _convention_trackers(self, name: str, views: list[str], ep) -> dict:
        """Trackers trained on convention `name` ('A', 'B' or 'mixed'), trained or reused."""
        p, trk = self.p, {}
        for v in views:
            by = self.cines[v]
            tr, va = ((self.tracks["obsA" if name == "A" else "obsB"][v][s] for s in ("train", "valid"))
                      if name != "mixed" else
                      (mixed_tracks(by["train"], seed=seed_for(p["seed"], "mixed", "train")),
                       mixed_tracks(by["valid"], seed=seed_for(p["seed"], "mixed", "valid"))))
            trk[v], log = fit_or_load(tr, va, self.cfg, v, self.models_dir, f"conv{name}" if ep else name, epochs=ep,
                                      retrain=p["retrain"], cohort=self.store.fingerprint())
            self.logs.append(log)
        return trk

    def conventions(self) -> pd.DataFrame:
        """Trackers trained on convention A, B and mixed, each against the A and B references (the paper's Fig. 6;
        written); `StudySkipped` with `variability` off."""
        p = self.p
        if not p["variability"]:
            raise StudySkipped("variability experiment off (variability=False)")
        vviews = list(p["variability_views"] or p["views"])
        ep = tuple(p["variability_epochs"]) if p["variability_epochs"] else None
        var_tests = {"A": {v: self.tests[v] for v in vviews}, "B": {v: self.tracks["obsB"][v]["test"] for v in vviews}}
        var_preds = {} if ep else {"A": {v: self.preds[v] for v in vviews}}  # a shorter budget retrains A too
        for name in [n for n in CONVENTIONS if n not in var_preds]:
            with self.nb.timer(f"trackers, convention {name}"):
                var_preds[name] = predict_all(self._convention_trackers(name, vviews, ep), var_tests["A"])
        print(f"convention models: views {vviews}, epochs {ep or (self.cfg.epochs1, self.cfg.epochs2)}")
        conv = convention_matrix(var_preds, var_tests, window=p["velocity_window"])
        self.nb.table(conv, "conventions")
        self.nb.table(pd.concat(self.logs, ignore_index=True), "train_log")
        self.nb.figure(heatmap_figure(conv), "03_conventions",
                       "MVnet errors trained on one annotation convention and tested on another (Fig. 6)")
        return conv

    def _real(self) -> list:
        """(name, cine) of the real DICOM and UK-Biobank-style cines under the data root that a tracker reads."""
        if not self.p["real_cines"]:
            raise StudySkipped("real cines off (real_cines=False)")
        from ...io.real import real_cines

        found = real_cines(self.p["data_dir"], tuple(self.trackers))
        if not found:
            raise StudySkipped("no real DICOM or UK Biobank cines under the data root (set data_dir or $CMRLIB_DATA)")
        return found

    def _fit_real(self, cines: list[tuple]) -> MVnet | None:
        """The 4CH tracker fine-tuned, both stages, from the phantom one on the phantom's training tracks plus one
        demo subject's 4CH cine (`real_subject`) with the annulus its pseudo-labels imply (`cines`: (cine, filled
        pseudo-reference or None) pairs), repeated to `real_share` of the training cines and monitored on phantom
        validation only: the other demo subject is never trained on nor used for a choice. Its phantom test error
        beside the phantom tracker's (written)."""
        p, cfg = self.p, self.cfg
        real = [Track(c.pixels, c.spacing, ref, c.frame_times, 0, c.subject, c.view) for c, ref in cines
                if c.subject == p["real_subject"] and c.view == "4CH" and ref is not None]
        if not p["epochs_real"] or not real or "4CH" not in self.trackers:
            print(f"no fine-tuned 4CH tracker (epochs_real={p['epochs_real']}, {len(real)} demo 4CH cines of "
                  f"{p['real_subject']!r} with a pseudo-reference)")
            return None
        phantom = self.tracks["obsA"]["4CH"]["train"]
        repeats = max(1, round(p["real_share"] / (1 - p["real_share"]) * len(phantom) / len(real)))
        t0, stages = time.perf_counter(), []
        for stage, base in ((1, self.trackers["4CH"].stage1), (2, self.trackers["4CH"].stage2)):
            with seeded(seed_for(p["seed"], "mvnet", "real", stage, "init")):
                learn = train_stage(phantom + real * repeats, self.tracks["obsA"]["4CH"]["valid"], stage,
                                    copy.deepcopy(base), p["epochs_real"], cfg.bs, cfg.lr, cfg.schedule,
                                    cfg.perturb_mm, seed=seed_for(p["seed"], "mvnet", "real", stage, "data"),
                                    quiet=True, frames_per_cine=cfg.frames_per_cine)
            if rank() == 0:
                export(learn, model_path(self.models_dir, "4CH", stage, "real"))
            stages.append(learn.model)
        chosen = self.trackers["4CH"]
        self.real_tracker = MVnet(stages[0], stages[1], "4CH", chosen.n_refine, chosen.smooth, chosen.tta)
        print(f"4CH tracker fine-tuned on {p['real_subject']} ({len(real)} cine x {repeats} beside {len(phantom)} "
              f"phantom cines, {p['epochs_real']} epochs per stage) in {time.perf_counter() - t0:.0f} s")
        self._phantom_after_fine_tuning()
        return self.real_tracker

    def _phantom_after_fine_tuning(self) -> None:
        """Phantom 4CH test point and displacement errors of both 4CH trackers (written): what the real cine costs
        on the phantom."""
        tests = {"4CH": self.tests["4CH"]}
        both = {"phantom": self.preds["4CH"], "fine-tuned": predict_all({"4CH": self.real_tracker}, tests)["4CH"]}
        rows = []
        for name, preds in both.items():
            fr, _ = evaluate({"4CH": preds}, tests, window=self.p["velocity_window"])
            fr = fr[fr["stage"] == "1+2+2"]
            rows.append(dict(tracker=name, point_err_mm=fr["err_mm"].mean(), disp_err_mean_mm=fr["disp_err_mm"].mean(),
                             disp_err_sd_mm=fr["disp_err_mm"].std()))
        self.phantom_fine_tuned = pd.DataFrame(rows).set_index("tracker")
        self.nb.table(self.phantom_fine_tuned, "phantom_4ch_trackers", index=True)

    def real_cines(self) -> pd.DataFrame:
        """The trackers on real cines: the measures and an overlay figure each; where a cine has LV and LA
        pseudo-labels (the UK Biobank demo's 4CH), the annulus they imply (`pseudo_reference`) is a
        pseudo-reference: point error in mm over the frames with a plausible valve line (`ref_frames`), and MAPSE
        and e' from both. The phantom tracker on every cine, the fine-tuned 4CH one (`_fit_real`) on the 4CH cines
        with its training subject marked (`trained_on`); `StudySkipped` without real cines."""
        from ...measure import fill_gaps

        # scored on the frames with a valve line of their own, the measures and the training on the filled track
        real = []
        for name, c in self._real():
            scored = pseudo_reference(c.labels, c.spacing, fill=False)
            real.append((name, c, scored, None if scored is None else fill_gaps(scored)))
        with self.nb.timer("4CH tracker fine-tuned on the demo"):
            self._fit_real([(c, ref) for _, c, _, ref in real])
        rows = []
        for name, c, scored, ref in real:
            trackers = {"phantom": self.trackers[c.view]}
            if self.real_tracker is not None and c.view == "4CH":
                trackers["fine-tuned"] = self.real_tracker
            shown = {}
            for which, tracker in trackers.items():
                rows.append(self._real_row(name, c, which, tracker, scored, ref, shown))
            if ref is not None:
                shown["pseudo-labels"] = ref
            fig = tracking_figure(c.pixels, shown, c.spacing, title=name)
            slug = name.lower().replace(" ", "_").replace("#", "")
            self.nb.figure(fig, f"03_real_{slug}", "MVnet tracked valve points on a real cine"
                           + (", with the annulus its pseudo-labels imply" if ref is not None else " (no reference)"))
        self.real_tab = pd.DataFrame(rows)
        self.nb.table(self.real_tab, "real_cines")
        return self.real_tab

    def _real_row(self, name: str, c, which: str, tracker: MVnet, scored: np.ndarray | None, ref: np.ndarray | None,
                  shown: dict) -> dict:
        """One tracker on one real cine: its point error against the pseudo-reference's frames with a valve line
        (`scored`) and its measures beside the filled reference's (`ref`), where there is one; its tracks join
        `shown` for the figure."""
        t0 = time.perf_counter()
        out = tracker.track(c.pixels, c.spacing)
        dt = time.perf_counter() - t0
        tr = Track(c.pixels, c.spacing, None, c.frame_times, 0, name, c.view)
        row = dict(cine=name, view=c.view, tracker=which,
                   trained_on=which == "fine-tuned" and str(c.subject) == self.p["real_subject"], frames=c.n_frames,
                   spacing_mm=round(c.spacing[0], 3), seconds=dt,
                   **clinical({c.view: (out["1+2+2"], tr)}, self.p["velocity_window"]))
        if which == "phantom":
            shown["stage 1"] = out["1"]
        shown[f"1+2+2 ({which})"] = out["1+2+2"]
        if ref is not None:
            row.update(point_err_mm=pseudo_point_error(out["1+2+2"], scored, c.spacing),
                       ref_frames=int(np.isfinite(scored).all(axis=(1, 2)).sum()),
                       **{f"{k}_pseudo": v for k, v in clinical({c.view: (ref, tr)}, self.p["velocity_window"]).items()})
        return row

    def _pseudo_check(self, which: str | None = None) -> list[tuple]:
        """The real-cine target (none without a pseudo-reference): the 4CH annulus within 4 mm of the points the UK
        Biobank demo's 4CH pseudo-labels imply, on average over the cines tracker `which` ('phantom' or
        'fine-tuned'; by default the fine-tuned one where there is one) never trained on."""
        tab = self.real_tab
        if tab is None or "point_err_mm" not in tab or tab["point_err_mm"].isna().all():
            return []
        which = which or ("fine-tuned" if (tab["tracker"] == "fine-tuned").any() else "phantom")
        held = tab[(tab["tracker"] == which) & ~tab["trained_on"] & tab["point_err_mm"].notna()]
        if held.empty:
            return []
        return [(f"UKBB demo 4CH, {which} tracker, held-out cines: mean distance from the pseudo-label annulus (mm)",
                 held["point_err_mm"].mean(), "<=", 4.0)]

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
        """Agreement with observer 1 per stage on the phantom's test split."""
        if (d := self.written("agreement_by_stage")) is not None:
            yield ("headline_agreement", "MVnet: agreement with observer 1 per stage (phantom test)",
                   d[["measure", "unit", "n", "bias", "loa_low", "loa_high", "mae", "icc2"]].round(3))

    def checks(self) -> pd.DataFrame:
        """The paper's agreement, displacement and speed targets (written); the trackers with the chosen smoothing
        and crops become the run's MVnet Predictor."""
        a = self.agree.set_index("measure")
        frames = self.frames
        f3 = frames[frames["stage"] == "1+2+2"]
        e1, e3 = frames.loc[frames["stage"] == "1", "err_mm"].mean(), f3["err_mm"].mean()
        targets = self.targets([
            ("MAPSE ICC (MVnet vs ref)", a.loc["MAPSE MVnet", "icc2"], ">=", 0.94),
            ("e' ICC (MVnet vs ref)", a.loc["e' MVnet", "icc2"], ">=", 0.93),
            ("displacement error mean (mm)", f3["disp_err_mm"].mean(), "within", 0.10),
            ("displacement error SD (mm)", f3["disp_err_mm"].std(), "<=", 0.97),
            ("Euclidean error 1+2+2 vs 1 (mm)", e3 - e1, "<", 0.0),
            ("inference s per cine (1 s per 2-view patient)", self.sec_per_cine, "<=", 0.5),
            *self._pseudo_check(),
        ])
        carried = "fine-tuned" if self.p["real_tracker"] == "real" and self.real_tracker is not None else "phantom"
        pseudo = self._pseudo_check(carried)  # the tracker the Predictor carries, not the one the target scores
        self.write_predictor(f"{pseudo[0][0]}: {pseudo[0][1]:.1f}" if pseudo else
                             "real cines run without a reference (qualitative only)")
        print(f"notebook 03 ran in {self.minutes() * 60:.0f} s (profile {self.p['profile']})")
        return targets
