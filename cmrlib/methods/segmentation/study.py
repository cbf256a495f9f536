"""The segmentation experiment (TernausNet11 per view; Table-1 measures) on the run's cohort: the phantom SAX and
long-axis models trained (or reused) and calibrated on validation, Dice per view and structure on test, ACDC
held out, phantom-to-real transfer and fine-tuning, the measures' agreement with their references, and the run's
segmentation Predictor."""
from __future__ import annotations

import time
from typing import ClassVar

import pandas as pd

from ... import plots, stats
from ...data import pick_subjects
from ...labels import NAMES
from ...learn import export, record_settings, reusable
from ...longform import PHANTOM_REFERENCES, from_table1
from ...measure import UNITS, measure_pairs, subject_measures
from ...store import CohortStore
from ...study import Study as Base, StudySkipped
from ...utils import data_root
from .evaluate import evaluate, frame_scores, summarise
from .figures import case_panels
from .learner import as_model, dataloaders, fit, load, model_file
from .predict import calibrate_prior, log_prior, predict_store, uncertainty_reference
from .predictor import Predictor
from .recipes import recipe


def dice_all(table: pd.DataFrame, *key) -> float:
    """Mean Dice over all labelled frames for one (view,) structure of a summary table."""
    return float(table.loc[(*key, "all"), "dice_mean"])


class Study(Base):
    """Notebook 01: `fit`, `evaluate`, `ra_check`, `cases_figure`, `acdc`, `fit_acdc`, `sim_to_real`,
    `fine_tune_vs_scratch`, `sax_real`, `phantom_agreement`, `acdc_agreement`, `real_lax`, `lax_fine_tuning_cost`,
    `checks`."""

    method = "segmentation"
    number = "01"
    BATCHES = ("bs",)
    PARAMS: ClassVar[dict] = {
        # study
        **Base.RUN,  # profile, seed, run_dir, figures_dir, budget_min
        "data_dir": None,  # real-data root; None: $CMRLIB_DATA (ACDC sections are skipped when absent)
        "max_test_cines": 1,  # phantom test cines scored per view (None: all)
        "acdc_store": None,  # ingested ACDC store; None: the cohort if 00 ingested ACDC, else ingest into {run_dir}/01/acdc
        "acdc_limit": 10,  # ingest only the first N ACDC patients (None: all 100)
        "n_finetune": 4,  # real patients in the fine-tune vs from-scratch comparison
        "retrain": False,  # True: train again even where {run_dir}/01/models holds a model trained with these settings
        # model
        "threads": 1,  # torch CPU threads (on a busy shared CPU, 2 threads run several times slower than 1)
        "workers": 1,  # Dask worker processes on this machine for the data-parallel steps (1: run them in this process)
        "scheduler": None,  # a Dask scheduler instead: address (tcp://host:8786) or scheduler file; "local": a LocalCluster
        "width": 0.125,  # TernausNet11 channel multiplier (1.0 is the paper's 64..512 encoder, 32 decoder filters)
        "size": 64,  # model grid side in px (multiple of 32)
        "spacing_mm": 3.6,  # model pixel spacing; size x spacing_mm is the field of view around the image centre
        "bs": 16,
        "lr": 1e-2,
        "pretrained": False,  # ImageNet VGG11 encoder: needs width 1.0 and the weights in the local torch cache
        "bf16": True,  # bfloat16 autocast while training on the CPU (about 1.5-2x faster on AVX512-BF16 CPUs)
        "augmentation": {"sax": "randomised", "lax": "phantom", "acdc": "real", "lax_real": "randomised"},  # recipe per model: methods.segmentation.RECIPES
        "epochs_sax": 1,  # phantom SAX model
        "epochs_lax": 1,  # phantom long-axis (2CH + 4CH) model
        "calibrate_cines": 4,  # validation cines per view that calibrate each model's decision (per-class log-prior) and set its uncertainty yardstick; 0: off
        "balance_lax": True,  # long-axis model: class-weighted cross-entropy, so the small RV and RA are learned too
        "frame_step": 25,  # phantom training frames: every k-th frame of each cine, plus ED and ES
        "max_frames": None,  # at most this many training frames per model (a seeded subset; validation: a quarter); None: all
        "epochs_acdc": 1,
        "epochs_finetune": 1,
        "epochs_lax_real": 1,  # the long-axis model fine-tuned on phantom + one UK Biobank demo subject's 4CH pseudo-labels; 0: none
        "lax_real_subject": "ukbb-demo-1",  # the demo subject it trains on; the other is held out and scored
        "real_share": 0.25,  # share of that model's training frames that are the demo's (cycled)
        "epochs_sax_real": 1,  # the SAX model fine-tuned on phantom + ACDC's training patients (manual masks); 0: none
        "sax_predictor": "phantom",  # SAX model the run's segmentation Predictor carries: "phantom" or "real" (phantom + ACDC)
        "lax_predictor": "phantom",  # long-axis model the run's segmentation Predictor carries: "phantom" or "real" (the fine-tuned one)
    }

    def __init__(self, params: dict, out=None):
        super().__init__(params, out)
        p = self.p
        (self.out / "models").mkdir(exist_ok=True)
        self.data_kw = dict(size=p["size"], spacing=p["spacing_mm"], bs=p["bs"], seed=p["seed"],
                            max_frames=p["max_frames"], progress=False)
        self.model_kw = dict(width=p["width"], pretrained=p["pretrained"], bf16=p["bf16"], seed=p["seed"])
        self.on_dask = dict(progress=False, scheduler=self.client)  # each cine one task where Dask runs
        self.models, self.timings, self.calibration = {}, {}, {}
        self.acdc_store = self.acdc_agree = self.real_table = None

    def _show_prior(self, name: str) -> None:
        """Keep model `name`'s decision log-prior for the calibration table."""
        prior = log_prior(self.models[name]).astype(float)
        self.calibration[name] = pd.Series(prior, index=[NAMES[k] for k in sorted(NAMES)]).round(2)

    def _reuse(self, name: str, path, settings: dict) -> bool:
        """The one reuse rule: model `name` from the run folder when it was trained with exactly these settings
        (and `retrain` is off)."""
        if self.p["retrain"] or not reusable(path, settings):
            return False
        self.models[name] = load(path)
        self._show_prior(name)
        print(f"{name}: reusing {path.name}, trained with these settings (retrain=True trains again)")
        return True

    def _uncertainty_p95(self, sax: str, lax: str) -> dict[str, dict[str, float]]:
        """Each exported model's 95th-percentile structure entropy on its validation cines (`calibrate_cines` per
        view; ACDC's for the SAX model fine-tuned on it): what `cmrlib analyse` holds a new cine's against."""
        n = self.p["calibrate_cines"]
        if not n:
            return {}
        sax_store = self.acdc_store if sax == "sax_real" else self.store
        return {kind: uncertainty_reference(self.models[name], st, st.select(views, "valid", n))
                for kind, name, st, views in (("SAX", sax, sax_store, "SAX"), ("LAX", lax, self.store, ("2CH", "4CH")))
                if st.select(views, "valid", n)}

    def _calibrate(self, name: str, st: CohortStore, views) -> None:
        """Fit model `name`'s decision log-prior on validation cines (never on test) and keep it in the model."""
        n = self.p["calibrate_cines"]
        ids = st.select(views, "valid", n) if n else []
        if not ids:
            return
        prior, trace = calibrate_prior(self.models[name], st, ids, progress=False)
        as_model(self.models[name]).log_prior = prior
        self.nb.table(trace, f"calibration_{name}.csv")
        self._show_prior(name)
        none, best = trace["mean_dice"].iloc[0], trace["mean_dice"].max()
        print(f"{name}: decision log-prior {self.calibration[name].to_dict()} (validation mean Dice {none:.4f} -> "
              f"{best:.4f})")

    def _train(self, name: str, st: CohortStore, views, epochs: int, recipe_name: str, path, settings: dict,
               finish=None, data_kw=None, **fit_kw) -> dict:
        """Model `name` reused, or trained, calibrated and exported (by `finish` under `cmrlib fit`); its summary.
        data_kw: more `dataloaders` arguments, or a function giving them (called only when the model is trained)."""
        if finish is None and self._reuse(name, path, settings):
            return dict(model=name, reused=True)
        dls = dataloaders(st, views, **{**self.data_kw, **recipe(self.p["augmentation"][recipe_name])},
                          **((data_kw() if callable(data_kw) else data_kw) or {}))
        print(f"{name}: {len(dls.train_ds)} training / {len(dls.valid_ds)} validation frames")
        t0 = time.perf_counter()
        self.models[name] = fit(dls, epochs, self.p["lr"], **fit_kw, **self.model_kw)
        self._calibrate(name, st, views)
        train_s = time.perf_counter() - t0
        if finish is not None:
            valid_loss, file = finish(self.models[name], path)
            return dict(model=name, train_s=train_s, valid_loss=valid_loss, file=file)
        export(self.models[name], path)
        record_settings(path, settings)
        return dict(model=name, train_s=train_s, reused=False)

    def fit(self, finish=None) -> pd.DataFrame:
        """The phantom SAX model and the 2CH + 4CH model (reused when the run folder holds them with these
        settings; `finish`: `cmrlib fit`'s export); a summary row per model."""
        p, store = self.p, self.store
        t0, rows = time.perf_counter(), []
        for name, views, epochs, balance in (("sax", ["SAX"], p["epochs_sax"], False),
                                             ("lax", ["2CH", "4CH"], p["epochs_lax"], p["balance_lax"])):
            aug_kw = recipe(p["augmentation"][name])
            settings = dict({**self.data_kw, **aug_kw}, views=views, epochs=epochs, lr=p["lr"], balance=balance,
                            frame_step=p["frame_step"], calibrate_cines=p["calibrate_cines"],
                            cohort=store.fingerprint(), **self.model_kw)
            rows.append(self._train(name, store, views, epochs, name, model_file(self.out / "models", name.upper()),
                                    settings, finish, dict(frame_step=p["frame_step"]), balance=balance))
        self.timings["phantom training (s)"] = time.perf_counter() - t0
        return pd.DataFrame(rows)

    def train(self, finish=None, rows: int | None = None) -> list[dict]:
        """What `cmrlib fit segmentation` runs: both phantom models, trained, calibrated and exported by `finish`,
        and the run's segmentation Predictor (process 0; no real-data check: notebook 01 adds it)."""
        from ...distributed import rank

        log = self.fit(finish).to_dict("records")
        if rank() == 0:
            self.write_predictor("sax", "lax")
        return log

    def write_predictor(self, sax: str, lax: str, real_check: str | None = None, **provenance):
        """The run's segmentation Predictor from the SAX and long-axis models named, with each one's validation
        uncertainty yardstick and the real-data check behind it."""
        return self.nb.predictor(Predictor.from_models({"SAX": self.models[sax], "LAX": self.models[lax]},
                                                       self.nb.provenance(self.store, real_check, **provenance),
                                                       self._uncertainty_p95(sax, lax)))

    def evaluate(self) -> tuple[pd.DataFrame | None, pd.DataFrame]:
        """Both models on the phantom's test cines: the calibrated log-priors and Dice per view and structure
        (written)."""
        t0 = time.perf_counter()
        store, m = self.store, self.models
        ids = store.select(["SAX", "2CH", "4CH"], "test", self.p["max_test_cines"])
        self.ph_pred = {**predict_store(m["sax"], store, [i for i in ids if i.endswith("_SAX")], **self.on_dask),
                        **predict_store(m["lax"], store, [i for i in ids if not i.endswith("_SAX")], **self.on_dask)}
        self.ph_scores = evaluate(store, self.ph_pred)
        self.ph_table = summarise(self.ph_scores, by=("view", "structure"))
        self.nb.table(self.ph_scores, "scores_phantom.csv")
        self.nb.table(self.ph_table, "dice_phantom.csv", index=True)
        self.timings["phantom inference + scoring (s)"] = time.perf_counter() - t0
        priors = pd.DataFrame(self.calibration).T.rename_axis("model") if self.calibration else None
        return priors, self.ph_table

    def ra_check(self) -> pd.DataFrame:
        """4CH RA Dice over all frames, over frames with a true RA of at least 100 px, and frames without one
        (written)."""
        sc = self.ph_scores
        ra = sc[(sc["view"] == "4CH") & (sc["structure"] == "RA")]
        if not len(ra):
            raise StudySkipped("no 4CH test cine with a right atrium in this cohort")
        check = ra.groupby("cine_id").apply(lambda d: pd.Series({
            "dice_all": d["dice"].mean(), "dice_ra_ge_100px": d.loc[d["truth_px"] >= 100, "dice"].mean(),
            "frames_no_true_ra": (d["truth_px"] == 0).sum(), "frames": len(d)}), include_groups=False)
        check = check.astype({"frames_no_true_ra": int, "frames": int})
        self.nb.table(check, "ra_check.csv", index=True)
        return check

    def cases_figure(self) -> None:
        """The best, median and worst phantom test frames by Dice."""
        self._cases(self.store, self.ph_pred, self.ph_scores, "01_cases_phantom",
                    "best, median and worst phantom test frames by Dice, truth beside prediction")

    def _cases(self, st: CohortStore | dict, pred: dict, scores: pd.DataFrame, name: str, caption: str) -> None:
        ranked = frame_scores(scores)
        cases = case_panels(st, pred, ranked, plots.pick_cases(ranked["dice"]))
        self.nb.figure(plots.cases_figure(**cases, score_name="mean Dice"), name, caption)

    def acdc(self) -> pd.DataFrame:
        """The ACDC store (`acdc_store`, the cohort when notebook 00 ingested ACDC, or ACDC ingested here from the
        data root); patients per group and split; `StudySkipped` when there is none."""
        p = self.p
        root = data_root(p["data_dir"])
        acdc_dir = root / "acdc" / "training" if root else None
        acdc_store = p["acdc_store"]
        if acdc_store is None and set(self.store.manifest()["source"]) == {"acdc"}:  # 00 ingested ACDC
            acdc_store = self.store.root
        if acdc_store is not None and len(CohortStore(acdc_store)):
            self.acdc_store = CohortStore(acdc_store)
        elif acdc_dir is None or not acdc_dir.exists():
            why = "no data_dir / $CMRLIB_DATA" if root is None else f"{acdc_dir} not found"
            raise StudySkipped(f"no ACDC training folder ({why}): the ACDC sections need it")
        else:
            from ...io import ingest

            t0 = time.perf_counter()
            self.acdc_store = ingest("acdc", acdc_dir, self.out / "acdc", limit=p["acdc_limit"], seed=p["seed"],
                                     **self.on_dask)
            self.timings["ACDC ingest (s)"] = time.perf_counter() - t0
        return self.acdc_store.manifest().groupby(["group", "split"]).size().unstack(fill_value=0)

    def _acdc(self) -> CohortStore:
        """The ACDC store `acdc` found; `StudySkipped` without one."""
        if self.acdc_store is None:
            raise StudySkipped("no ACDC store in this run (see `acdc`)")
        return self.acdc_store

    def fit_acdc(self) -> pd.DataFrame:
        """A SAX model trained on ACDC's training patients (or reused), scored on its held-out patients (written,
        with the case figure)."""
        acdc, p = self._acdc(), self.p
        t0 = time.perf_counter()
        settings = dict({**self.data_kw, **recipe(p["augmentation"]["acdc"])}, epochs=p["epochs_acdc"], lr=p["lr"],
                        calibrate_cines=p["calibrate_cines"], cohort=acdc.fingerprint(), **self.model_kw)
        self._train("acdc", acdc, ["SAX"], p["epochs_acdc"], "acdc", self.out / "models" / "seg_sax_acdc.model",
                    settings)
        self.timings["ACDC training (s)"] = time.perf_counter() - t0
        self.acdc_test = acdc.select(view="SAX", split="test")
        self.acdc_pred = predict_store(self.models["acdc"], acdc, self.acdc_test, **self.on_dask)
        scores = evaluate(acdc, self.acdc_pred)
        self.acdc_table = summarise(scores, by=("structure",))
        self.nb.table(scores, "scores_acdc.csv")
        self.nb.table(self.acdc_table, "dice_acdc.csv", index=True)
        self._cases(acdc, self.acdc_pred, scores, "01_cases_acdc",
                    "best, median and worst ACDC held-out frames by Dice, truth beside prediction")
        return self.acdc_table

    def sim_to_real(self) -> pd.DataFrame:
        """The phantom SAX model on every ACDC cine (written)."""
        acdc = self._acdc()
        t0 = time.perf_counter()
        s2r_pred = predict_store(self.models["sax"], acdc, acdc.select(view="SAX"), **self.on_dask)
        self.s2r_scores = evaluate(acdc, s2r_pred)
        self.s2r_table = summarise(self.s2r_scores, by=("structure",))
        self.nb.table(self.s2r_scores, "scores_sim2real.csv")
        self.nb.table(self.s2r_table, "dice_sim2real.csv", index=True)
        self.timings["sim-to-real (s)"] = time.perf_counter() - t0
        return self.s2r_table

    def fine_tune_vs_scratch(self) -> pd.DataFrame:
        """The phantom SAX model fine-tuned on a few ACDC patients against the same schedule from scratch, on the
        held-out patients (written)."""
        acdc, p = self._acdc(), self.p
        t0 = time.perf_counter()
        few = pick_subjects(acdc, p["n_finetune"], split="train", by="group", seed=p["seed"])
        dls_few = dataloaders(acdc, ["SAX"], subjects=few, **self.data_kw, **recipe(p["augmentation"]["acdc"]))
        print(f"fine-tuning on {len(few)} patients ({len(dls_few.train_ds)} slices)")
        rows = []
        for how, init in (("phantom-pretrained", self.models["sax"]), ("from scratch", None)):
            learn = fit(dls_few, p["epochs_finetune"], p["lr"], init=init, **self.model_kw)
            sc = evaluate(acdc, predict_store(learn, acdc, self.acdc_test, **self.on_dask))
            rows.append(summarise(sc, by=("structure",)).xs("all", level="phase")["dice_mean"].rename(how))
        ft_table = pd.DataFrame(rows).rename_axis("training")
        self.nb.table(ft_table, "finetune_vs_scratch.csv", index=True)
        self.timings["fine-tune vs scratch (s)"] = time.perf_counter() - t0
        return ft_table

    def sax_real(self) -> pd.DataFrame:
        """The SAX model fine-tuned from the phantom one on the phantom's frames plus the ED/ES frames of ACDC's
        training patients with their manual masks (`real_share` of the training frames, cycled), under the SAX
        recipe, monitored on phantom validation only; then the phantom-only, ACDC-only and phantom + ACDC models on
        the phantom's SAX test cines, ACDC's validation patients (where a schedule is chosen) and its held-out
        patients (written): which model a SAX Predictor should carry."""
        acdc, p = self._acdc(), self.p
        if not p["epochs_sax_real"]:
            raise StudySkipped("no phantom + ACDC SAX model (epochs_sax_real=0)")
        train = [str(i) for i in acdc.select(view="SAX", split="train")]
        settings = dict({**self.data_kw, **recipe(p["augmentation"]["sax"])}, views=["SAX"],
                        epochs=p["epochs_sax_real"], lr=p["lr"], frame_step=p["frame_step"],
                        extra=train, real_share=p["real_share"], init="sax",
                        calibrate_cines=p["calibrate_cines"], cohort=self.store.fingerprint(), acdc=acdc.fingerprint(),
                        **self.model_kw)
        t0 = time.perf_counter()
        self._train("sax_real", self.store, ["SAX"], p["epochs_sax_real"], "sax", self.out / "models" /
                    "seg_sax_real.model", settings, init=self.models["sax"],
                    data_kw=lambda: dict(frame_step=p["frame_step"], extra=[acdc.read(i) for i in train],
                                         extra_share=p["real_share"]))  # ACDC's cines read only to train
        self.timings["SAX fine-tuning on phantom + ACDC (s)"] = time.perf_counter() - t0
        phantom_ids = [i for i in self.ph_pred if i.endswith("_SAX")]
        made = {("sax", "phantom test"): self.ph_pred, ("acdc", "ACDC held-out"): self.acdc_pred}  # earlier steps'
        rows, acdc_valid = {}, acdc.select(view="SAX", split="valid")
        for name in [m for m in ("sax", "acdc", "sax_real") if m in self.models]:
            for data, st, ids in (("phantom test", self.store, phantom_ids), ("ACDC validation", acdc, acdc_valid),
                                  ("ACDC held-out", acdc, self.acdc_test)):
                if not ids:
                    continue
                pred = ({i: made[name, data][i] for i in ids} if (name, data) in made else
                        predict_store(self.models[name], st, ids, **self.on_dask))
                sc = evaluate(st, pred)
                rows[name, data] = summarise(sc, by=("structure",)).xs("all", level="phase")["dice_mean"]
        self.sax_models = pd.DataFrame(rows).T.rename_axis(["model", "data"])
        self.nb.table(self.sax_models, "dice_sax_models.csv", index=True)
        return self.sax_models

    def phantom_agreement(self) -> pd.DataFrame:
        """Table-1 measures of the phantom's test subjects against its generating values (written with the
        figure)."""
        self.ph_meas = subject_measures(self.store, self.ph_pred)
        self.nb.table(self.ph_meas, "measures_phantom.csv")
        pairs = measure_pairs(self.ph_meas, ref="model")
        if not pairs:
            raise StudySkipped(f"fewer than 3 test subjects with every view ({len(self.ph_meas)} subjects)")
        agree = stats.agreement_table(self.ph_meas, pairs, units=UNITS)
        self.nb.table(agree, "agreement_phantom.csv", index=True)
        self.nb.figure(plots.agreement_figure(self.ph_meas, pairs, units=UNITS), "01_agreement_phantom",
                       "regression and Bland-Altman of the segmentation measures against the phantom's values")
        return agree

    def acdc_agreement(self) -> pd.DataFrame:
        """Every measure in the run folder's long shape for notebook 07 (the phantom's, and ACDC's where there is
        an ACDC store); ACDC held-out measures against its ground-truth masks (written with the figure)."""
        long = [from_table1(self.ph_meas, "phantom", "segmentation", PHANTOM_REFERENCES)]
        meas = subject_measures(self.acdc_store, self.acdc_pred) if self.acdc_store is not None else None
        if meas is not None:
            self.nb.table(meas, "measures_acdc.csv")
            long.append(from_table1(meas, "acdc", "segmentation", {"ref": "ground-truth masks"}))
        self.nb.table(pd.concat(long, ignore_index=True), "measures_long")  # the phantom's rows even without ACDC
        if meas is None:
            raise StudySkipped("no ACDC store in this run (see `acdc`)")
        pairs = measure_pairs(meas, ref="ref")
        if not pairs:
            raise StudySkipped(f"fewer than 3 held-out ACDC patients with measures ({len(meas)} patients)")
        self.acdc_agree = stats.agreement_table(meas, pairs, units=UNITS)
        self.nb.table(self.acdc_agree, "agreement_acdc.csv", index=True)
        shown = {k: pairs[k] for k in ("LVEDV", "LVEF", "RVEDV", "LVM") if k in pairs}
        self.nb.figure(plots.agreement_figure(meas, shown, units=UNITS), "01_agreement_acdc",
                       "regression and Bland-Altman of the segmentation measures against ACDC's ground-truth masks")
        return self.acdc_agree

    def _fit_lax_real(self, cines: list) -> dict | None:
        """The long-axis model fine-tuned from the phantom one on the phantom's frames plus every 4CH frame of one
        demo subject (`lax_real_subject`) with its pseudo-labels, under the `lax_real` recipe (bias field, noise,
        blur, lower resolution, rotation), monitored on the phantom's validation frames only: the demo's other
        subject stays unseen. The 2CH pseudo-labels mark the LA alone (the rest is unlabelled, not background), so
        they are not trained on."""
        p = self.p
        train = [c for c in cines if c.subject == p["lax_real_subject"] and c.view == "4CH"]
        if not p["epochs_lax_real"] or not train:
            print(f"no fine-tuned long-axis model (epochs_lax_real={p['epochs_lax_real']}, "
                  f"{len(train)} demo 4CH cines of {p['lax_real_subject']!r})")
            return None
        extra = dict(frame_step=p["frame_step"], extra=train, extra_share=p["real_share"])
        settings = dict({**self.data_kw, **recipe(p["augmentation"]["lax_real"])}, views=["2CH", "4CH"],
                        epochs=p["epochs_lax_real"], lr=p["lr"], balance=p["balance_lax"], frame_step=p["frame_step"],
                        extra=[c.cine_id for c in train], real_share=p["real_share"], init="lax",
                        calibrate_cines=p["calibrate_cines"], cohort=self.store.fingerprint(), **self.model_kw)
        t0 = time.perf_counter()
        row = self._train("lax_real", self.store, ["2CH", "4CH"], p["epochs_lax_real"], "lax_real",
                          self.out / "models" / "seg_lax_real.model", settings, data_kw=extra,
                          balance=p["balance_lax"], init=self.models["lax"])
        self.timings["long-axis fine-tuning on the demo (s)"] = time.perf_counter() - t0
        return row

    def real_lax(self) -> pd.DataFrame:
        """The long-axis models on the UK Biobank demo's 2CH and 4CH cines, every frame, against the demo's
        segmentations, a network's (Bai et al. 2018), so a pseudo-reference (its 2CH has the LA only): the
        phantom-only model, and the one fine-tuned on one demo subject (`_fit_lax_real`) with its training subject
        marked; that model's phantom test Dice beside (all written, with the best, median and worst held-out
        frames)."""
        from ...io.real import real_cines
        from .predict import predict

        cines = {f"{c.subject}_{c.view}": c for _, c in real_cines(self.p["data_dir"], ("2CH", "4CH"), labelled=True)}
        if not cines:
            raise StudySkipped("no UK Biobank demo 2CH/4CH cines with segmentations under the data root (set "
                               "data_dir or $CMRLIB_DATA)")
        self._fit_lax_real(list(cines.values()))
        names = [m for m in ("lax", "lax_real") if m in self.models]
        preds = {name: {cid: predict(self.models[name], c) for cid, c in cines.items()} for name in names}
        sc = pd.concat([evaluate(cines, preds[name]).assign(model=name) for name in names], ignore_index=True)
        sc["trained_on"] = (sc.model == "lax_real") & (sc.subject.astype(str) == self.p["lax_real_subject"])
        self.real_scores = sc
        self.real_table = summarise(sc, by=("model", "subject", "view", "structure"))
        shown = names[-1]  # the fine-tuned model where there is one
        held = sc[(sc.model == shown) & ~sc.trained_on]
        self._cases({k: c for k, c in cines.items() if k in set(held.cine_id)}, preds[shown], held, "01_cases_ukbb",
                    f"the {shown} long-axis model on the UK Biobank demo cines of subjects it did not train on: best, "
                    "median and worst frames by Dice, the pseudo-labels (a network's) beside the prediction")
        self.nb.table(self.real_scores, "scores_ukbb_pseudo.csv")
        self.nb.table(self.real_table, "dice_ukbb_pseudo.csv", index=True)
        if "lax_real" in self.models:
            self._phantom_after_fine_tuning()
        return self.real_table

    def lax_fine_tuning_cost(self) -> pd.DataFrame:
        """Phantom test Dice of the fine-tuned long-axis model beside the phantom-only one's: what the real frames
        cost on the phantom; `StudySkipped` without a fine-tuned model."""
        if "lax_real" not in self.models:
            raise StudySkipped("no long-axis model fine-tuned on a demo subject in this run")
        return self.lax_phantom.unstack("model")

    def _held_out(self, model: str) -> list[str]:
        """The demo subjects long-axis model `model` never trained on."""
        subjects = self.real_table.loc[model].index.get_level_values("subject").unique()
        return [s for s in subjects if model == "lax" or s != self.p["lax_real_subject"]]

    def _real_checks(self) -> list[tuple]:
        """The real 4CH Dice targets against the pseudo-labels, on each demo subject the fine-tuned long-axis model
        (else the phantom one) never trained on."""
        if self.real_table is None:
            return []
        model = "lax_real" if "lax_real" in self.models else "lax"
        subjects = self._held_out(model)
        return [(f"{model} on held-out {sub} 4CH {s} Dice vs pseudo-labels",
                 dice_all(self.real_table, model, sub, "4CH", s), ">=", t)
                for sub in subjects
                for s, t in (("LV", 0.85), ("MYO", 0.70), ("RV", 0.80), ("LA", 0.85), ("RA", 0.80))
                if (model, sub, "4CH", s, "all") in self.real_table.index]

    def _lax_summary(self, model: str) -> str:
        """One line for the Predictor's provenance: a long-axis model's 4CH Dice on the demo subjects it never
        trained on."""
        subjects = self._held_out(model)
        dice = self.real_table.loc[(model, subjects), "dice_mean"].xs("all", level="phase").xs("4CH", level="view")
        how = "fine-tuned on one UK Biobank demo subject's pseudo-labels" if model == "lax_real" else "phantom-only"
        return (f"{how} long-axis model: mean 4CH Dice {dice.mean():.2f} against the pseudo-labels of "
                f"{len(subjects)} UK Biobank demo subject(s) it did not train on")

    def _phantom_after_fine_tuning(self) -> None:
        """Phantom test Dice of the fine-tuned long-axis model beside the phantom-only one's (written): what the
        real frames cost on the phantom."""
        ids = [i for i in self.ph_pred if not i.endswith("_SAX")]
        pred = predict_store(self.models["lax_real"], self.store, ids, **self.on_dask)
        both = pd.concat([self.ph_scores[self.ph_scores.cine_id.isin(ids)].assign(model="lax"),
                          evaluate(self.store, pred).assign(model="lax_real")], ignore_index=True)
        self.lax_phantom = summarise(both, by=("model", "view", "structure")).xs("all", level="phase")["dice_mean"]
        self.nb.table(self.lax_phantom.unstack("model"), "dice_phantom_lax_models.csv", index=True)

    PAPER_FIGURES = ("01_agreement_phantom",)

    @classmethod
    def paper_figures(cls, run_dir):
        """Agreement of the segmentation measures with the phantom's truths."""
        f = run_dir / "01" / "measures_phantom.csv"
        if f.exists() and (pairs := measure_pairs(m := pd.read_csv(f), ref="model")):
            yield "01_agreement_phantom", plots.agreement_figure(m, pairs, units=UNITS)

    def headline_tables(self):
        """Phantom test Dice (every frame) per view, and ACDC held-out Dice (ED, ES) of both SAX models."""
        if (d := self.written("dice_phantom")) is not None:
            d = d[d["phase"] == "all"].pivot_table(index="view", columns="structure", values="dice_mean")
            yield "headline_dice_phantom", "segmentation: phantom test Dice (every frame)", d.round(3).reset_index()
        acdc = [(name, d) for name, table in (("ACDC-trained", "dice_acdc"), ("phantom-trained", "dice_sim2real"))
                if (d := self.written(table)) is not None]
        if acdc:
            d = pd.concat([d.assign(model=name) for name, d in acdc])
            d = d.pivot_table(index=["model", "phase"], columns="structure", values="dice_mean").round(3).reset_index()
            yield "headline_dice_acdc", "segmentation: ACDC held-out Dice (ED, ES)", d

    def checks(self) -> tuple[pd.DataFrame, pd.Series]:
        """The Dice and measure targets (written); the phantom SAX model and the `lax_predictor` long-axis model
        become the run's segmentation Predictor with the real-data checks behind them. Targets and step timings."""
        ph = self.ph_table
        checks = [("phantom SAX LV Dice", dice_all(ph, "SAX", "LV"), ">=", 0.93),
                  ("phantom SAX MYO Dice", dice_all(ph, "SAX", "MYO"), ">=", 0.85)]
        checks += [(f"phantom 4CH {s} Dice", dice_all(ph, "4CH", s), ">=", 0.90) for s in ("LA", "RA")
                   if ("4CH", s, "all") in ph.index]
        lax = "lax_real" if self.p["lax_predictor"] == "real" and "lax_real" in self.models else "lax"
        sax = "sax_real" if self.p["sax_predictor"] == "real" and "sax_real" in self.models else "sax"
        real_check = []
        if self.acdc_store is not None:
            checks += [(f"ACDC held-out {s} Dice", dice_all(self.acdc_table, s), ">=", t)
                       for s, t in (("LV", 0.90), ("MYO", 0.80), ("RV", 0.80))]
            checks += [("sim-to-real LV Dice (all ACDC)", dice_all(self.s2r_table, "LV"), ">=", 0.80)]
            real_check.append(f"phantom-only SAX model on {self.s2r_scores.cine_id.nunique()} ACDC cines (manual "
                              f"masks): LV Dice {dice_all(self.s2r_table, 'LV'):.2f}")
        if self.real_table is not None:
            real_check.append(self._lax_summary(lax))
        elif real_check:
            real_check.append("the long-axis model has no real-data check")
        checks += self._real_checks()
        agree = self.acdc_agree
        if agree is not None and {"LVEF", "LVEDV"} <= set(agree.index):
            checks += [("ACDC held-out LVEF MAE (points)", float(agree.loc["LVEF", "mae"]), "<=", 5.0),
                       ("ACDC held-out LVEDV ICC", float(agree.loc["LVEDV", "icc2"]), ">=", 0.95)]
        targets = self.targets(checks)
        if sax == "sax_real":
            real_check.append(f"SAX model fine-tuned on phantom + ACDC: held-out ACDC LV Dice "
                              f"{self.sax_models.loc[('sax_real', 'ACDC held-out'), 'LV']:.2f}")
        print(f"the run's segmentation Predictor: SAX {sax!r} model, long-axis {lax!r} model")
        n_real = sum(split == "train" for split in self.acdc_store.splits().values()) if sax == "sax_real" else 0
        real = dict(real_training=f"ACDC, {n_real} patients (SAX model)") if n_real else {}
        self.write_predictor(sax, lax, "; ".join(real_check) or None, **real)
        self.nb.timings.update(self.timings)
        self.nb.save_timings()
        return targets, pd.Series(self.timings)
